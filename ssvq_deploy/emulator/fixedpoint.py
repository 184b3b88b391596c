"""Requantisation arithmetic of the accelerator's output stage, as the engine executes it.

Two conventions (``REQUANT_MODES``), chosen per compiled network:
  ``gemmlowp``: TFLite/gemmlowp fixed point. A real multiplier m is stored as a Q0.31 int32 ``M`` in [2^30, 2^31)
    and a shift ``e`` with m ~= M * 2^(e-31); y = RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(
    x * 2^max(e,0), M), max(-e,0)). This is what integer hardware implements (no float unit).
  ``fp32``: ONNX Runtime / MLAS convention: y = round_half_even(float32(x) * float32 scale), clamped.
The independent reference (reference.py) re-derives both from their definitions, not from this code.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

REQUANT_MODES = ("gemmlowp", "fp32")
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite ``QuantizeMultiplier``: (M, e) with real ~= M * 2^(e - 31), M in [2^30, 2^31) (0, 0 for real == 0)."""
    if real == 0.0:
        return 0, 0
    if not (math.isfinite(real) and real > 0):
        raise ValueError(f"requant multiplier must be finite and > 0, got {real!r}")
    q, e = math.frexp(real)  # real = q * 2^e, q in [0.5, 1)
    m = math.floor(q * (1 << 31) + 0.5)  # std::round (ties away from zero); q*2^31 and the +0.5 are exact
    if m == 1 << 31:
        m //= 2
        e += 1
    if e < -31:  # too small to represent: flush to zero, as TFLite does
        return 0, 0
    return m, e


@dataclass(frozen=True)
class Requant:
    """Per-output-channel requantisation parameters of one layer (both conventions, from one real multiplier)."""

    multiplier: np.ndarray  # [O] int32 Q0.31
    shift: np.ndarray  # [O] int32, positive = left
    scale: np.ndarray  # [O] float32, the fp32 convention's multiplier

    @classmethod
    def from_real(cls, real: np.ndarray, scale_f32: np.ndarray) -> "Requant":
        """``real`` [O] float64 (gemmlowp, computed in double as TFLite does), ``scale_f32`` [O] float32 (ORT)."""
        pairs = [quantize_multiplier(float(r)) for r in np.asarray(real, np.float64).reshape(-1)]
        return cls(np.array([p[0] for p in pairs], np.int64).astype(np.int32),
                   np.array([p[1] for p in pairs], np.int32), np.asarray(scale_f32, np.float32).reshape(-1))


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 values held in int64 arrays."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    total = ab + nudge
    high = np.where(total >= 0, total >> 31, -((-total) >> 31))  # C division truncates toward zero
    return np.where((a == INT32_MIN) & (b == INT32_MIN), np.int64(INT32_MAX), high)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT: x / 2^exponent rounded to nearest, ties away from zero."""
    x = np.asarray(x, np.int64)
    exponent = np.asarray(exponent, np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def multiply_by_quantized_multiplier(x: np.ndarray, multiplier: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """TFLite MultiplyByQuantizedMultiplier (double rounding) on int32 ``x``; multiplier/shift broadcast."""
    shift = np.asarray(shift, np.int64)
    left = np.maximum(shift, 0)
    shifted = np.asarray(x, np.int64) << left
    if shifted.size and (shifted.min() < INT32_MIN or shifted.max() > INT32_MAX):
        raise OverflowError("requant input overflows int32 after the left shift")
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), np.maximum(-shift, 0))


_MAGIC = np.float32(12582912.0)  # 1.5 * 2^23: adding it rounds a float32 |v| < 2^22 to an integer, ties to even


def round_half_even_f32(v: np.ndarray) -> np.ndarray:
    """MLAS's rounding trick: (v + 1.5*2^23) - 1.5*2^23 in float32, for |v| < 2^22 (callers clamp first)."""
    v = np.asarray(v, np.float32)
    return ((v + _MAGIC) - _MAGIC).astype(np.int64)


def requant_fp32(acc: np.ndarray, scale: np.ndarray, zero_point: int, lo: int, hi: int) -> np.ndarray:
    """ORT/MLAS MlasRequantizeOutput: float32(acc) * scale, clamped to [lo - zp, hi - zp], rounded, + zp."""
    value = np.asarray(acc, np.int64).astype(np.float32) * np.asarray(scale, np.float32)
    value = np.minimum(np.maximum(value, np.float32(lo - zero_point)), np.float32(hi - zero_point))
    return round_half_even_f32(value) + zero_point


def requant_gemmlowp(acc: np.ndarray, multiplier: np.ndarray, shift: np.ndarray, zero_point: int, lo: int,
                     hi: int) -> np.ndarray:
    """TFLite int8 output stage: MultiplyByQuantizedMultiplier, + zero point, clamp to [lo, hi]."""
    return np.clip(multiply_by_quantized_multiplier(acc, multiplier, shift) + zero_point, lo, hi)
