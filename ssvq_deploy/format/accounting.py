"""Bits-per-weight and compression-ratio accounting, exactly as the SSVQ paper counts it.

CR = 32*N / (N*(log2(k)/d + s) + sum_layers k*d*16), s = 1 for SSVQ (sign bit), 0 for VQ; N counts all conv and
linear weight elements. Layers left uncompressed count at 32 bits per weight. Biases and norms are excluded.
"""
from __future__ import annotations

from dataclasses import dataclass

CODEWORD_BITS = 16  # codebooks are stored fp16


@dataclass(frozen=True)
class LayerBits:
    """Storage of one weight tensor, in bits."""

    numel: int
    index_bits: float
    sign_bits: int
    codebook_bits: int

    @property
    def total(self) -> float:
        return self.index_bits + self.sign_bits + self.codebook_bits

    @property
    def bits_per_weight(self) -> float:
        return self.total / self.numel


def quantized_bits(numel: int, k: int, d: int, signed: bool) -> LayerBits:
    """Bits of a layer stored as indices (+ signs) + fp16 codebook, paper-style (fractional index bits)."""
    log2k = k.bit_length() - 1
    return LayerBits(numel, numel * log2k / d, numel if signed else 0, k * d * CODEWORD_BITS)


def dense_bits(numel: int) -> LayerBits:
    """An uncompressed fp32 weight."""
    return LayerBits(numel, 32.0 * numel, 0, 0)


def compression_ratio(layers: list[LayerBits]) -> float:
    """32*N over the total stored bits of all layers."""
    return 32.0 * sum(l.numel for l in layers) / sum(l.total for l in layers)


def bits_per_weight(layers: list[LayerBits]) -> float:
    """Stored bits per conv/linear weight, codebooks included."""
    return sum(l.total for l in layers) / sum(l.numel for l in layers)
