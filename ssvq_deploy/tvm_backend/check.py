"""Evidence that no full decoded weight exists: walk the final lowered TIR and the Relax graph.

Per kernel function that decodes a packed weight of N elements (read from its ``ssvq_decode`` block before
lowering), the function is lowered with TVM's default TIR pipeline for the target (the same passes ``tvm.compile``
runs before code generation) and every ``AllocBuffer`` is listed with its element count (vector lanes included).
It fails if any buffer holds N or more elements and is the decode buffer, or holds exactly N elements whatever its
name. At graph level it fails if a stand-alone decode call remains or a float constant has a packed weight's size
(a decode folded at build time).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import tvm
import tvm_ffi
from tvm import relax
from tvm.s_tir import Schedule
from tvm.tirx.stmt import AllocBuffer

from ..errors import SSVQError
from .decode import DECODE_BLOCK, WEIGHT_SHAPE_ATTR
from .fuse import remaining_decodes


class MaterialisedWeightError(SSVQError, AssertionError):
    """A buffer or constant of a full decoded weight exists in the lowered module."""


@dataclass(frozen=True)
class Allocation:
    name: str
    shape: tuple[int, ...]
    dtype: str
    scope: str

    @property
    def numel(self) -> int:
        lanes = tvm.runtime.DataType(self.dtype).lanes
        return math.prod(self.shape) * lanes

    def describe(self) -> str:
        return f"{self.name}{list(self.shape)} {self.dtype} {self.scope}"


@dataclass
class KernelBuffers:
    """One decoding kernel: its full weight and the buffers its lowered TIR allocates."""

    function: str
    weight_shape: tuple[int, ...]
    allocations: list[Allocation] = field(default_factory=list)

    @property
    def weight_numel(self) -> int:
        return math.prod(self.weight_shape)

    @property
    def decode_buffers(self) -> list[Allocation]:
        return [a for a in self.allocations if a.name.startswith(DECODE_BLOCK)]

    def violations(self) -> list[str]:
        n = self.weight_numel
        return [f"{self.function}: buffer {a.describe()} holds {a.numel} elements, the full weight "
                f"{list(self.weight_shape)} has {n}" for a in self.allocations
                if a.numel == n or (a.numel >= n and a.name.startswith(DECODE_BLOCK))]

    def to_dict(self) -> dict:
        largest = max(self.allocations, key=lambda a: a.numel, default=None)
        return {"function": self.function, "weight_shape": list(self.weight_shape), "weight_numel": self.weight_numel,
                "decode_buffers": [a.describe() for a in self.decode_buffers],
                "largest_buffer": largest.describe() if largest else None,
                "max_buffer_numel": largest.numel if largest else 0}


def decoded_weight_shape(func: tvm.tirx.PrimFunc) -> tuple[int, ...] | None:
    """Shape of the weight that ``func`` decodes (annotated on its ``ssvq_decode`` block), or None."""
    sch = Schedule(func)
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        stmt = sch.get(block)
        if DECODE_BLOCK in stmt.annotations:
            return tuple(int(s) for s in stmt.annotations[WEIGHT_SHAPE_ATTR])
    return None


def allocations(func: tvm.tirx.PrimFunc) -> list[Allocation]:
    """Every ``AllocBuffer`` in ``func`` (lowered or not)."""
    found: list[Allocation] = []

    def visit(node, visitor):
        b = node.buffer
        found.append(Allocation(str(b.name), tuple(int(s) for s in b.shape), str(b.dtype), str(b.scope())))
        return visitor.default_visit(node)
    tvm_ffi.structural_visit(func.body, [(AllocBuffer, visit)])
    return found


def lower_tir(func: tvm.tirx.PrimFunc, target: tvm.target.Target) -> list[tvm.tirx.PrimFunc]:
    """``func`` after TVM's default TIR pipeline for ``target`` (what code generation receives)."""
    mod = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
    target = target if target.host is not None else target.with_host(target)
    mod = tvm.tirx.transform.BindTarget(target)(mod)
    passes, _, _ = tvm.tirx.get_tir_pipeline("default")
    return [f for _, f in passes(mod).functions_items() if isinstance(f, tvm.tirx.PrimFunc)]


def kernel_buffers(mod: tvm.IRModule, target: tvm.target.Target) -> list[KernelBuffers]:
    """For every function of ``mod`` (scheduled, not yet compiled) that decodes a weight: its lowered buffers."""
    out = []
    for gvar, func in mod.functions_items():
        if not isinstance(func, tvm.tirx.PrimFunc):
            continue
        shape = decoded_weight_shape(func)
        if shape is None:
            continue
        lowered = lower_tir(func, target)
        out.append(KernelBuffers(gvar.name_hint, shape, [a for f in lowered for a in allocations(f)]))
    return out


def _weight_shaped_constants(mod: tvm.IRModule, shapes: set[tuple[int, ...]]) -> list[str]:
    found = []

    def visit(expr):
        if isinstance(expr, tvm.ir.GenericConst) and str(expr.ty.dtype) == "float32":
            shape = tuple(int(s) for s in expr.ty.shape)
            if shape in shapes:
                found.append(f"float32 constant of a packed weight's shape {list(shape)}")
    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return found


@dataclass
class WeightCheck:
    """Result of :func:`check_no_full_weight`."""

    kernels: list[KernelBuffers]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"ok": self.ok, "problems": self.problems, "kernels": [k.to_dict() for k in self.kernels]}


def check_no_full_weight(mod: tvm.IRModule, target: tvm.target.Target, weight_shapes: set[tuple[int, ...]],
                         raise_error: bool = True) -> WeightCheck:
    """Check ``mod`` (after scheduling) for any materialised full weight; ``weight_shapes`` are the shapes of the
    packed weights in the model. Raises :class:`MaterialisedWeightError` listing every problem."""
    kernels = kernel_buffers(mod, target)
    problems = [p for k in kernels for p in k.violations()]
    problems += [f"stand-alone decode remains: {name}" for name in remaining_decodes(mod)]
    problems += _weight_shaped_constants(mod, weight_shapes)
    result = WeightCheck(kernels, problems)
    if problems and raise_error:
        raise MaterialisedWeightError("full decoded weights are materialised:\n  " + "\n  ".join(problems))
    return result
