"""Test helper: randomized single layers (float or packed SSVQ/VQ weights, BatchNorm with negative scales, clipping),
compiled for the accelerator with ranges calibrated on their own random input."""
from dataclasses import dataclass

import numpy as np

from ssvq_deploy.emulator.compiler import Calibration, compile_network
from ssvq_deploy.emulator.graph import ConvOp, Graph, run_float
from ssvq_deploy.emulator.network import QuantizedNetwork
from ssvq_deploy.format import PackedLayer


@dataclass(frozen=True)
class Case:
    """A conv (kernel k, stride, padding (top, left, bottom, right), groups) or, with ``linear``, a Gemm."""

    out_ch: int
    in_ch: int
    kernel: int = 1
    stride: int = 1
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    group: int = 1
    hw: tuple[int, int] = (9, 11)
    linear: bool = False

    @property
    def weight_shape(self) -> tuple[int, ...]:
        if self.linear:
            return self.out_ch, self.in_ch
        return self.out_ch, self.in_ch // self.group, self.kernel, self.kernel


CASES = {
    "pointwise": Case(24, 16),
    "pointwise_odd": Case(37, 13, hw=(7, 5)),
    "depthwise": Case(32, 32, 3, 1, (1, 1, 1, 1), 32),
    "depthwise_strided": Case(21, 21, 3, 2, (1, 1, 1, 1), 21, hw=(12, 9)),
    "depthwise_multiplier": Case(18, 9, 3, 1, (1, 1, 1, 1), 9),
    "strided_padded": Case(20, 12, 3, 2, (1, 1, 1, 1), hw=(13, 10)),
    "asymmetric_pad": Case(11, 7, 3, 1, (0, 1, 2, 1), hw=(8, 8)),
    "grouped": Case(20, 12, 3, 1, (1, 1, 1, 1), 4),
    "large_kernel": Case(17, 13, 5, 2, (2, 2, 2, 2)),
    "first_layer": Case(32, 3, 3, 2, (1, 1, 1, 1), hw=(16, 16)),
    "linear": Case(37, 50, linear=True, hw=(1, 1)),
    "linear_wide": Case(100, 160, linear=True, hw=(1, 1)),
}


def _packed(rng: np.random.Generator, shape: tuple[int, ...], method: str) -> PackedLayer:
    n = int(np.prod(shape))
    d = next(c for c in (8, 4, 3, 2, 1) if n % c == 0)
    k = int(rng.choice([2, 4, 16, 64]))
    codebook = np.abs(rng.standard_normal((k, d))).astype(np.float16) * np.float16(0.3)
    if method == "vq":
        codebook = codebook * np.where(rng.random((k, d)) < 0.5, -1, 1).astype(np.float16)
    negative = rng.random(n) < 0.5 if method == "ssvq" else None
    return PackedLayer.pack("layer", shape, codebook, rng.integers(0, k, n // d), negative)


def random_layer(case: Case, seed: int, method: str = "ssvq", clip: bool = False, bn: bool = True,
                 batch: int = 2) -> tuple[Graph, np.ndarray]:
    """(one-layer graph, float input [batch, C, H, W]); ``method`` is ssvq, vq or int8 (float weights)."""
    rng = np.random.default_rng(seed)
    shape = case.weight_shape
    weight = (rng.standard_normal(shape) * 0.3).astype(np.float32) if method == "int8" else _packed(rng, shape, method)
    o = case.out_ch
    bn_scale = (rng.uniform(0.3, 2.0, o) * np.where(rng.random(o) < 0.3, -1, 1)).astype(np.float32) if bn else None
    bn_shift = (rng.standard_normal(o) * 0.2).astype(np.float32) if bn else None
    op = ConvOp("layer", "x", "y", weight, (rng.standard_normal(o) * 0.1).astype(np.float32), bn_scale, bn_shift,
                (0.0, 6.0) if clip else None, (case.stride, case.stride), case.pads, case.group, case.linear)
    x = (rng.standard_normal((batch, case.in_ch, *case.hw)) * rng.uniform(0.5, 2) + rng.uniform(-0.5, 0.5))
    return Graph("x", "y", (op,)), x.astype(np.float32)


def self_calibrated(graph: Graph, x: np.ndarray) -> Calibration:
    tensors = run_float(graph, x)
    return Calibration({n: (float(t.min()), float(t.max())) for n, t in tensors.items()},
                       {n: (1, *t.shape[1:]) for n, t in tensors.items()}, len(x))


def compiled_layer(case: Case, seed: int, method: str = "ssvq", mode: str = "gemmlowp",
                   **kwargs) -> tuple[QuantizedNetwork, np.ndarray]:
    """(compiled one-layer network, int8 input)."""
    graph, x = random_layer(case, seed, method, **kwargs)
    network = compile_network(graph, self_calibrated(graph, x), mode)
    return network, network.quantize_input(x)
