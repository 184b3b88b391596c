"""LSB-first bit streams: the only bit order used by the SSVQ format.

Element ``i`` of a stream of ``b``-bit values occupies stream bits ``[i*b, (i+1)*b)``; stream bit ``j`` is bit
``j % 8`` (value ``1 << (j % 8)``) of byte ``j // 8``. Within an element, its least significant bit comes first.
Unused high bits of the last byte are zero.
"""
from __future__ import annotations

import numpy as np

from ..errors import FormatError


def packed_nbytes(count: int, bits: int) -> int:
    """Bytes needed to hold ``count`` values of ``bits`` bits each."""
    return (count * bits + 7) // 8


def pack_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack non-negative integers ``values`` [n] (each < 2**bits) into a uint8 stream [packed_nbytes(n, bits)]."""
    if not 1 <= bits <= 16:
        raise FormatError(f"bit width must be in 1..16, got {bits}")
    values = np.asarray(values).reshape(-1)
    if values.size and (values.min() < 0 or values.max() >= (1 << bits)):
        raise FormatError(f"values out of range for {bits}-bit packing: min {values.min()}, max {values.max()}")
    shifts = np.arange(bits, dtype=np.uint32)
    stream = ((values.astype(np.uint32)[:, None] >> shifts) & 1).astype(np.uint8).reshape(-1)  # [n*bits] LSB-first
    return np.packbits(stream, bitorder="little")


def unpack_bits(data: np.ndarray, count: int, bits: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``count`` values [count] int64 from the uint8 stream ``data``."""
    if not 1 <= bits <= 16:
        raise FormatError(f"bit width must be in 1..16, got {bits}")
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 1:
        raise FormatError(f"packed stream must be a 1-D uint8 array, got {data.dtype} {list(data.shape)}")
    need = packed_nbytes(count, bits)
    if data.size != need:
        raise FormatError(f"packed stream of {count} x {bits}-bit values needs {need} bytes, got {data.size}")
    stream = np.unpackbits(data, bitorder="little", count=count * bits).reshape(count, bits)
    weights = (np.int64(1) << np.arange(bits, dtype=np.int64))
    return stream.astype(np.int64) @ weights
