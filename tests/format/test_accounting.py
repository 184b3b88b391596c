"""Bits and compression ratio, checked by hand and against the paper's Table 10 (DeiT-Tiny) and MobileNetV2."""
import pytest

from ssvq_deploy.format import bits_per_weight, compression_ratio, dense_bits, quantized_bits
from ssvq_deploy.models.mobilenetv2 import MobileNetV2
from ssvq_deploy.quant.compress import quantizable_layers

# DeiT-Tiny conv/linear weights: patch embedding, 12 x (qkv, proj, fc1, fc2), head.
DEIT_TINY = [192 * 3 * 16 * 16] + [576 * 192, 192 * 192, 768 * 192, 192 * 768] * 12 + [1000 * 192]


def test_layer_bits_by_hand():
    b = quantized_bits(1024, 16, 8, signed=True)
    assert (b.index_bits, b.sign_bits, b.codebook_bits) == (512, 1024, 16 * 8 * 16)
    assert b.total == 3584 and b.bits_per_weight == 3.5
    v = quantized_bits(1024, 64, 4, signed=False)
    assert (v.index_bits, v.sign_bits, v.codebook_bits) == (1536, 0, 64 * 4 * 16)
    assert dense_bits(10).total == 320 and dense_bits(10).bits_per_weight == 32
    # a dense layer beside a quantized one: (3584 + 320) bits for 1034 weights
    assert compression_ratio([b, dense_bits(10)]) == pytest.approx(32 * 1034 / 3904)
    assert bits_per_weight([b, dense_bits(10)]) == pytest.approx(3904 / 1034)


def test_deit_tiny_matches_paper_table():
    assert len(DEIT_TINY) == 50 and sum(DEIT_TINY) == 5_647_872
    cr = lambda k, d, s: compression_ratio([quantized_bits(n, k, d, s) for n in DEIT_TINY])
    assert round(cr(8, 8, True), 1) == 23.1
    assert round(cr(128, 8, True), 1) == 15.8
    assert round(cr(64, 4, False), 1) == 20.8
    # independent closed form: 32 N / (N (log2 k / d + s) + L k d 16)
    n = sum(DEIT_TINY)
    assert cr(8, 8, True) == pytest.approx(32 * n / (n * (3 / 8 + 1) + 50 * 8 * 8 * 16))


def test_mobilenetv2_compression_ratios():
    numels = [m.weight.numel() for m in quantizable_layers(MobileNetV2()).values()]
    assert len(numels) == 53 and sum(numels) == 3_469_760  # 52 convs + classifier
    paper = {8: 22.9, 16: 20.7, 32: 18.6, 64: 16.6}
    ours = {k: compression_ratio([quantized_bits(n, k, 8, True) for n in numels]) for k in paper}
    print("\nMobileNetV2 SSVQ d=8 compression ratio (ours vs paper):",
          ", ".join(f"k={k}: {ours[k]:.2f}x vs {paper[k]}x" for k in paper))
    for k in paper:
        assert abs(ours[k] - paper[k]) < 0.5, (k, ours[k])
    values = [ours[k] for k in sorted(ours)]
    assert all(a > b for a, b in zip(values, values[1:]))
