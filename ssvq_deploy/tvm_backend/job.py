"""The ``ssvq tvm`` job: compress (or load) -> export ONNX -> TVM fp32 and TVM SSVQ-fused builds with the same
schedules -> prove no full weight is materialised -> verify against PyTorch -> export the host library, the aarch64
cross-build and the C++ runner bundle -> time TVM and ONNX Runtime builds in one process, interleaved -> report.json.
"""
from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import tvm
from tvm import relax

from ..atomic import ensure_writable_dir, write_text
from ..data import photo_batch
from ..errors import ConfigError, SSVQError, VerificationError
from ..export.int8 import int8_qdq
from ..export.onnx_export import INPUT, compressed_onnx, float_onnx, save_onnx
from ..format import save
from ..models import model_spec
from ..pipeline import COMPRESSED_FILE, compressed_for, decoded_model
from ..recipe import load_recipe
from ..runtime import LibraryNotFoundError, create_session, library_path
from ..runtime.decode_at_load import decode_at_load
from .build import aarch64_config, compile_module, prepare, x86_config
from .check import check_no_full_weight
from .export import export_aarch64, export_host
from .runner import RunnerError, build_runner, run_runner
from .tune import cache_path, load_cache, save_cache, tiles_from_cache, tune_module

log = logging.getLogger(__name__)
MAX_ABS_ERR = 1e-4  # TVM vs PyTorch on the same weights


@dataclass(frozen=True)
class TvmConfig:
    """Options of ``ssvq tvm`` / ``tools/tvm_build.py``."""

    model: str = "mobilenetv2_ssvq"  # recipe name
    weights: str | None = None
    k: int | None = None
    d: int | None = None
    method: str | None = None
    hessian: bool | None = None
    compressed: str | None = None  # reuse a compressed / fine-tuned file instead of running k-means
    out: str | None = None  # default out/<model>/tvm
    threads: int = 1
    runs: int = 50  # timed runs per build and round
    rounds: int = 3  # interleaved timing rounds (the builds take turns, so load changes hit all alike)
    mcpu: str = "auto"  # LLVM CPU; auto: skylake-avx512 where the host has AVX-512, else the host CPU
    aarch64: bool = True
    runner: bool = True
    tuned: bool = True  # use the tile cache tuned/<mcpu>-t<threads>.json when it exists (else heuristic tiles)
    tune: bool = False  # run the tile tuner first and update that cache

    def out_dir(self) -> Path:
        return Path(self.out or Path("out") / self.model / "tvm")

    def validate(self) -> None:
        if self.runs < 1 or self.threads < 1 or self.rounds < 1:
            raise ConfigError(f"runs, rounds and threads must be >= 1, got {self.runs}, {self.rounds}, "
                              f"{self.threads}")


class _VMSession:
    """A compiled Relax VM behind the ``run(None, feed)`` call of an ORT session."""

    def __init__(self, executable):
        self.vm = relax.VirtualMachine(executable, tvm.cpu())
        self.main = self.vm["main"]

    def run(self, _names, feed):
        return [self.main(tvm.runtime.tensor(feed[INPUT])).numpy()]


def _ort_session(model, threads: int, library: bool = False) -> ort.InferenceSession:
    if library:
        return create_session(model, threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _set_tvm_threads(threads: int) -> None:
    tvm.get_global_func("runtime.config_threadpool")(1, int(threads))


def _time_interleaved(sessions: dict, feed: dict, runs: int, rounds: int, warmup: int = 10) -> dict:
    """Median and p90 (ms) per session over ``rounds`` x ``runs`` runs; each round visits every session once."""
    times = {name: [] for name in sessions}
    for session in sessions.values():
        for _ in range(warmup):
            session.run(None, feed)
    for _ in range(rounds):
        for name, session in sessions.items():
            for _ in range(runs):
                start = time.perf_counter()
                session.run(None, feed)
                times[name].append(time.perf_counter() - start)
    return {name: {"median_ms": float(np.median(t) * 1e3), "p90_ms": float(np.percentile(t, 90) * 1e3),
                   "min_ms": float(np.min(t) * 1e3), "runs": len(t)} for name, t in times.items()}


def _step(message: str) -> float:
    log.info("[tvm] %s", message)
    return time.perf_counter()


def run_tvm(config: TvmConfig) -> dict:
    """Run the whole job; returns the report (also written to ``<out>/report.json``)."""
    t0 = _step(f"{config.model}: preparing")
    config.validate()
    recipe = load_recipe(config.model).with_quant(k=config.k, d=config.d, method=config.method,
                                                  hessian=config.hessian)
    spec = model_spec(recipe.model)
    task = getattr(spec, "task", "image_classification")
    if task != "image_classification" or len(spec.input_shape) != 4:
        raise ConfigError(f"ssvq tvm builds image classifiers (NCHW input, photos to verify on); {recipe.model} is "
                          f"a {task} model with input {list(spec.input_shape)}")
    out = ensure_writable_dir(config.out_dir())
    if not config.compressed:
        _step(f"k-means: {recipe.quant.method} k={recipe.quant.k} d={recipe.quant.d}")
    original, compressed = compressed_for(recipe, config.weights, config.compressed, progress=True)
    if not config.compressed:
        save(compressed, out / COMPRESSED_FILE)
    reference = decoded_model(compressed)
    input_shape = spec.input_shape
    fp32_onnx, ssvq_onnx = float_onnx(original, input_shape), compressed_onnx(compressed, reference, input_shape)
    names, photos = photo_batch()
    x = photos.numpy()
    sizes = {"fp32.onnx": save_onnx(fp32_onnx, out / "fp32.onnx"), "ssvq.onnx": save_onnx(ssvq_onnx, out / "ssvq.onnx"),
             "int8.onnx": int8_qdq(fp32_onnx, x, out / "int8.onnx")}

    shapes = {INPUT: list(input_shape)}
    target_config = x86_config(config.threads, config.mcpu)
    target = tvm.target.Target(target_config)
    models = {"tvm_fp32": fp32_onnx, "tvm_ssvq_fused": ssvq_onnx}
    cache = cache_path(target_config["mcpu"], config.threads)
    if config.tune:
        for name, model in models.items():
            _step(f"tuning {name} tiles into {cache}")
            unscheduled = prepare(model, shapes, target, config.threads, schedule=False)
            save_cache(cache, tune_module(unscheduled.mod, target, config.threads, progress=log.info), target_config)
    tiles_for = tiles_from_cache(cache) if config.tuned and cache.is_file() else None
    builds, lowered, build_seconds = {}, {}, {}
    for name, model in models.items():
        t = _step(f"TVM build {name} for {target_config}" + (f", tiles from {cache}" if tiles_for else ""))
        lowered[name] = prepare(model, shapes, target, config.threads, tiles_for=tiles_for)
        builds[name] = compile_module(lowered[name], target)
        build_seconds[name] = round(time.perf_counter() - t, 1)
    fusion = lowered["tvm_ssvq_fused"].fusion
    if len(fusion.fused) != len(compressed.layers):
        raise SSVQError(f"{len(fusion.fused)} of {len(compressed.layers)} compressed layers were fused")
    _step("checking the lowered TIR for full-weight buffers")
    weight_check = check_no_full_weight(lowered["tvm_ssvq_fused"].mod, target, fusion.weight_shapes)

    _step("exporting libraries")  # before a VM runs them: saving an executable in use warns once per constant
    artifacts = {"x86_64": {name: export_host(ex, out / f"{name}_x86_64.so") for name, ex in builds.items()}}
    if config.aarch64:
        arm = tvm.target.Target(aarch64_config(config.threads))
        arm_lowered = prepare(ssvq_onnx, shapes, arm, config.threads)
        check_no_full_weight(arm_lowered.mod, arm, fusion.weight_shapes)
        artifacts["aarch64"] = {"tvm_ssvq_fused": export_aarch64(compile_module(arm_lowered, arm),
                                                                 out / "tvm_ssvq_fused_aarch64.so")}
        artifacts["aarch64"]["target"] = aarch64_config(config.threads)

    _step(f"verifying on {len(names)} photos")
    _set_tvm_threads(config.threads)
    sessions = {name: _VMSession(ex) for name, ex in builds.items()}
    outputs = {name: np.concatenate([s.run(None, {INPUT: x[i:i + 1]})[0] for i in range(len(x))])
               for name, s in sessions.items()}
    with torch.no_grad():
        torch_ssvq, torch_fp32 = reference(photos).numpy(), original(photos).numpy()
    errors = {"tvm_ssvq_fused": float(np.abs(outputs["tvm_ssvq_fused"] - torch_ssvq).max()),
              "tvm_fp32": float(np.abs(outputs["tvm_fp32"] - torch_fp32).max())}
    bad = {k: v for k, v in errors.items() if not v < MAX_ABS_ERR}
    if bad:
        raise VerificationError(f"TVM vs PyTorch max abs error >= {MAX_ABS_ERR}: {bad}")
    top1 = torch_fp32.argmax(1)

    runner = {"status": "not built (--no-runner)"}
    if config.runner:
        try:
            exe = build_runner(out / "runner")
            got, summary = run_runner(exe, artifacts["x86_64"]["tvm_ssvq_fused"]["path"], x[:1], runs=config.runs,
                                      threads=config.threads)
            same = bool(np.array_equal(got, outputs["tvm_ssvq_fused"][:1]))
            runner = {"status": "ok" if same else "output differs from Python TVM", "executable": str(exe),
                      "bundle": sorted(p.name for p in (out / "runner").iterdir()),
                      "output_equal_to_python_tvm": same, **summary}
        except RunnerError as exc:
            runner = {"status": f"failed: {exc}"}

    _step(f"timing batch 1, {config.threads} thread(s), {config.rounds} rounds x {config.runs} runs, interleaved")
    timed = dict(sessions)
    timed["ort_fp32"] = _ort_session(str(out / "fp32.onnx"), config.threads)
    timed["ort_int8"] = _ort_session(str(out / "int8.onnx"), config.threads)
    notes = {}
    try:
        library_path()
        timed["ort_ssvq"] = _ort_session(str(out / "ssvq.onnx"), config.threads, library=True)
    except LibraryNotFoundError as exc:
        notes["ort_ssvq"] = f"skipped: {exc}"
    timed["ort_ssvq_decode_at_load"] = _ort_session(decode_at_load(ssvq_onnx).SerializeToString(), config.threads)
    latency = _time_interleaved(timed, {INPUT: x[:1]}, config.runs, config.rounds)
    agreement = {name: float((o.argmax(1) == top1).mean()) for name, o in outputs.items()}

    report = {
        "model": config.model, "method": compressed.meta.get("method"),
        "latency_ms": {name: s["median_ms"] for name, s in latency.items()},
        "latency_p90_ms": {name: s["p90_ms"] for name, s in latency.items()},
        "latency_min_ms": {name: s["min_ms"] for name, s in latency.items()},
        "latency_runs": config.runs * config.rounds, "threads": config.threads, "batch": 1, "notes": notes,
        "max_abs_err_vs_torch": errors, "top1_agreement_vs_fp32": agreement, "verify_images": names,
        "no_full_weight_buffer": weight_check.to_dict(),
        "fusion": {"fused_layers": len(fusion.fused), "compressed_layers": len(compressed.layers),
                   "plain_weight_kernels_in_fp32_build": lowered["tvm_fp32"].fusion.plain},
        "schedules": {name: low.schedules for name, low in lowered.items()},
        "tile_cache": {"path": str(cache), "used": tiles_for is not None,
                       "entries": len(load_cache(cache).get("entries", {})) if tiles_for else 0},
        "target": target_config, "artifacts": artifacts, "runner": runner, "onnx_bytes": sizes,
        "build_seconds": build_seconds, "tvm_version": tvm.__version__, "onnxruntime_version": ort.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "seconds": round(time.perf_counter() - t0, 1), "config": asdict(config),
    }
    write_text(out / "report.json", json.dumps(report, indent=2))
    return report
