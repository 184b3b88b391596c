"""The functional integer engine: executes a QuantizedNetwork the way the accelerator does, bit for bit.

Activations live in NHWC. A conv is an im2col GEMM cut into PE-array tiles: ``pe_cols`` output channels by
``pe_rows`` reduction elements (kernel tap, input channel); each tile's int8 x int8 products are summed into int32
accumulators that were preloaded with the bias (zero-point correction folded in, as the compiler would). Depthwise
layers run channel-parallel on the columns with kernel taps on the rows. SSVQ weights come out of the decode unit
tile by tile. Partial sums are checked against int32 overflow after every tile. The output stage requantises with
the network's convention (fixedpoint.py).

Tile products are computed as float64 matrix products: every product (|x| <= 128, |w| <= 127) and every partial
sum of a tile (< 2^53) is an exact integer in float64, so the result is the exact integer sum.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .config import AcceleratorConfig
from .decode_unit import decode_channels
from .fixedpoint import INT32_MAX, INT32_MIN, multiply_by_quantized_multiplier, requant_fp32, requant_gemmlowp
from .network import QMAX, QMIN, CodebookWeights, QAdd, QConv, QGlobalPool, QuantizedNetwork


class AccumulatorOverflow(ArithmeticError):
    """An int32 accumulator of the PE array would overflow (the network needs other scales)."""


def _check_int32(acc: np.ndarray, where: str) -> None:
    if acc.size and (acc.min() < INT32_MIN or acc.max() > INT32_MAX):
        raise AccumulatorOverflow(f"{where}: int32 accumulator overflow")


def _requant(mode: str, op, acc: np.ndarray, zero_point: int, lo: int, hi: int) -> np.ndarray:
    """Output stage on int32 accumulators [..., C] with per-channel parameters on the last axis."""
    if mode == "gemmlowp":
        return requant_gemmlowp(acc, op.requant.multiplier.astype(np.int64), op.requant.shift, zero_point, lo, hi)
    return requant_fp32(acc, op.requant.scale, zero_point, lo, hi)


def _weight_tile(op: QConv, first: int, last: int) -> np.ndarray:
    """int8 weights of output channels [first, last) as [n, I/g, kh, kw]; SSVQ/VQ through the decode unit."""
    w = decode_channels(op.weights, first, last) if isinstance(op.weights, CodebookWeights) \
        else op.weights.values[first:last]
    return w.reshape(last - first, op.shape[1], *op.kernel)


def _windows(xp: np.ndarray, i: int, j: int, stride: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """The input pixels kernel tap (i, j) sees for every output pixel: [N, OH, OW, C]."""
    (sh, sw), (oh, ow) = stride, out_hw
    return xp[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :]


def _conv(op: QConv, x: np.ndarray, config: AcceleratorConfig, mode: str) -> np.ndarray:
    if op.linear:
        x = x.reshape(x.shape[0], 1, 1, -1)
    n, h, w, _ = x.shape
    (kh, kw), (sh, sw) = op.kernel, op.stride
    top, left, bottom, right = op.pads
    zx = op.input_q.zero_point
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=zx)  # padding = real 0
    oh, ow = (h + top + bottom - kh) // sh + 1, (w + left + right - kw) // sw + 1
    out_ch, in_per_group = op.out_channels, op.shape[1]
    out_per_group = out_ch // op.group
    rows, cols = config.pe_rows, config.pe_cols
    acc = np.zeros((n, oh, ow, out_ch), np.int64)
    taps = [(i, j) for i in range(kh) for j in range(kw)]
    if op.depthwise:
        for o0 in range(0, out_ch, cols):  # a tile of channels across the PE columns
            o1 = min(out_ch, o0 + cols)
            wt = _weight_tile(op, o0, o1).reshape(o1 - o0, kh * kw).astype(np.int64)
            channels = np.arange(o0, o1) // out_per_group
            tile = np.broadcast_to(op.bias[o0:o1].astype(np.int64) - zx * wt.sum(axis=1), (n, oh, ow, o1 - o0)).copy()
            for t0 in range(0, len(taps), rows):  # kernel taps down the PE rows
                for t in range(t0, min(len(taps), t0 + rows)):
                    tile += _windows(xp, *taps[t], (sh, sw), (oh, ow))[..., channels].astype(np.int64) * wt[:, t]
                _check_int32(tile, op.name)
            acc[..., o0:o1] = tile
    else:
        k = in_per_group * kh * kw
        for g in range(op.group):
            c0 = g * in_per_group
            patches = np.stack([_windows(xp, i, j, (sh, sw), (oh, ow))[..., c0:c0 + in_per_group] for i, j in taps],
                               axis=3).reshape(n * oh * ow, k).astype(np.float64)  # reduction order (i, j, c)
            for o0 in range(g * out_per_group, (g + 1) * out_per_group, cols):
                o1 = min((g + 1) * out_per_group, o0 + cols)
                wk = _weight_tile(op, o0, o1).transpose(2, 3, 1, 0).reshape(k, o1 - o0).astype(np.int64)
                tile = np.broadcast_to(op.bias[o0:o1].astype(np.int64) - zx * wk.sum(axis=0),
                                       (n * oh * ow, o1 - o0)).copy()
                for r0 in range(0, k, rows):
                    tile += (patches[:, r0:r0 + rows] @ wk[r0:r0 + rows].astype(np.float64)).astype(np.int64)
                    _check_int32(tile, op.name)
                acc[..., o0:o1] = tile.reshape(n, oh, ow, o1 - o0)
    y = _requant(mode, op, acc, op.output_q.zero_point, op.act_min, op.act_max).astype(np.int8)
    return y.reshape(n, -1) if op.linear else y


def _add(op: QAdd, a: np.ndarray, b: np.ndarray, mode: str) -> np.ndarray:
    (qa, qb), qo = op.input_q, op.output_q
    da = a.astype(np.int64) - qa.zero_point
    db = b.astype(np.int64) - qb.zero_point
    if mode == "gemmlowp":
        (ma, sa), (mb, sb) = op.input_multipliers
        total = (multiply_by_quantized_multiplier(da << op.left_shift, ma, sa)
                 + multiply_by_quantized_multiplier(db << op.left_shift, mb, sb))
        y = multiply_by_quantized_multiplier(total, *op.output_multiplier) + qo.zero_point
        return np.clip(y, op.act_min, op.act_max).astype(np.int8)
    # MLAS QLinearAdd, scalar form: (sa*(a-za) + sb*(b-zb)) / sc in float32, clamp, + zc, round half to even
    value = (np.float32(qa.scale) * da.astype(np.float32) + np.float32(qb.scale) * db.astype(np.float32)) \
        / np.float32(qo.scale)
    value = np.minimum(np.maximum(value, np.float32(QMIN - qo.zero_point)), np.float32(QMAX - qo.zero_point))
    y = np.rint(value + np.float32(qo.zero_point)).astype(np.int64)
    return np.clip(y, op.act_min, op.act_max).astype(np.int8)


def _pool(op: QGlobalPool, x: np.ndarray, mode: str) -> np.ndarray:
    acc = x.astype(np.int64).sum(axis=(1, 2), keepdims=True) - op.count * op.input_q.zero_point
    _check_int32(acc, "global pool")
    return _requant(mode, op, acc, op.output_q.zero_point, QMIN, QMAX).astype(np.int8)


_EXECUTORS: dict[type, Callable] = {
    QConv: lambda op, t, cfg, mode: _conv(op, t[op.input], cfg, mode),
    QAdd: lambda op, t, cfg, mode: _add(op, t[op.inputs[0]], t[op.inputs[1]], mode),
    QGlobalPool: lambda op, t, cfg, mode: _pool(op, t[op.input], mode),
}


def _to_nchw(t: np.ndarray) -> np.ndarray:
    return t if t.ndim == 2 else t.transpose(0, 3, 1, 2)


def run_engine(network: QuantizedNetwork, x: np.ndarray, config: AcceleratorConfig,
               keep_all: bool = False) -> dict[str, np.ndarray]:
    """Run ``network`` on int8 input ``x`` [N, C, H, W]; returns {output name: int8 array} (NCHW, or [N, C] after
    a Gemm), every tensor if ``keep_all``."""
    tensors = {network.input: np.ascontiguousarray(x.astype(np.int8).transpose(0, 2, 3, 1))}
    for op in network.ops:
        tensors[op.output] = _EXECUTORS[type(op)](op, tensors, config, network.requant_mode)
    names = tensors if keep_all else [network.output]
    return {name: _to_nchw(tensors[name]) for name in names}
