"""Independent integer reference of a QuantizedNetwork, written apart from the engine to check it.

Differences from the engine by construction: NCHW instead of NHWC; whole-tensor int64 einsum over sliding windows
instead of PE tiles; zero points subtracted from the activations (zero padding) instead of folded into the bias;
SSVQ weights from the golden decoder (``PackedLayer.decode``) quantised element by element instead of the decode
unit; requantisation from the definitions (exact rational rounding for gemmlowp, float64 with one rounding to
float32 per IEEE operation for fp32) instead of the bit-level tricks.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .network import QMAX, QMIN, CodebookWeights, QAdd, QConv, QGlobalPool, QuantizedNetwork


def _round_half_away(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """x / 2^exponent rounded to nearest, ties away from zero (exponent >= 0)."""
    half = np.where(exponent > 0, np.int64(1) << np.maximum(exponent - 1, 0), 0)
    return np.sign(x) * ((np.abs(x) + half) >> exponent)


def _fixed_point(x: np.ndarray, multiplier, shift) -> np.ndarray:
    """x * M * 2^shift / 2^31: first the doubling high product rounded half up (floor(v + 1/2)), then the right
    shift rounded half away from zero -- the two roundings of gemmlowp's double-rounding pipeline."""
    x = np.asarray(x, np.int64)
    shift = np.asarray(shift, np.int64)
    scaled = x * (np.int64(1) << np.maximum(shift, 0))
    high = (scaled * np.asarray(multiplier, np.int64) + (np.int64(1) << 30)) >> 31  # floor division
    return _round_half_away(high, np.maximum(-shift, 0))


def _f32(v) -> np.ndarray:
    """Round float64 values to float32: with inputs float32, + - * / in float64 then this equals IEEE float32."""
    return np.asarray(v, np.float64).astype(np.float32).astype(np.float64)


def _requant(mode: str, acc: np.ndarray, requant, zero_point: int, lo: int, hi: int, axis: int) -> np.ndarray:
    shape = [1] * acc.ndim
    shape[axis] = -1
    if mode == "gemmlowp":
        y = _fixed_point(acc, requant.multiplier.reshape(shape), requant.shift.reshape(shape)) + zero_point
        return np.clip(y, lo, hi)
    value = _f32(_f32(acc) * requant.scale.astype(np.float64).reshape(shape))
    value = np.clip(value, lo - zero_point, hi - zero_point)
    return np.round(value).astype(np.int64) + zero_point  # numpy rounds half to even


def integer_weights(op: QConv) -> np.ndarray:
    """The layer's int8 weights as int64, SSVQ/VQ from the golden decoder (not the decode unit)."""
    if not isinstance(op.weights, CodebookWeights):
        return op.weights.values.astype(np.int64)
    w = op.weights
    real = w.layer.decode().astype(np.float64)  # float32 codebook values, signed
    q = np.rint(real / w.codebook_scale).astype(np.int64)  # exact codewords: |real| is a codebook entry
    sign = np.where(w.negate, -1, 1).reshape(-1, *([1] * (q.ndim - 1)))
    return q * sign


def conv(op: QConv, x: np.ndarray, mode: str) -> np.ndarray:
    """x: [N, C, H, W] int8 (or [N, C] for linear); returns int8."""
    weights = integer_weights(op)
    xs = x.astype(np.int64) - op.input_q.zero_point
    if op.linear:
        acc = xs.reshape(xs.shape[0], -1) @ weights.T + op.bias.astype(np.int64)
        return _requant(mode, acc, op.requant, op.output_q.zero_point, op.act_min, op.act_max, 1).astype(np.int8)
    top, left, bottom, right = op.pads
    xs = np.pad(xs, ((0, 0), (0, 0), (top, bottom), (left, right)))
    kh, kw = op.kernel
    win = sliding_window_view(xs, (kh, kw), axis=(2, 3))[:, :, ::op.stride[0], ::op.stride[1]]
    n, c, oh, ow = win.shape[:4]
    g = op.group
    win = win.reshape(n, g, c // g, oh, ow, kh, kw)
    wg = weights.reshape(g, op.out_channels // g, c // g, kh, kw)
    acc = np.einsum("ngihwyx,goiyx->ngohw", win, wg).reshape(n, op.out_channels, oh, ow)
    acc = acc + op.bias.astype(np.int64).reshape(1, -1, 1, 1)
    return _requant(mode, acc, op.requant, op.output_q.zero_point, op.act_min, op.act_max, 1).astype(np.int8)


def add(op: QAdd, a: np.ndarray, b: np.ndarray, mode: str) -> np.ndarray:
    (qa, qb), qo = op.input_q, op.output_q
    da = a.astype(np.int64) - qa.zero_point
    db = b.astype(np.int64) - qb.zero_point
    if mode == "gemmlowp":
        (ma, sa), (mb, sb) = op.input_multipliers
        two = np.int64(1) << op.left_shift
        total = _fixed_point(da * two, ma, sa) + _fixed_point(db * two, mb, sb)
        y = _fixed_point(total, *op.output_multiplier) + qo.zero_point
    else:
        value = _f32(_f32(_f32(float(np.float32(qa.scale)) * da) + _f32(float(np.float32(qb.scale)) * db))
                     / float(np.float32(qo.scale)))
        value = np.clip(value, QMIN - qo.zero_point, QMAX - qo.zero_point)
        y = np.round(_f32(value + qo.zero_point)).astype(np.int64)
    return np.clip(y, op.act_min, op.act_max).astype(np.int8)


def global_pool(op: QGlobalPool, x: np.ndarray, mode: str) -> np.ndarray:
    acc = (x.astype(np.int64) - op.input_q.zero_point).sum(axis=(2, 3), keepdims=True)
    return _requant(mode, acc, op.requant, op.output_q.zero_point, QMIN, QMAX, 1).astype(np.int8)


def run_reference(network: QuantizedNetwork, x: np.ndarray, keep_all: bool = False) -> dict[str, np.ndarray]:
    """Run ``network`` on int8 ``x`` [N, C, H, W]; same return convention as ``engine.run_engine``."""
    tensors = {network.input: np.asarray(x, np.int8)}
    mode = network.requant_mode
    for op in network.ops:
        if isinstance(op, QConv):
            y = conv(op, tensors[op.input], mode)
        elif isinstance(op, QAdd):
            y = add(op, tensors[op.inputs[0]], tensors[op.inputs[1]], mode)
        else:
            y = global_pool(op, tensors[op.input], mode)
        tensors[op.output] = y
    return dict(tensors) if keep_all else {network.output: tensors[network.output]}
