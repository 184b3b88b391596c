"""The compiled integer network: what the accelerator executes, and what the engine and the reference both run.

Conventions (TFLite int8): activations are int8 with a per-tensor scale and zero point (real = s * (q - zp));
weights are int8 symmetric (zero point 0) with a per-output-channel scale; biases are int32 in units of
``input_scale * weight_scale[o]``; accumulation is int32. Weights are stored either as int8 (the baseline) or as
the packed SSVQ/VQ format with an int8 codebook (``CodebookWeights``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..format import PackedLayer, packed_nbytes
from .fixedpoint import Requant

QMIN, QMAX = -128, 127
WEIGHT_QMAX = 127  # symmetric int8 weights use [-127, 127], as TFLite
PARAM_BYTES_PER_CHANNEL = 9  # int32 bias + int32 multiplier + int8 shift (its spare bit holds the negate flag)


@dataclass(frozen=True)
class QParams:
    """Per-tensor int8 quantisation: real = scale * (q - zero_point); ``scale`` is a float32 value."""

    scale: float
    zero_point: int

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """ONNX QuantizeLinear: saturate(round_half_even(float32(x) / scale) + zero_point), int8."""
        q = np.rint(np.asarray(x, np.float32) / np.float32(self.scale)).astype(np.int64) + self.zero_point
        return np.clip(q, QMIN, QMAX).astype(np.int8)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return ((np.asarray(q, np.int64) - self.zero_point) * np.float32(self.scale)).astype(np.float32)


@dataclass(frozen=True, eq=False)
class Int8Weights:
    """Baseline weights: int8 [O, I/g, kh, kw] (Conv) or [O, I] (Gemm), read from DRAM byte for byte."""

    values: np.ndarray

    @property
    def stored_bytes(self) -> int:
        return int(self.values.size)

    @property
    def kind(self) -> str:
        return "int8"


@dataclass(frozen=True, eq=False)
class CodebookWeights:
    """SSVQ (or VQ) weights as the accelerator stores them: the file's packed indices and sign bits, unchanged,
    plus the layer codebook converted to int8 (the PE array multiplies int8 x int8).

    Integer weight = (-1)^(sign bit XOR negate[o]) * codebook[index] for SSVQ; codebook[index] (signed) for VQ.
    ``negate`` folds a negative BatchNorm scale into the sign bits, so requant multipliers stay positive.
    """

    layer: PackedLayer
    codebook: np.ndarray  # [k, d] int8; SSVQ magnitudes 0..127, VQ codewords -127..127
    codebook_scale: float  # real codeword = codebook_scale * int8 codeword (before BatchNorm)
    negate: np.ndarray  # [O] bool

    @property
    def index_bytes(self) -> int:
        return packed_nbytes(self.layer.n_vec, self.layer.index_bits)

    @property
    def sign_bytes(self) -> int:
        return 0 if self.layer.signs is None else packed_nbytes(self.layer.numel, 1)

    @property
    def codebook_bytes(self) -> int:
        return int(self.codebook.size)

    @property
    def stored_bytes(self) -> int:
        """What the weight SRAM holds: indices + signs (the codebook sits in its own small SRAM)."""
        return self.index_bytes + self.sign_bytes

    @property
    def kind(self) -> str:
        return self.layer.method


@dataclass(frozen=True, eq=False)
class QConv:
    """Integer Conv (``linear`` = Gemm on [N, I]) with BatchNorm folded and clipping as the output clamp."""

    name: str
    input: str
    output: str
    weights: Int8Weights | CodebookWeights
    shape: tuple[int, ...]  # weight shape, [O, I/g, kh, kw] or [O, I]
    linear: bool
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    group: int
    bias: np.ndarray  # [O] int32
    weight_scale: np.ndarray  # [O] float32
    input_q: QParams
    output_q: QParams
    act_min: int
    act_max: int
    requant: Requant

    @property
    def out_channels(self) -> int:
        return self.shape[0]

    @property
    def kernel(self) -> tuple[int, int]:
        return (1, 1) if self.linear else (self.shape[2], self.shape[3])

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def depthwise(self) -> bool:
        """One input channel per group: mapped channel-parallel onto the PE columns."""
        return not self.linear and self.group > 1 and self.shape[1] == 1


@dataclass(frozen=True, eq=False)
class QAdd:
    """Residual add of two int8 tensors with their own scales (TFLite ADD: inputs left-shifted by 20 bits)."""

    name: str
    inputs: tuple[str, str]
    output: str
    input_q: tuple[QParams, QParams]
    output_q: QParams
    act_min: int
    act_max: int
    left_shift: int
    input_multipliers: tuple[tuple[int, int], tuple[int, int]]  # (M, shift) per input
    output_multiplier: tuple[int, int]


@dataclass(frozen=True, eq=False)
class QGlobalPool:
    """Global average pool: int32 sum of (q - zp) over H*W, requantised by input_scale / (output_scale * H*W)."""

    name: str
    input: str
    output: str
    input_q: QParams
    output_q: QParams
    count: int  # H * W
    requant: Requant  # one channel


QOp = QConv | QAdd | QGlobalPool


@dataclass(frozen=True, eq=False)
class QuantizedNetwork:
    """A compiled network for one input shape. ``shapes`` maps every tensor to its NCHW (or [N, C]) shape at
    batch 1; ``requant_mode`` picks the output-stage convention (fixedpoint.REQUANT_MODES)."""

    input: str
    output: str
    input_q: QParams
    ops: tuple[QOp, ...]
    shapes: dict[str, tuple[int, ...]]
    requant_mode: str

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        return self.input_q.quantize(x)

    def dequantize_output(self, q: np.ndarray) -> np.ndarray:
        return self.output_q.dequantize(q)

    @property
    def output_q(self) -> QParams:
        return next(op.output_q for op in self.ops if op.output == self.output)

    def conv_ops(self) -> list[QConv]:
        return [op for op in self.ops if isinstance(op, QConv)]
