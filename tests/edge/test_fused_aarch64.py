"""A fused export (SSVQConv / SSVQGemm, ssvq_deploy.export.fused) run by the C++ runner on x86-64 and, under qemu-user,
on aarch64 with each NEON kernel set forced: int8 numerics bit-identical across architectures and kernel sets (the
contract of docs/ssvq_op.md), float numerics equal to float rounding. The kernel report names the set and path each
node ran, so a registry that silently fell back to `ref` would fail here.

Needs `bash custom_ops/build_edge.sh` (or `make edge-check`) first; skipped with that hint otherwise.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from ssvq_deploy.export.fused import FusedConfig, fused_onnx
from ssvq_deploy.export.onnx_export import INPUT, save_onnx
from ssvq_deploy.export.static_activations import quantize_activations
from ssvq_deploy.models import load_state
from ssvq_deploy.quant.compress import compress_model
from ssvq_deploy.quant.config import QuantConfig
from ssvq_deploy.runtime.native_runner import RunnerError, run_native, runner_dir

try:
    runner_dir("x86_64"), runner_dir("aarch64")
except RunnerError as exc:
    pytest.skip(f"{exc} (or run `make edge-check`)", allow_module_level=True)

NEON_SETS = ["neon", "neon_dotprod"]  # qemu's default CPU (`max`) runs both
FLOAT_RTOL = 1e-5  # of the largest output: summation order differs between the x86 and NEON kernels


class EdgeNet(nn.Module):
    """First conv (im2col), strided depthwise (dwconv, or im2col under int8), pointwise, classifier on 2048 inputs."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, 2, 1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
        self.pw = nn.Sequential(nn.Conv2d(16, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.head = nn.Linear(32 * 8 * 8, 10)

    def forward(self, x):
        return self.head(self.pw(self.dw(self.stem(x))).flatten(1))


def _export(tmp_path, k: int, d: int, batch: int, numerics: str, static: bool = False):
    """The fused ONNX file of EdgeNet compressed with SSVQ (k, d), every fused node in `numerics` (`static`: then
    rewritten to static uint8 NHWC activations, calibrated on a few random inputs); the input; and the golden-decoded
    torch model."""
    torch.manual_seed(0)
    compressed = compress_model(EdgeNet().eval(), QuantConfig(method="ssvq", k=k, d=d, iters=3), "edge")
    reference = load_state(EdgeNet(), compressed.state_dict())
    shape = (batch, 3, 16, 16)
    result = fused_onnx(compressed, reference, shape, FusedConfig(numerics=numerics, depthwise_numerics=numerics))
    assert not result.unfused
    model = result.model
    if static:
        calibration = [{INPUT: np.random.default_rng(seed).standard_normal(shape).astype(np.float32)}
                       for seed in range(2, 6)]
        model = quantize_activations(model, calibration).model
    path = tmp_path / f"edge_{numerics}{'_static' if static else ''}.onnx"
    save_onnx(model, path)
    return path, np.random.default_rng(1).standard_normal(shape).astype(np.float32), reference


def _run(tmp_path, arch: str, model, x, kernels: str = "auto"):
    """The runner's output and its kernel report (one dict per node and path)."""
    report = tmp_path / f"report_{arch}_{kernels}.jsonl"
    out = run_native(arch, model, x, runs=1, config={"ssvq.kernels": kernels, "ssvq.kernel_report": str(report)})
    return out.output, [json.loads(line) for line in report.read_text().splitlines()]


@pytest.mark.parametrize("k,d,batch,gemm_path", [(16, 8, 1, "gemv_lut_int8"),  # the recipe's k, d: lookup table
                                                 (32, 4, 6, "gemm_tile_int8")])  # d = 4 tiles, 6 rows of X
def test_int8_fused_export_is_bit_identical_on_aarch64(tmp_path, k, d, batch, gemm_path):
    model, x, _ = _export(tmp_path, k, d, batch, "int8")
    x86, _ = _run(tmp_path, "x86_64", model, x)
    for kernels in NEON_SETS:
        arm, report = _run(tmp_path, "aarch64", model, x, kernels)
        np.testing.assert_array_equal(arm.view(np.uint32), x86.view(np.uint32), err_msg=kernels)
        assert {r["kernels"] for r in report} == {kernels}
        assert sorted(r["path"] for r in report) == sorted(["conv_im2col_int8"] * 2 + ["conv1x1_int8", gemm_path])
        # the one flagged path is the depthwise conv, which int8 numerics always send through im2col
        assert [r["node"] for r in report if r["fallback"]] == ["dw.0.conv"], report


def test_float_fused_export_matches_x86_to_float_rounding(tmp_path):
    model, x, reference = _export(tmp_path, 16, 8, 1, "float")
    x86, _ = _run(tmp_path, "x86_64", model, x)
    arm, report = _run(tmp_path, "aarch64", model, x)  # auto: the best set qemu's CPU supports
    assert {r["kernels"] for r in report} == {"neon_dotprod"} and not any(r["fallback"] for r in report)
    assert {r["path"] for r in report} == {"conv_im2col_f32", "dwconv_f32", "conv1x1_f32", "gemm_f32"}
    assert np.abs(arm - x86).max() <= FLOAT_RTOL * np.abs(x86).max()
    with torch.no_grad():
        assert np.abs(arm - reference(torch.from_numpy(x)).numpy()).max() < 1e-4  # the export gate


def test_static_uint8_export_is_bit_identical_on_aarch64(tmp_path):
    """io uint8_nhwc: the NEON sets take the float tile + requantize path and the portable depthwise kernel, x86-64
    the AVX-512 ones; every uint8 activation, and so the output, must come out the same."""
    model, x, _ = _export(tmp_path, 16, 8, 1, "int8", static=True)
    x86, _ = _run(tmp_path, "x86_64", model, x)
    for kernels in NEON_SETS:
        arm, report = _run(tmp_path, "aarch64", model, x, kernels)
        np.testing.assert_array_equal(arm.view(np.uint32), x86.view(np.uint32), err_msg=kernels)
        assert sorted(r["path"] for r in report) == sorted(["conv_im2col_u8nhwc", "dwconv_u8nhwc", "conv1x1_u8nhwc",
                                                            "gemv_lut_int8"])
