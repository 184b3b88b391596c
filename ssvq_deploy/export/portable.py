"""SSVQDecode as ONNX functions of standard ops (opset 18), for runtimes without our library (``--portable``).

Same semantics as docs/ssvq_op.md, hence bit-exact with the library: LSB-first bit unpacking by shifts, Gather of
codewords, widening Cast, and Neg where the sign bit is set. VQ layers (no signs) use ``VQDecode``.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnxscript import FLOAT, INT64, UINT8, script
from onnxscript import opset18 as op
from onnxscript.values import Opset

from .decode_node import DOMAIN, DOMAIN_VERSION

_ssvq = Opset(DOMAIN, DOMAIN_VERSION)
_INT64, _FLOAT, _BOOL, _UINT64 = 7, 1, 9, 13  # onnx.TensorProto element types


@script(_ssvq, default_opset=op)
def UnpackBits(data: UINT8, count: INT64, bits: INT64) -> INT64:
    """``count`` values of ``bits`` bits from an LSB-first byte stream."""
    shifts = op.Constant(value=np.arange(8, dtype=np.uint8))
    one = op.Constant(value=np.array(1, dtype=np.uint8))
    stream = op.BitwiseAnd(op.BitShift(op.Unsqueeze(data, [-1]), shifts, direction="RIGHT"), one)
    stream = op.Cast(op.Reshape(stream, [-1]), to=_INT64)
    used = op.Slice(stream, [0], op.Reshape(count * bits, [1]))
    used = op.Reshape(used, op.Concat(op.Reshape(count, [1]), op.Reshape(bits, [1]), axis=0))
    one64 = op.Constant(value=np.array(1, dtype=np.uint64))
    place = op.BitShift(one64, op.Cast(op.Range(0, bits, 1), to=_UINT64), direction="LEFT")
    return op.ReduceSum(used * op.Cast(place, to=_INT64), [1], keepdims=0)


@script(_ssvq, default_opset=op)
def VQDecode(codebook, indices: UINT8, k: int, d: int, shape: list[int]) -> FLOAT:
    """Signed codewords gathered by index, reshaped to ``shape``."""
    full = op.Constant(value_ints=shape)
    n_vec = op.ReduceProd(full, keepdims=0) / op.Constant(value_int=d)
    bits = op.Cast(op.Round(op.Log(op.Cast(op.Constant(value_int=k), to=_FLOAT)) / op.Log(2.0)), to=_INT64)
    codes = UnpackBits(indices, n_vec, bits)
    return op.Reshape(op.Cast(op.Gather(codebook, codes, axis=0), to=_FLOAT), full)


@script(_ssvq, default_opset=op)
def SSVQDecode(codebook, indices: UINT8, signs: UINT8, k: int, d: int, shape: list[int]) -> FLOAT:
    """Magnitudes as in VQDecode, negated where the sign bit is 1."""
    magnitude = op.Reshape(VQDecode(codebook, indices, k=k, d=d, shape=shape), [-1])
    full = op.Constant(value_ints=shape)
    negative = op.Cast(UnpackBits(signs, op.ReduceProd(full, keepdims=0), 1), to=_BOOL)
    return op.Reshape(op.Where(negative, op.Neg(magnitude), magnitude), full)


def decode_functions() -> list[onnx.FunctionProto]:
    """The model-local functions a portable export must carry."""
    return [f.to_function_proto() for f in (UnpackBits, VQDecode, SSVQDecode)]
