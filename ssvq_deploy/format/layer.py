"""One compressed layer in the packed SSVQ/VQ format, and the numpy golden decoder.

Layout (format version 1, see docs/format.md):
  codebook: [k, d] float16; SSVQ codewords are magnitudes (no sign bit set), VQ codewords are signed.
  indices:  uint8 stream of n_vec = N / d codes, log2(k) bits each, LSB-first (``bits.py``).
  signs:    SSVQ only: uint8 stream of N bits, 1 = negative, LSB-first; VQ layers have none.
The weight is read in row-major order of its PyTorch shape (Conv2d [O, I/groups, kH, kW], Linear [O, I]) and cut
into consecutive runs of d elements; run v is codeword ``codebook[indices[v]]``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import FormatError
from .bits import pack_bits, packed_nbytes, unpack_bits

FORMAT_VERSION = 1
MAX_INDEX_BITS = 16


def index_bits(k: int) -> int:
    """log2(k) for a valid codebook size k (a power of two, 2 <= k <= 65536)."""
    if not isinstance(k, (int, np.integer)) or k < 2 or k & (k - 1) or k > (1 << MAX_INDEX_BITS):
        raise FormatError(f"k must be a power of two in 2..{1 << MAX_INDEX_BITS}, got {k!r}")
    return int(k).bit_length() - 1


def check_divisible(name: str, shape: tuple[int, ...], d: int) -> int:
    """Number of weights N of ``shape``; raises unless d >= 1 divides N."""
    n = math.prod(shape)
    if not isinstance(d, (int, np.integer)) or d < 1:
        raise FormatError(f"{name}: d must be a positive integer, got {d!r}")
    if n == 0:
        raise FormatError(f"{name}: weight of shape {list(shape)} is empty")
    if n % d:
        raise FormatError(f"{name}: d={d} does not divide the {n} weights of shape {list(shape)}")
    return n


def _check_padding(name: str, stream: np.ndarray, used_bits: int) -> None:
    spare = stream.size * 8 - used_bits
    if spare and int(stream[-1]) >> (8 - spare):
        raise FormatError(f"{name}: non-zero padding bits in the last byte (corrupt stream)")


@dataclass(frozen=True, eq=False)
class PackedLayer:
    """A layer's weight as stored: codebook + packed indices (+ packed signs for SSVQ)."""

    name: str
    shape: tuple[int, ...]
    k: int
    d: int
    codebook: np.ndarray  # [k, d] float16
    indices: np.ndarray  # [ceil(n_vec * log2(k) / 8)] uint8
    signs: np.ndarray | None  # [ceil(N / 8)] uint8, SSVQ only

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        n = check_divisible(self.name, self.shape, self.d)
        bits = index_bits(self.k)
        cb = self.codebook
        if cb.dtype != np.float16 or cb.shape != (self.k, self.d):
            raise FormatError(f"{self.name}: codebook must be float16 [{self.k}, {self.d}], got {cb.dtype} {list(cb.shape)}")
        if not np.isfinite(cb).all():
            raise FormatError(f"{self.name}: codebook holds NaN or Inf")
        for label, stream, count, width in (("indices", self.indices, n // self.d, bits),
                                            ("signs", self.signs, n, 1)):
            if stream is None:
                continue
            if stream.dtype != np.uint8 or stream.ndim != 1 or stream.size != packed_nbytes(count, width):
                raise FormatError(f"{self.name}: {label} must be {packed_nbytes(count, width)} uint8 bytes, "
                                  f"got {stream.dtype} {list(stream.shape)}")
            _check_padding(f"{self.name} {label}", stream, count * width)
        if self.signs is not None and np.signbit(cb).any():
            raise FormatError(f"{self.name}: SSVQ codewords must be magnitudes (sign bit clear)")

    @property
    def method(self) -> str:
        return "vq" if self.signs is None else "ssvq"

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def n_vec(self) -> int:
        return self.numel // self.d

    @property
    def index_bits(self) -> int:
        return index_bits(self.k)

    @classmethod
    def pack(cls, name: str, shape, codebook: np.ndarray, assignments: np.ndarray,
             negative: np.ndarray | None) -> "PackedLayer":
        """Pack a codebook [k, d], assignments [n_vec] and, for SSVQ, a negative-sign mask [N] bool."""
        codebook = np.asarray(codebook, dtype=np.float16)
        k = codebook.shape[0]
        if negative is not None:
            codebook = np.abs(codebook)  # also clears the sign of -0.0
        signs = None if negative is None else pack_bits(np.asarray(negative).reshape(-1).astype(np.uint8), 1)
        return cls(name, tuple(shape), k, codebook.shape[1], codebook,
                   pack_bits(np.asarray(assignments), index_bits(k)), signs)

    def assignments(self) -> np.ndarray:
        """Codeword index per sub-vector, [n_vec] int64."""
        return unpack_bits(self.indices, self.n_vec, self.index_bits)

    def negative_mask(self) -> np.ndarray | None:
        """True where the weight is negative, [N] bool (None for VQ)."""
        return None if self.signs is None else unpack_bits(self.signs, self.numel, 1).astype(bool)

    def decode(self, codebook: np.ndarray | None = None) -> np.ndarray:
        """Golden decoder: the float32 weight of ``shape``. Every backend must match it bit for bit.

        ``codebook`` [k, d] (float16 or float32) replaces the stored one, for the op's float32-codebook variant.
        """
        codebook = self.codebook if codebook is None else codebook
        if codebook.shape != (self.k, self.d):
            raise FormatError(f"{self.name}: codebook must be [{self.k}, {self.d}], got {list(codebook.shape)}")
        w = codebook.astype(np.float32)[self.assignments()].reshape(-1)
        if self.signs is not None:
            w = np.where(self.negative_mask(), -w, w)
        return w.reshape(self.shape)


def decode_parts(name: str, shape, k: int, d: int, codebook: np.ndarray, indices: np.ndarray,
                 signs: np.ndarray | None) -> np.ndarray:
    """Golden decode of raw SSVQDecode inputs (docs/ssvq_op.md); ``codebook`` [k, d] may be float16 or float32.

    Streams and attributes are validated as for a stored layer; the codebook is used as given.
    """
    layer = PackedLayer(name, tuple(shape), k, d, np.zeros((k, d), np.float16), indices, signs)
    return layer.decode(codebook)
