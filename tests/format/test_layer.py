"""PackedLayer: pack/decode against an independent per-element decoder, and validation of malformed layers."""
import math

import numpy as np
import pytest

from ssvq_deploy.errors import FormatError
from ssvq_deploy.format import PackedLayer, pack_bits


def loop_decode(shape, k, d, codebook, indices, signs):
    """Per-element decoder written from docs/format.md, reading one stream bit at a time."""
    b = int(math.log2(k))
    n = math.prod(shape)
    out = np.empty(n, dtype=np.float32)
    for e in range(n):
        v, j = divmod(e, d)
        idx = 0
        for t in range(b):
            bit = v * b + t
            idx |= ((int(indices[bit // 8]) >> (bit % 8)) & 1) << t
        w = np.float32(codebook[idx, j])
        if signs is not None and (int(signs[e // 8]) >> (e % 8)) & 1:
            w = -w  # flips the IEEE sign bit, also for zero
        out[e] = w
    return out.reshape(shape)


def bits_equal(a, b):
    a, b = np.ascontiguousarray(a, np.float32), np.ascontiguousarray(b, np.float32)
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("method", ["ssvq", "vq"])
def test_pack_decode_matches_loop_decoder(seed, method):
    rng = np.random.default_rng(seed * 2 + (method == "vq"))
    ndim = int(rng.integers(1, 5))
    shape = tuple(int(s) for s in rng.integers(1, 6, size=ndim))
    n = math.prod(shape)
    d = int(rng.choice([x for x in range(1, n + 1) if n % x == 0]))
    k = 2 ** int(rng.integers(1, 9))
    codebook = rng.normal(size=(k, d)).astype(np.float16)
    codebook[0, 0] = 0  # a zero magnitude: a negative sign must still flip its sign bit
    if method == "ssvq":
        codebook = np.abs(codebook)
    assignments = rng.integers(0, k, size=n // d)
    negative = rng.random(n) < 0.5 if method == "ssvq" else None
    layer = PackedLayer.pack("w", shape, codebook, assignments, negative)

    assert (layer.k, layer.d, layer.shape, layer.method) == (k, d, shape, method)
    assert layer.indices.size == math.ceil(n // d * math.log2(k) / 8)
    np.testing.assert_array_equal(layer.assignments(), assignments)
    if method == "ssvq":
        assert layer.signs.size == math.ceil(n / 8)
        np.testing.assert_array_equal(layer.negative_mask(), negative)
    else:
        assert layer.signs is None and layer.negative_mask() is None
    decoded = layer.decode()
    assert decoded.dtype == np.float32
    assert bits_equal(decoded, loop_decode(shape, k, d, codebook, layer.indices, layer.signs))
    # and against the plain definition W = S * C[A]
    expect = codebook.astype(np.float32)[assignments].reshape(-1)
    if negative is not None:
        expect = np.where(negative, -expect, expect)
    assert bits_equal(decoded, expect.reshape(shape))


def test_pack_ssvq_takes_magnitudes():
    cb = np.array([[-1.5, 2.0], [-0.0, 0.25]], np.float16)
    layer = PackedLayer.pack("w", (2, 2), cb, np.array([0, 1]), np.array([False, True, True, False]))
    assert not np.signbit(layer.codebook).any()
    assert bits_equal(layer.decode(), np.array([[1.5, -2.0], [-0.0, 0.25]], np.float32))


def _valid(k=4, d=2, shape=(4, 4), ssvq=True):
    n = math.prod(shape)
    cb = np.abs(np.random.default_rng(0).normal(size=(k, d))).astype(np.float16)
    idx = pack_bits(np.arange(n // d) % k, int(math.log2(k)))
    signs = pack_bits(np.arange(n) % 2, 1) if ssvq else None
    return dict(name="blk.w", shape=shape, k=k, d=d, codebook=cb, indices=idx, signs=signs)


def test_valid_layer_constructs():
    PackedLayer(**_valid())
    PackedLayer(**_valid(ssvq=False))


@pytest.mark.parametrize("change, match", [
    (dict(k=3, codebook=np.zeros((3, 2), np.float16)), r"k must be a power of two.*got 3"),
    (dict(k=1, codebook=np.zeros((1, 2), np.float16)), r"k must be a power of two.*got 1"),
    (dict(k=1 << 17, codebook=np.zeros((1, 2), np.float16)), r"k must be a power of two"),
    (dict(shape=(3, 5)), r"blk\.w: d=2 does not divide the 15 weights"),
    (dict(d=0), r"d must be a positive integer"),
    (dict(shape=(0, 4)), r"empty"),
    (dict(indices=np.zeros(1, np.uint8)), r"blk\.w: indices must be 2 uint8 bytes"),
    (dict(indices=np.zeros(3, np.uint8)), r"indices must be 2 uint8 bytes"),
    (dict(indices=np.zeros(2, np.int8)), r"indices must be 2 uint8 bytes"),
    (dict(signs=np.zeros(1, np.uint8)), r"blk\.w: signs must be 2 uint8 bytes"),
    (dict(signs=np.zeros(3, np.uint8)), r"signs must be 2 uint8 bytes"),
    (dict(codebook=np.zeros((4, 2), np.float32)), r"codebook must be float16 \[4, 2\]"),
    (dict(codebook=np.zeros((4, 3), np.float16)), r"codebook must be float16 \[4, 2\]"),
    (dict(codebook=np.array([[1, 2], [3, -0.5], [0, 0], [1, 1]], np.float16)), r"magnitudes"),
    (dict(codebook=np.array([[1, 2], [3, -0.0], [0, 0], [1, 1]], np.float16)), r"magnitudes"),
    (dict(codebook=np.array([[1, 2], [3, np.nan], [0, 0], [1, 1]], np.float16)), r"NaN"),
    (dict(codebook=np.array([[1, 2], [3, np.inf], [0, 0], [1, 1]], np.float16)), r"NaN or Inf"),
])
def test_validation_errors(change, match):
    with pytest.raises(FormatError, match=match):
        PackedLayer(**{**_valid(), **change})


def test_nonzero_padding_rejected():
    # 3 codes of 3 bits = 9 bits -> 2 bytes, 7 padding bits; 5 signs -> 1 byte, 3 padding bits
    cb = np.ones((8, 1), np.float16)
    base = dict(name="pad", shape=(3,), k=8, d=1, codebook=cb)
    idx = pack_bits(np.array([7, 7, 7]), 3)
    PackedLayer(**base, indices=idx, signs=pack_bits(np.ones(3, np.int64), 1))
    bad_idx = idx.copy()
    bad_idx[-1] |= 0x80
    with pytest.raises(FormatError, match=r"pad indices: non-zero padding"):
        PackedLayer(**base, indices=bad_idx, signs=None)
    bad_signs = np.array([0b1000_0111], np.uint8)
    with pytest.raises(FormatError, match=r"pad signs: non-zero padding"):
        PackedLayer(**base, indices=idx, signs=bad_signs)
    # VQ: negative codewords are fine
    PackedLayer("vq", (3,), 8, 1, -cb, idx, None)
