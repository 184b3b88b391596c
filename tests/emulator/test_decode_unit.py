"""The decode unit against the golden decoder: every field width, partial ranges (runs crossing channels), VQ,
and the per-channel negation that carries negative BatchNorm scales."""
import numpy as np
import pytest

from ssvq_deploy.emulator.compiler import quantize_codebook
from ssvq_deploy.emulator.decode_unit import decode_channels, decode_range, read_fields
from ssvq_deploy.emulator.network import CodebookWeights
from ssvq_deploy.format import PackedLayer, pack_bits, unpack_bits


@pytest.mark.parametrize("bits", range(1, 17))
def test_read_fields_matches_format_unpacker(bits):
    rng = np.random.default_rng(bits)
    count = 37 * bits + 5
    values = rng.integers(0, 1 << bits, count)
    stream = pack_bits(values, bits)
    assert np.array_equal(read_fields(stream, 0, count, bits), unpack_bits(stream, count, bits))
    assert np.array_equal(read_fields(stream, 11, 20, bits), values[11:31])


def _weights(shape, k, d, method, seed, negate=None) -> CodebookWeights:
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    codebook = rng.standard_normal((k, d)).astype(np.float16)
    negative = rng.random(n) < 0.5 if method == "ssvq" else None
    layer = PackedLayer.pack("w", shape, np.abs(codebook) if method == "ssvq" else codebook,
                             rng.integers(0, k, n // d), negative)
    codebook_q, scale = quantize_codebook(layer)
    negate = np.zeros(shape[0], bool) if negate is None else negate
    return CodebookWeights(layer, codebook_q, scale, negate)


def _golden_int8(w: CodebookWeights) -> np.ndarray:
    """Golden float decode, each value mapped to its int8 codeword (exact: every value is a codebook entry)."""
    real = w.layer.decode().astype(np.float64)
    q = np.rint(real / w.codebook_scale).astype(np.int64)
    return q * np.where(w.negate, -1, 1).reshape(-1, *([1] * (q.ndim - 1)))


@pytest.mark.parametrize("shape, k, d, method", [
    ((24, 16, 1, 1), 16, 8, "ssvq"),  # pointwise: runs inside one output channel
    ((96, 1, 3, 3), 16, 8, "ssvq"),  # depthwise: runs of 8 cross the 9-weight channels
    ((20, 3, 3, 3), 256, 4, "ssvq"),
    ((37, 50), 2, 1, "ssvq"),
    ((10, 7, 3, 3), 64, 3, "vq"),
    ((33, 12), 65536, 2, "ssvq"),
])
def test_decode_unit_matches_golden(shape, k, d, method):
    w = _weights(shape, k, d, method, seed=k + d)
    golden = _golden_int8(w)
    assert np.array_equal(decode_channels(w, 0, shape[0]), golden)
    flat = golden.reshape(-1)
    rng = np.random.default_rng(3)
    for _ in range(20):
        start = int(rng.integers(0, flat.size))
        stop = int(rng.integers(start + 1, flat.size + 1))
        assert np.array_equal(decode_range(w, start, stop), flat[start:stop]), (start, stop)
    assert np.array_equal(decode_channels(w, 3, 7), golden[3:7])


def test_negate_flips_whole_channels():
    shape = (16, 1, 3, 3)  # 144 weights: runs of 8 cross channel boundaries
    negate = np.arange(16) % 3 == 0
    plain, flipped = _weights(shape, 16, 8, "ssvq", 5), _weights(shape, 16, 8, "ssvq", 5, negate)
    a, b = decode_channels(plain, 0, 16), decode_channels(flipped, 0, 16)
    assert np.array_equal(b[negate], -a[negate]) and np.array_equal(b[~negate], a[~negate])
    assert np.array_equal(b, _golden_int8(flipped))


def test_int8_codebook_keeps_the_layout():
    w = _weights((8, 16), 16, 8, "ssvq", 9)
    assert w.codebook.dtype == np.int8 and w.codebook.min() >= 0 and w.codebook.max() == 127
    assert np.abs(w.codebook * w.codebook_scale - w.layer.codebook.astype(np.float64)).max() <= w.codebook_scale / 2
