"""The output stage's arithmetic against C semantics written with Python integers, edge cases included."""
import math

import numpy as np
import pytest

from ssvq_deploy.emulator.fixedpoint import (INT32_MAX, INT32_MIN, multiply_by_quantized_multiplier,
                                             quantize_multiplier, requant_fp32, rounding_divide_by_pot,
                                             saturating_rounding_doubling_high_mul)


def _c_div(a: int, b: int) -> int:
    """C integer division: truncates toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _srdhm(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul, line by line."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return _c_div(ab + nudge, 1 << 31)


def _rdbpot(x: int, e: int) -> int:
    mask = (1 << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if remainder > threshold else 0)


EDGES = [0, 1, -1, 2, -2, (1 << 30), -(1 << 30), INT32_MAX, INT32_MIN, INT32_MIN + 1, 12345, -12345]


def test_srdhm_matches_c():
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.integers(INT32_MIN, INT32_MAX, 5000, endpoint=True), EDGES, EDGES])
    b = np.concatenate([rng.integers(INT32_MIN, INT32_MAX, 5000, endpoint=True), EDGES, EDGES[::-1]])
    got = saturating_rounding_doubling_high_mul(a, b)
    assert got.tolist() == [_srdhm(int(x), int(y)) for x, y in zip(a, b)]
    assert int(saturating_rounding_doubling_high_mul(INT32_MIN, INT32_MIN)) == INT32_MAX


def test_rounding_divide_by_pot_ties_away_from_zero():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.integers(INT32_MIN, INT32_MAX, 3000, endpoint=True), np.arange(-40, 41)])
    for e in (0, 1, 2, 5, 13, 31):
        assert rounding_divide_by_pot(x, e).tolist() == [_rdbpot(int(v), e) for v in x]
    assert rounding_divide_by_pot(np.array([-3, -1, 1, 3, 5]), 1).tolist() == [-2, -1, 1, 2, 3]


@pytest.mark.parametrize("real", [1e-9, 3.0517578125e-05, 0.0007, 0.25, 0.5, 0.7071, 0.99999999999, 1.0, 3.5,
                                  1000.25])
def test_quantize_multiplier(real):
    m, e = quantize_multiplier(real)
    assert (1 << 30) <= m < (1 << 31)
    assert m * 2.0 ** (e - 31) == pytest.approx(real, rel=2 ** -30)
    q, exp = math.frexp(real)
    assert (m, e) in {(math.floor(q * 2 ** 31 + 0.5), exp), (1 << 30, exp + 1)}


def test_quantize_multiplier_zero_and_tiny():
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(1e-12) == (0, 0)  # below 2^-31: flushed, as TFLite
    with pytest.raises(ValueError, match="finite and > 0"):
        quantize_multiplier(-0.5)


def test_multiply_by_quantized_multiplier_matches_c():
    rng = np.random.default_rng(2)
    x = rng.integers(-(1 << 24), 1 << 24, 4000)
    for real in (0.000123, 0.01, 0.3333, 0.5, 0.999):
        m, e = quantize_multiplier(real)
        expected = [_rdbpot(_srdhm(int(v) * (1 << max(e, 0)), m), max(-e, 0)) for v in x]
        assert multiply_by_quantized_multiplier(x, m, e).tolist() == expected
        assert np.abs(multiply_by_quantized_multiplier(x, m, e) - x * real).max() <= 1


def test_left_shift_overflow_is_reported():
    m, e = quantize_multiplier(4.0)
    with pytest.raises(OverflowError):
        multiply_by_quantized_multiplier(np.array([1 << 30]), m, e)


def test_requant_fp32_rounds_half_to_even_after_clamping():
    acc = np.array([1, 3, 5, -1, -3, 7, 1000, -1000, 250])
    y = requant_fp32(acc, np.float32(0.5), 0, -128, 127)
    assert y.tolist() == [0, 2, 2, 0, -2, 4, 127, -128, 125]
    assert requant_fp32(np.array([4]), np.float32(1.0), -128, -128, 127).tolist() == [-124]
