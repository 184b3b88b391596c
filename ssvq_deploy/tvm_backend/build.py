"""Relax pipeline and targets: import -> fuse decode into consumers -> legalize/fuse -> hand schedules -> build."""
from __future__ import annotations

from dataclasses import dataclass, field

from pathlib import Path

import numpy as np
import onnx
import tvm
from tvm import relax

from ..errors import SSVQError
from .converter import import_onnx
from .fuse import FusionReport, fuse_decode
from .schedule import schedule_module
from .simplify import simplify



class BuildError(SSVQError):
    """The TVM build cannot proceed as asked (unfused decode, bad target, missing cross toolchain)."""


AVX512_MCPU = "skylake-avx512"  # the AVX-512 baseline the schedules are written for


def host_mcpu() -> str:
    """``skylake-avx512`` on a host with AVX-512F, else LLVM's name for the host CPU (so tests and builds on other
    x86 machines still run the code they compile)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    if " avx512f" in flags:
        return AVX512_MCPU
    return str(tvm.get_global_func("target.llvm_get_system_cpu")())


def x86_config(threads: int = 1, mcpu: str | None = None) -> dict:
    """The host target, x86-64 with AVX-512 where the host has it (TVM 0.27 takes a target with options as a dict,
    not a string); ``mcpu`` None or "auto" means :func:`host_mcpu`."""
    return {"kind": "llvm", "mcpu": host_mcpu() if mcpu in (None, "auto") else mcpu, "num-cores": int(threads)}


def aarch64_config(threads: int = 1) -> dict:
    """64-bit Arm Linux with NEON, for cross-compilation."""
    return {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"], "num-cores": int(threads)}


def x86_target(threads: int = 1, mcpu: str | None = None) -> tvm.target.Target:
    return tvm.target.Target(x86_config(threads, mcpu))


def aarch64_target(threads: int = 1) -> tvm.target.Target:
    return tvm.target.Target(aarch64_config(threads))


@dataclass
class Lowered:
    """A Relax module ready for ``tvm.compile``: what was fused and how each kernel was scheduled."""

    mod: tvm.IRModule
    fusion: FusionReport
    schedules: dict[str, str] = field(default_factory=dict)


def prepare(model: onnx.ModelProto, input_shapes: dict[str, list[int]], target: tvm.target.Target,
            threads: int = 1, require_fused: bool = True, tiles_for=None, schedule: bool = True) -> Lowered:
    """Import ``model`` and run every Relax pass up to scheduled TIR (the VM lowering is left to ``compile``).
    ``require_fused`` rejects a decode that feeds an op the fusion pass cannot take; ``schedule=False`` leaves the
    fused functions unscheduled (their decode block then writes the full weight: for tests of ``check.py``)."""
    mod = simplify(import_onnx(model, input_shapes))
    mod = relax.transform.DecomposeOpsForInference()(mod)
    mod, fusion = fuse_decode(mod)
    if require_fused and fusion.unfused:
        raise BuildError(f"{len(fusion.unfused)} SSVQDecode outputs feed ops the fusion pass does not handle "
                         f"(their full weight would be materialised): {', '.join(fusion.unfused)}")
    with target:
        mod = tvm.transform.Sequential([relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
                                        relax.transform.FoldConstant(), relax.transform.FuseOps(),
                                        relax.transform.FuseTIR(), relax.transform.DeadCodeElimination()])(mod)
    if not schedule:
        return Lowered(mod, fusion)
    mod, schedules = schedule_module(mod, threads, tiles_for)
    return Lowered(mod, fusion, schedules)


def vm_lowering() -> tvm.transform.Pass:
    """The Relax -> VM passes of TVM's CPU pipeline, without its legalize/fuse stage (``prepare`` did that)."""
    from tvm.relax.backend.cpu_generic import pipeline as cpu
    return tvm.transform.Sequential(cpu.dataflow_lower_passes(None) + cpu.finalize_passes(None))


def compile_module(lowered: Lowered, target: tvm.target.Target):
    """``tvm.compile`` the prepared module for ``target``; returns the Executable."""
    return tvm.compile(lowered.mod, target, relax_pipeline=vm_lowering())


def build_onnx(model: onnx.ModelProto, input_shapes: dict[str, list[int]], target: tvm.target.Target | None = None,
               threads: int = 1, require_fused: bool = True, tiles_for=None):
    """``prepare`` + ``compile_module`` (host AVX-512 target by default); returns (Executable, Lowered)."""
    target = target or x86_target(threads)
    lowered = prepare(model, input_shapes, target, threads, require_fused, tiles_for)
    return compile_module(lowered, target), lowered


def run_executable(executable, *inputs: np.ndarray) -> list[np.ndarray]:
    """Run ``main`` of a compiled module on the CPU; returns its outputs as numpy arrays."""
    vm = relax.VirtualMachine(executable, tvm.cpu())
    out = vm["main"](*[tvm.runtime.tensor(np.ascontiguousarray(x)) for x in inputs])
    return [out.numpy()] if hasattr(out, "numpy") else [o.numpy() for o in out]
