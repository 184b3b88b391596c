"""The C++ runner and the op library cross-built for aarch64, run under qemu-user, against the x86-64 build.

Needs `make edge-check` (or `bash custom_ops/build_edge.sh`) first; skipped with that hint otherwise.
"""
import numpy as np
import pytest
import torch
from onnx import TensorProto, helper

from ssvq_deploy.export.decode_node import single_decode_model
from ssvq_deploy.export.onnx_export import compressed_onnx, save_onnx
from ssvq_deploy.format import PackedLayer
from ssvq_deploy.pipeline import decoded_model
from ssvq_deploy.runtime.native_runner import RunnerError, run_native, runner_dir

try:
    runner_dir("x86_64"), runner_dir("aarch64")
except RunnerError as exc:
    pytest.skip(f"{exc} (or run `make edge-check`)", allow_module_level=True)


def _both(model_path, x):
    return run_native("x86_64", model_path, x, runs=1), run_native("aarch64", model_path, x, runs=1)


@pytest.mark.parametrize("k,d,shape,signed", [(16, 8, (24, 16, 3, 3), True), (256, 4, (40, 36), True),
                                              (64, 4, (10, 12), False), (2, 3, (7, 9), True)])
def test_decode_is_bit_exact_on_aarch64(tmp_path, k, d, shape, signed):
    rng = np.random.default_rng(k + d)
    n = int(np.prod(shape))
    layer = PackedLayer.pack("w", shape, rng.random((k, d)) * (1 if signed else 2) - (0 if signed else 1),
                             rng.integers(0, k, n // d), rng.random(n) < 0.5 if signed else None)
    model = single_decode_model(layer)
    # The runner feeds one input: give the model a dummy one that the decode does not read.
    model.graph.input.append(helper.make_tensor_value_info("unused", TensorProto.FLOAT, [1]))
    save_onnx(model, tmp_path / "decode.onnx")
    x86, arm = _both(tmp_path / "decode.onnx", np.zeros(1, np.float32))
    golden = layer.decode()
    np.testing.assert_array_equal(x86.output.view(np.uint32), golden.view(np.uint32))
    np.testing.assert_array_equal(arm.output.view(np.uint32), golden.view(np.uint32))


def test_mobilenetv2_matches_x86_to_float_rounding(tmp_path):
    from ssvq_deploy.data import photo_batch
    from ssvq_deploy.models import load_model
    from ssvq_deploy.quant.compress import compress_model
    from ssvq_deploy.recipe import load_recipe

    recipe = load_recipe("mobilenetv2_ssvq")
    compressed = compress_model(load_model("mobilenetv2"), recipe.quant, "mobilenetv2")
    reference = decoded_model(compressed)
    save_onnx(compressed_onnx(compressed, reference, (1, 3, 224, 224)), tmp_path / "ssvq.onnx")
    _, x = photo_batch(["chelsea"])
    x86, arm = _both(tmp_path / "ssvq.onnx", x.numpy())
    # Different MLAS conv kernels (NEON vs AVX-512) sum in different orders: agreement is to float rounding,
    # 1e-5 relative to the largest logit (measured: 1.5e-5 absolute on logits up to 7.5, i.e. 2e-6 relative).
    assert np.abs(arm.output - x86.output).max() < 1e-5 * np.abs(x86.output).max()
    assert arm.output.argmax() == x86.output.argmax()
    with torch.no_grad():
        assert np.abs(x86.output - reference(x).numpy()).max() < 1e-4
    assert "argmax" in arm.stdout and arm.latency_ms > 0
