"""The accelerator's weight decode unit: packed indices + sign bits + int8 codebook -> int8 weights for the PE array.

It reads the format's LSB-first streams (docs/format.md) the way hardware does, through a 24-bit window and a
barrel shift per field, and decodes any contiguous range of the flat weight (one PE tile at a time). It is checked
against the golden decoder ``PackedLayer.decode`` in tests/emulator.
"""
from __future__ import annotations

import numpy as np

from .network import CodebookWeights

_WINDOW_BYTES = 3  # a field of up to 16 bits starting at any bit offset fits in 24 bits


def read_fields(stream: np.ndarray, first: int, count: int, bits: int) -> np.ndarray:
    """Fields ``first .. first+count-1`` of ``bits`` bits each from the LSB-first byte ``stream``, [count] int64."""
    offsets = (np.arange(count, dtype=np.int64) + first) * bits
    padded = np.concatenate([stream.astype(np.int64), np.zeros(_WINDOW_BYTES, np.int64)])
    byte = offsets >> 3
    window = padded[byte] | (padded[byte + 1] << 8) | (padded[byte + 2] << 16)
    return (window >> (offsets & 7)) & ((1 << bits) - 1)


def decode_range(w: CodebookWeights, start: int, stop: int) -> np.ndarray:
    """int8 weights of flat positions [start, stop) (row-major weight order), sign and channel negation applied."""
    layer = w.layer
    d = layer.d
    first, last = start // d, (stop + d - 1) // d
    codes = read_fields(layer.indices, first, last - first, layer.index_bits)
    values = w.codebook.astype(np.int64)[codes].reshape(-1)[start - first * d: stop - first * d]
    negative = np.zeros(stop - start, bool) if layer.signs is None else \
        read_fields(layer.signs, start, stop - start, 1).astype(bool)
    per_channel = layer.numel // layer.shape[0]
    negative ^= w.negate[np.arange(start, stop) // per_channel]
    return np.where(negative, -values, values).astype(np.int8)


def decode_channels(w: CodebookWeights, first: int, last: int) -> np.ndarray:
    """int8 weights of output channels ``first .. last-1``, in the layer's weight shape [last-first, ...]."""
    per_channel = w.layer.numel // w.layer.shape[0]
    flat = decode_range(w, first * per_channel, last * per_channel)
    return flat.reshape(last - first, *w.layer.shape[1:])
