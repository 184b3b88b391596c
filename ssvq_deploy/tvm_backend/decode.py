"""SSVQDecode as a TE/TensorIR computation: the same LSB-first bit reads as ``format/bits.py`` (docs/format.md).

One function, :func:`weight_element`, gives the decoded float32 value of flat weight position ``f`` as a TIR
expression over the packed buffers. The converter wraps it in a stand-alone decode function (the op as specified);
the fused conv/dense kernels (``kernels.py``) use it as the producer of the weight tile that their schedules place
inside the output-channel loop, so the full weight is never stored.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from tvm import te, tirx

from ..format import index_bits, packed_nbytes

DECODE_BLOCK = "ssvq_decode"  # block name; its annotation of the same name holds d
WEIGHT_SHAPE_ATTR = "ssvq_weight_shape"  # block annotation: the decoded weight's shape (the op's ``shape``)


@dataclass(frozen=True)
class DecodeSpec:
    """Static attributes of one SSVQDecode node (docs/ssvq_op.md)."""

    k: int
    d: int
    shape: tuple[int, ...]
    signed: bool  # SSVQ (a sign stream) or VQ (signed codewords)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def bits(self) -> int:
        return index_bits(self.k)

    @property
    def index_bytes(self) -> int:
        return packed_nbytes(self.numel // self.d, self.bits)


def _byte(stream: te.Tensor, i):
    return stream[i].astype("int32")


def read_code(stream: te.Tensor, pos, bits: int, nbytes: int):
    """The ``bits``-bit value starting at stream bit ``pos`` of an LSB-first uint8 stream of ``nbytes`` bytes."""
    mask = (1 << bits) - 1
    first = pos // 8  # floordiv/floormod (not shifts): the simplifier folds them across tile splits
    if 8 % bits == 0:  # 1, 2, 4, 8 bits: a value never straddles bytes
        return (_byte(stream, first) >> (pos % 8)) & mask
    if bits % 8 == 0:  # 16 bits: byte aligned
        return _byte(stream, first) | (_byte(stream, first + 1) << 8)
    # Other widths straddle up to ceil((7 + bits) / 8) bytes. A byte past the end is only ever read for bits that the
    # mask drops, so the index is clamped rather than guarded.
    window = _byte(stream, first)
    for t in range(1, (7 + bits + 7) // 8):
        window = window | (_byte(stream, tirx.min(first + t, nbytes - 1)) << (8 * t))
    return (window >> (pos % 8)) & mask


def weight_element(spec: DecodeSpec, codebook: te.Tensor, indices: te.Tensor, signs: te.Tensor | None, flat):
    """Decoded float32 weight at flat (row-major) position ``flat``: codebook row by index, sign bit applied."""
    v, j = flat // spec.d, flat % spec.d
    code = read_code(indices, v * spec.bits, spec.bits, spec.index_bytes)
    value = codebook[code, j].astype("float32")  # fp16 -> fp32 widening is exact
    if signs is None:
        return value
    negative = ((_byte(signs, flat // 8) >> (flat % 8)) & 1).astype("uint32")
    # Flip the IEEE-754 sign bit where the sign bit is 1: exact, branch-free, vectorises to one xor.
    return tirx.reinterpret("float32", tirx.reinterpret("uint32", value) ^ (negative << 31))


def flat_index(shape, axes):
    """Row-major flat position of ``axes`` in ``shape``."""
    flat = axes[0]
    for extent, axis in zip(shape[1:], axes[1:]):
        flat = flat * extent + axis
    return flat


def decode_compute(spec: DecodeSpec, codebook: te.Tensor, indices: te.Tensor,
                   signs: te.Tensor | None = None) -> te.Tensor:
    """The decoded weight [*spec.shape] float32 as a TE compute (block ``ssvq_decode``)."""
    return te.compute(spec.shape, lambda *ax: weight_element(spec, codebook, indices, signs,
                                                              flat_index(spec.shape, ax)),
                      name=DECODE_BLOCK, attrs={DECODE_BLOCK: spec.d, WEIGHT_SHAPE_ATTR: list(spec.shape)})
