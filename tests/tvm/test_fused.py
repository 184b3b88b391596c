"""Decode fused into conv / dense: one TIR function per layer, each schedule template, against the golden decoder
plus a float64 PyTorch reference (1e-5), on random shapes; the lowered TIR holds no buffer of the full weight."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tvm_helpers import conv_model, gemm_model, random_layer
from ssvq_deploy.tvm_backend.build import build_onnx, run_executable, x86_target
from ssvq_deploy.tvm_backend.check import check_no_full_weight
from ssvq_deploy.tvm_backend.kernels import template_for

TOL = 1e-5


def _conv_case(rng, kind):
    """(x shape, weight shape, strides, ONNX pads, groups) of a random layer of ``kind``."""
    if kind == "pointwise_rows":  # output rows >= 14 wide: row vectors, weights broadcast
        c, o, h = int(rng.integers(3, 40)), int(rng.choice([8, 12, 24, 40])), int(rng.choice([14, 16, 28]))
        return (1, c, h, h), (o, c, 1, 1), (1, 1), (0, 0, 0, 0), 1
    if kind == "pointwise_channels":  # 7x7-like maps: channel vectors, weight tile read as [c, r, s, o]
        c, o, h = int(rng.integers(8, 64)), int(rng.choice([16, 32, 48])), int(rng.choice([3, 5, 7]))
        return (1, c, h, h), (o, c, 1, 1), (1, 1), (0, 0, 0, 0), 1
    if kind == "depthwise":
        c, h = int(rng.choice([8, 16, 24])), int(rng.choice([7, 14, 16]))
        return (1, c, h, h), (c, 1, 3, 3), (1, 1), (1, 1, 1, 1), c
    if kind == "depthwise_strided":  # even padded width: the de-interleaved tile; odd: plain stride-2 reads
        c, h = int(rng.choice([8, 16])), int(rng.choice([15, 16, 28]))
        return (1, c, h, h), (c, 1, 3, 3), (2, 2), (1, 1, 1, 1), c
    if kind == "strided_padded":  # first-conv-like: 3x3 stride 2, asymmetric padding
        c, o, h = int(rng.integers(1, 5)), int(rng.choice([16, 24, 32])), int(rng.choice([9, 16, 17]))
        return (1, c, h, h + 2), (o, c, 3, 3), (2, 2), (1, 0, 1, 1), 1
    assert kind == "grouped"
    g, per_in, per_out = int(rng.choice([2, 4])), int(rng.choice([2, 4])), int(rng.choice([2, 4, 8]))
    h = int(rng.choice([6, 10]))
    return (1, g * per_in, h, h), (g * per_out, per_in, 3, 3), (1, 1), (1, 1, 1, 1), g


def _reference(x, weight, strides, pads, groups, bias=None):
    top, left, bottom, right = pads
    xp = torch.nn.functional.pad(torch.from_numpy(x).double(), (left, right, top, bottom))
    out = torch.nn.functional.conv2d(xp, torch.from_numpy(weight).double(), None if bias is None else
                                     torch.from_numpy(bias).double(), stride=strides, groups=groups)
    return out.numpy()


def _d_for(rng, n):
    return int(rng.choice([d for d in (1, 2, 3, 4, 8, 9, 16) if n % d == 0]))


KINDS = ["pointwise_rows", "pointwise_channels", "depthwise", "depthwise_strided", "strided_padded", "grouped"]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kind", KINDS)
def test_fused_conv_vs_golden_and_torch(kind, seed):
    rng = np.random.default_rng(1000 * KINDS.index(kind) + seed)
    x_shape, w_shape, strides, pads, groups = _conv_case(rng, kind)
    n = int(np.prod(w_shape))
    k, d = int(rng.choice([2, 16, 64, 256])), _d_for(rng, n)
    layer = random_layer(rng, k, d, w_shape, ssvq=bool(seed == 0 or kind != "grouped"), edges=False)
    x = rng.uniform(-1, 1, x_shape).astype(np.float32)
    bias = rng.uniform(-1, 1, w_shape[0]).astype(np.float32) if seed else None
    want = _reference(x, layer.decode(), strides, pads, groups, bias)
    executable, lowered = build_onnx(conv_model(layer, x_shape, want.shape, strides, pads, groups, bias), {})
    assert [f["numel"] for f in lowered.fusion.fused] == [n]  # decode + conv became one function
    got = run_executable(executable, x)[0]
    assert got.shape == want.shape and np.abs(got - want).max() < TOL, np.abs(got - want).max()
    check = check_no_full_weight(lowered.mod, x86_target(1), lowered.fusion.weight_shapes)
    assert check.ok and len(check.kernels) == 1
    kernel = check.kernels[0]
    assert kernel.decode_buffers and all(b.numel < n for b in kernel.decode_buffers), kernel.to_dict()


def test_templates_covered():
    """The cases above reach every schedule template (and the stride-2 column split)."""
    assert template_for("pointwise", 14) == "rows" and template_for("pointwise", 7) == "channels"
    assert template_for("depthwise", 7) == "rows" and template_for("conv", 112) == "channels"
    assert template_for("dense", 1) == "dense"


@pytest.mark.parametrize("batch,inner,out,k,d", [(1, 64, 40, 256, 4), (2, 36, 10, 16, 9), (1, 200, 24, 4, 8)])
def test_fused_dense_vs_golden_and_torch(batch, inner, out, k, d):
    rng = np.random.default_rng(inner + out)
    layer = random_layer(rng, k, d, (out, inner), ssvq=True, edges=False)
    x = rng.uniform(-1, 1, (batch, inner)).astype(np.float32)
    bias = rng.uniform(-1, 1, out).astype(np.float32)
    want = x.astype(np.float64) @ layer.decode().astype(np.float64).T + bias
    executable, lowered = build_onnx(gemm_model(layer, batch, bias), {})
    assert [(f["kind"], f["numel"]) for f in lowered.fusion.fused] == [("dense", out * inner)]
    got = run_executable(executable, x)[0]
    assert np.abs(got - want).max() < TOL
    assert check_no_full_weight(lowered.mod, x86_target(1), lowered.fusion.weight_shapes).ok


@pytest.mark.parametrize("kind", ["pointwise_channels", "depthwise_strided", "strided_padded"])
def test_plain_weight_kernels_same_schedules(kind):
    """The fp32 build (constant weights, laid out for the template at build time) runs the same kernels."""
    rng = np.random.default_rng(7)
    x_shape, w_shape, strides, pads, groups = _conv_case(rng, kind)
    layer = random_layer(rng, 16, 1, w_shape, edges=False)
    x = rng.uniform(-1, 1, x_shape).astype(np.float32)
    want = _reference(x, layer.decode(), strides, pads, groups)
    executable, lowered = build_onnx(conv_model(layer, x_shape, want.shape, strides, pads, groups, packed=False), {})
    assert lowered.fusion.plain == 1 and not lowered.fusion.fused
    assert len(lowered.schedules) == 1
    assert np.abs(run_executable(executable, x)[0] - want).max() < TOL


def test_threads_parallel_schedule_matches():
    rng = np.random.default_rng(11)
    layer = random_layer(rng, 16, 8, (32, 16, 1, 1), edges=False)
    x = rng.uniform(-1, 1, (1, 16, 14, 14)).astype(np.float32)
    want = _reference(x, layer.decode(), (1, 1), (0, 0, 0, 0), 1)
    executable, _ = build_onnx(conv_model(layer, x.shape, want.shape), {}, threads=2)
    assert np.abs(run_executable(executable, x)[0] - want).max() < TOL
