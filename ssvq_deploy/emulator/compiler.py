"""The accelerator compiler: calibrate activation ranges on real photos, then quantise a float graph into a
QuantizedNetwork (int8 activations, int8 or codebook weights, int32 biases, requant multipliers).

BatchNorm after a conv is a per-output-channel affine map y = g[o] * conv + b[o]:
  - int8 baseline: g is folded into the float weights before per-channel int8 quantisation (as ORT and TFLite do);
  - SSVQ/VQ: the codebook is shared by all channels, so g cannot be folded into it. |g[o]| goes into the
    channel's requant multiplier (weight scale = codebook_scale * |g[o]|) and sign(g[o]) into the sign bits
    (``negate``). The packed indices and signs are used exactly as stored: SSVQ stays exact on the hardware.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..format import PackedLayer
from .fixedpoint import REQUANT_MODES, Requant, quantize_multiplier
from .graph import AddOp, ConvOp, Graph, GraphError, GlobalPoolOp, run_float
from .network import (QMAX, QMIN, WEIGHT_QMAX, CodebookWeights, Int8Weights, QAdd, QConv, QGlobalPool, QParams,
                      QuantizedNetwork)

ADD_LEFT_SHIFT = 20  # TFLite's headroom for the residual add
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


@dataclass(frozen=True)
class Calibration:
    """Per-tensor float ranges observed on the calibration images, and every tensor's shape at batch 1."""

    ranges: dict[str, tuple[float, float]]
    shapes: dict[str, tuple[int, ...]]
    images: int


def calibrate(graph: Graph, images: np.ndarray, chunk: int = 4) -> Calibration:
    """MinMax calibration: min and max of every tensor over ``images`` [n, C, H, W] (float32)."""
    if images.ndim != 4 or len(images) == 0:
        raise ConfigError(f"calibration needs a non-empty [n, C, H, W] batch, got shape {list(images.shape)}")
    ranges: dict[str, tuple[float, float]] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for start in range(0, len(images), chunk):
        for name, t in run_float(graph, images[start:start + chunk]).items():
            lo, hi = float(t.min()), float(t.max())
            old = ranges.get(name, (lo, hi))
            ranges[name] = (min(lo, old[0]), max(hi, old[1]))
            shapes[name] = (1, *t.shape[1:])
    return Calibration(ranges, shapes, len(images))


def activation_qparams(lo: float, hi: float) -> QParams:
    """Asymmetric int8 over [min(lo, 0), max(hi, 0)]: real 0 is exactly representable (zero padding)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = np.float32((hi - lo) / (QMAX - QMIN)) if hi > lo else np.float32(1.0)
    zero_point = int(np.clip(np.round(QMIN - lo / float(scale)), QMIN, QMAX))
    return QParams(float(scale), zero_point)


def _clamp_range(q: QParams, clip: tuple[float, float] | None) -> tuple[int, int]:
    if clip is None:
        return QMIN, QMAX
    lo = QMIN if not np.isfinite(clip[0]) else max(QMIN, q.zero_point + int(np.round(clip[0] / q.scale)))
    hi = QMAX if not np.isfinite(clip[1]) else min(QMAX, q.zero_point + int(np.round(clip[1] / q.scale)))
    return lo, hi


def quantize_codebook(layer: PackedLayer) -> tuple[np.ndarray, float]:
    """int8 codebook [k, d] and its scale: SSVQ magnitudes to 0..127, VQ codewords to -127..127 (max-abs)."""
    codebook = layer.codebook.astype(np.float64)
    top = float(np.abs(codebook).max())
    scale = top / WEIGHT_QMAX if top > 0 else 1.0
    return np.clip(np.rint(codebook / scale), -WEIGHT_QMAX, WEIGHT_QMAX).astype(np.int8), scale


def _int8_weights(op: ConvOp, scale: np.ndarray) -> tuple[Int8Weights, np.ndarray]:
    """BatchNorm folded into the float weights, then symmetric per-output-channel int8."""
    w = op.float_weight().astype(np.float64)
    w = w * scale.reshape(-1, *([1] * (w.ndim - 1)))
    per_channel = np.abs(w.reshape(w.shape[0], -1)).max(axis=1) / WEIGHT_QMAX
    w_scale = np.where(per_channel > 0, per_channel, 1.0).astype(np.float32)
    q = np.rint(w.astype(np.float32) / w_scale.reshape(-1, *([1] * (w.ndim - 1))))
    return Int8Weights(np.clip(q, -WEIGHT_QMAX, WEIGHT_QMAX).astype(np.int8)), w_scale


def _codebook_weights(op: ConvOp, scale: np.ndarray, problems: list[str]) -> tuple[CodebookWeights, np.ndarray]:
    layer = op.weight
    codebook, cb_scale = quantize_codebook(layer)
    zero = np.flatnonzero(scale == 0)
    if zero.size:
        problems.append(f"{op.name}: BatchNorm scale is 0 on channels {zero[:8].tolist()}: its output would be "
                        f"constant, which a shared codebook cannot express through the requant multiplier")
    w_scale = (cb_scale * np.abs(scale)).astype(np.float32)
    w_scale = np.where(w_scale > 0, w_scale, np.float32(1.0))
    return CodebookWeights(layer, codebook, cb_scale, scale < 0), w_scale


def _conv(op: ConvOp, cal: Calibration, qparams: dict[str, QParams], problems: list[str]) -> QConv | None:
    in_q, out_q = qparams[op.input], qparams[op.output]
    if op.linear and any(s != 1 for s in cal.shapes[op.input][2:]):
        problems.append(f"{op.name}: Gemm input {op.input} has shape {list(cal.shapes[op.input])}; only [N, C] or "
                        f"[N, C, 1, 1] (after global pooling) maps onto the accelerator")
        return None
    scale, bias_f = op.fused_scale_bias()
    if isinstance(op.weight, PackedLayer):
        weights, w_scale = _codebook_weights(op, scale, problems)
    else:
        weights, w_scale = _int8_weights(op, scale)
    acc_scale = float(in_q.scale) * w_scale.astype(np.float64)  # real value of one accumulator unit, per channel
    bias = np.rint(bias_f / acc_scale)
    if np.abs(bias).max(initial=0) > INT32_MAX:
        problems.append(f"{op.name}: bias does not fit int32 at scale input x weight")
        return None
    real = acc_scale / float(out_q.scale)
    scale_f32 = (np.float32(in_q.scale) * w_scale) / np.float32(out_q.scale)  # ORT's float32 order
    lo, hi = _clamp_range(out_q, op.clip)
    return QConv(op.name, op.input, op.output, weights, op.shape, op.linear, op.stride, op.pads, op.group,
                 bias.astype(np.int32), w_scale, in_q, out_q, lo, hi, Requant.from_real(real, scale_f32))


def _add(op: AddOp, qparams: dict[str, QParams]) -> QAdd:
    qa, qb = qparams[op.inputs[0]], qparams[op.inputs[1]]
    out_q = qparams[op.output]
    twice_max = 2.0 * max(qa.scale, qb.scale)
    lo, hi = _clamp_range(out_q, op.clip)
    return QAdd(op.name, op.inputs, op.output, (qa, qb), out_q, lo, hi, ADD_LEFT_SHIFT,
                (quantize_multiplier(qa.scale / twice_max), quantize_multiplier(qb.scale / twice_max)),
                quantize_multiplier(twice_max / ((1 << ADD_LEFT_SHIFT) * out_q.scale)))


def _pool(op: GlobalPoolOp, cal: Calibration, qparams: dict[str, QParams]) -> QGlobalPool:
    in_q, out_q = qparams[op.input], qparams[op.output]
    count = int(np.prod(cal.shapes[op.input][2:]))
    real = in_q.scale / (out_q.scale * count)
    scale_f32 = np.float32(in_q.scale) / (np.float32(out_q.scale) * np.float32(count))  # ORT's float32 order
    return QGlobalPool(op.name, op.input, op.output, in_q, out_q, count,
                       Requant.from_real(np.array([real]), np.array([scale_f32], np.float32)))


def compile_network(graph: Graph, cal: Calibration, requant_mode: str = "gemmlowp") -> QuantizedNetwork:
    """Quantise ``graph`` with the ranges of ``cal``; raises GraphError listing every layer it cannot map."""
    if requant_mode not in REQUANT_MODES:
        raise ConfigError(f"requant mode must be one of {REQUANT_MODES}, got {requant_mode!r}")
    qparams = {name: activation_qparams(*r) for name, r in cal.ranges.items()}
    problems: list[str] = []
    ops = []
    for op in graph.ops:
        if isinstance(op, ConvOp):
            q = _conv(op, cal, qparams, problems)
            if q is not None:
                ops.append(q)
        elif isinstance(op, AddOp):
            ops.append(_add(op, qparams))
        else:
            ops.append(_pool(op, cal, qparams))
    if problems:
        raise GraphError("cannot compile this graph for the accelerator:\n  " + "\n  ".join(problems))
    return QuantizedNetwork(graph.input, graph.output, qparams[graph.input], tuple(ops), dict(cal.shapes),
                            requant_mode)
