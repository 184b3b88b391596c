"""ONNX -> Relax import with a converter for our ``SSVQDecode`` op (docs/ssvq_op.md), without patching TVM.

TVM's importer looks every op up by name in ``onnx_frontend._get_convert_map()``; :func:`ssvq_converters` wraps that
function for the duration of a ``with`` block so it also returns our converters. ``SSVQDecode`` becomes an
``R.call_tir`` of the decode function from ``decode.py``, tagged with the function attribute ``ssvq_decode`` (its
``k``, ``d``, ``shape``), which is what ``fuse.py`` looks for. Packed bytes stay uint8/fp16 constants.
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np
import onnx
from tvm import relax
from tvm.relax.frontend.onnx import onnx_frontend

from ..errors import FormatError, SSVQError
from ..export.decode_node import DOMAIN, OP_TYPE
from ..export.op_schema import register_schema
from ..format import FORMAT_VERSION, index_bits, packed_nbytes
from .decode import DECODE_BLOCK, DecodeSpec, decode_compute

DECODE_ATTR = "ssvq_decode"  # PrimFunc attribute: {"k", "d", "shape", "signed"}
_LOCK = threading.Lock()


class ConversionError(SSVQError, ValueError):
    """An ONNX node that the TVM import cannot convert as asked (invalid SSVQDecode attributes or inputs)."""


def _node_error(name: str, problem: str) -> str:
    return f"[{OP_TYPE}] node {name}: {problem}"


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def attr_problems(k, d, shape, format_version=FORMAT_VERSION, layout="flat") -> list[str]:
    """What is wrong with these attributes per the op contract (empty if nothing)."""
    problems = []
    try:
        index_bits(k)  # the format's rule for k
    except FormatError:
        problems.append(f"expected k a power of two in 2..65536, got k={k}")
    if d < 1:
        problems.append(f"expected d >= 1, got d={d}")
    n = int(np.prod(shape)) if len(shape) else 0
    if n == 0:
        problems.append(f"expected a non-empty weight, got shape {list(shape)}")
    elif d >= 1 and n % d:
        problems.append(f"expected d dividing the N={n} weights, got d={d}")
    if format_version != FORMAT_VERSION:
        problems.append(f"expected format_version={FORMAT_VERSION}, got {format_version}")
    if _text(layout) != "flat":
        problems.append(f'expected layout="flat", got "{_text(layout)}"')
    return problems


def _input_problems(spec: DecodeSpec, dtypes: list[str], shapes: list[tuple | None]) -> list[str]:
    problems = []
    if dtypes[0] not in ("float16", "float32"):
        problems.append(f"expected codebook of type float16 or float32, got {dtypes[0]}")
    if shapes[0] != (spec.k, spec.d):
        problems.append(f"expected codebook of shape [{spec.k}, {spec.d}], got {list(shapes[0] or [])}")
    streams = [("indices", spec.numel // spec.d, spec.bits)] + ([("signs", spec.numel, 1)] if spec.signed else [])
    for (label, count, bits), dtype, shape in zip(streams, dtypes[1:], shapes[1:]):
        if dtype != "uint8" or shape is None or len(shape) != 1:
            problems.append(f"expected {label} as a 1-D uint8 tensor, got {dtype} of shape {list(shape or [])}")
        elif shape[0] != packed_nbytes(count, bits):
            problems.append(f"expected {label} of {packed_nbytes(count, bits)} bytes ({count} x {bits}-bit values), "
                            f"got {shape[0]} bytes")
    return problems


def _padding_problems(spec: DecodeSpec, arrays: list[np.ndarray | None]) -> list[str]:
    problems = []
    for label, array, used in (("indices", arrays[1], spec.numel // spec.d * spec.bits),
                               ("signs", arrays[2] if len(arrays) > 2 else None, spec.numel)):
        spare = array.size * 8 - used if array is not None else 0
        if spare > 0 and int(array[-1]) >> (8 - spare):
            problems.append(f"expected zero padding bits in the last byte of {label}")
    return problems


def _const_value(expr) -> np.ndarray | None:
    value = getattr(expr, "value", None)
    return value.numpy() if value is not None and hasattr(value, "numpy") else None


class SSVQDecodeConverter(onnx_frontend.OnnxOpConverter):
    """``ai.ssvq::SSVQDecode`` v1 -> ``R.call_tir`` of the TIR decode function. Attributes and static input types are
    checked at import; the contents of constant streams too (padding bits), runtime inputs cannot be."""

    @classmethod
    def _impl_v1(cls, bb: relax.BlockBuilder, inputs, attr, params):
        name = attr["tvm_custom"]["name"]
        signs = inputs[2] if len(inputs) > 2 else None
        shape = tuple(int(s) for s in attr.get("shape", ()))
        problems = attr_problems(attr.get("k", 0), attr.get("d", 0), shape, attr.get("format_version", FORMAT_VERSION),
                                 attr.get("layout", "flat"))
        if not problems:
            spec = DecodeSpec(int(attr["k"]), int(attr["d"]), shape, signs is not None)
            args = [inputs[0], inputs[1]] + ([signs] if signs is not None else [])
            types = [a.ty for a in args]
            problems = _input_problems(spec, [t.dtype for t in types],
                                       [tuple(int(s) for s in t.shape) if t.shape is not None else None for t in types])
            if not problems:
                problems = _padding_problems(spec, [_const_value(a) for a in args])
        if problems:
            raise ConversionError("; ".join(_node_error(name, p) for p in problems))
        return bb.call_te(lambda *t: decode_compute(spec, *t), *args, primfunc_name_hint=DECODE_BLOCK,
                          primfunc_attrs={DECODE_ATTR: {"k": spec.k, "d": spec.d, "shape": list(spec.shape),
                                                        "signed": int(spec.signed)}})


CONVERTERS: dict[str, type[onnx_frontend.OnnxOpConverter]] = {OP_TYPE: SSVQDecodeConverter}


@contextlib.contextmanager
def ssvq_converters():
    """Inside this block, ``tvm.relax.frontend.onnx.from_onnx`` also converts our ops (TVM's files are untouched)."""
    with _LOCK:
        original = onnx_frontend._get_convert_map

        def convert_map():
            return {**original(), **CONVERTERS}
        onnx_frontend._get_convert_map = convert_map
        try:
            yield
        finally:
            onnx_frontend._get_convert_map = original


def _scan(model: onnx.ModelProto) -> None:
    """Scan first, then fail once: every SSVQDecode node with bad attributes, listed together."""
    problems = []
    for node in model.graph.node:
        if node.op_type != OP_TYPE:
            continue
        if node.domain != DOMAIN:
            problems.append(_node_error(node.name, f"expected domain {DOMAIN!r}, got {node.domain!r}"))
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        problems += [_node_error(node.name, p) for p in
                     attr_problems(attrs.get("k", 0), attrs.get("d", 0), tuple(attrs.get("shape", ())),
                                   attrs.get("format_version", FORMAT_VERSION), attrs.get("layout", "flat"))]
    if problems:
        raise ConversionError("cannot import into TVM:\n  " + "\n  ".join(problems))


def import_onnx(model: onnx.ModelProto, input_shapes: dict[str, list[int]] | None = None):
    """Relax IRModule of ``model`` (static ``input_shapes`` by input name, e.g. batch 1), our ops converted."""
    _scan(model)
    register_schema()  # lets the importer's onnx.checker call see our op instead of warning about it
    with ssvq_converters():
        return onnx_frontend.from_onnx(model, shape_dict=input_shapes)
