"""SSVQConv / SSVQGemm (docs/ssvq_op.md) in libssvq_ort.so against the golden decoder + reference conv / matmul
(ssvq_deploy.export.fused_schema: onnx.reference's Conv on the golden-decoded weight, int8 numerics emulated in
numpy), on randomised shapes, through every kernel set this CPU runs (forced by the ``ssvq.kernels`` session config).

Tolerances: float numerics FLOAT_RTOL of the sum of |products| (summation order differs); int8 numerics bit-exact
with the numpy emulation up to INT8_ULPS (the emulation rounds fma through float64)."""
from __future__ import annotations

import json
import math

import numpy as np
import onnxruntime as ort
import pytest

from ssvq_deploy.export.fused import single_fused_model
from ssvq_deploy.export.fused_schema import conv_reference, gemm_reference
from ssvq_deploy.format import PackedLayer
from ssvq_deploy.runtime import LibraryNotFoundError, library_path

FLOAT_RTOL = 1e-5
INT8_ULPS = 1
KERNEL_SETS = ["auto", "avx512vnni", "avx2", "ref"]


@pytest.fixture(scope="module", autouse=True)
def _library():
    try:
        library_path()
    except LibraryNotFoundError as e:
        pytest.skip(f"libssvq_ort.so is not built: {e}")


def session(model, kernels: str = "auto", threads: int = 1, report: str | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("ssvq.kernels", kernels)
    if report:
        options.add_session_config_entry("ssvq.kernel_report", report)
    options.register_custom_ops_library(str(library_path()))
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def supported(kernels: str) -> bool:
    try:
        session(single_fused_model("SSVQGemm", random_layer(np.random.default_rng(0), (4, 8), 16, 8, True), [1, 8]),
                kernels)
        return True
    except Exception as e:  # the library rejects a set this CPU lacks
        assert "ssvq.kernels" in str(e)
        return False


def random_layer(rng, shape, k, d, ssvq) -> PackedLayer:
    n = math.prod(shape)
    codebook = rng.standard_normal((k, d)).astype(np.float16)
    return PackedLayer.pack("w", shape, np.abs(codebook) if ssvq else codebook, rng.integers(0, k, n // d),
                            rng.random(n) < 0.5 if ssvq else None)


def assert_close(got, want, numerics, bound):
    assert got.shape == want.shape and got.dtype == np.float32
    if numerics == "int8":
        ulps = np.abs(got.view(np.int32).astype(np.int64) - want.view(np.int32).astype(np.int64))
        assert ulps.max() <= INT8_ULPS, f"int8: {ulps.max()} ulps"
    else:
        np.testing.assert_array_less(np.abs(got - want), FLOAT_RTOL * bound + 1e-6)


# (weight shape, x shape, conv attributes): 1x1, depthwise 3x3 (stride 1 / 2), grouped, strided, padded, dilated,
# odd channel counts and sizes, a first-conv-like 3-channel input.
CONV_CASES = [
    ((32, 16, 1, 1), (1, 16, 9, 7), {}),
    ((21, 13, 1, 1), (3, 13, 5, 11), {}),
    ((24, 1, 3, 3), (1, 24, 11, 13), dict(group=24, pads=[1, 1, 1, 1])),
    ((24, 1, 3, 3), (2, 24, 12, 17), dict(group=24, pads=[1, 1, 1, 1], strides=[2, 2])),
    ((16, 3, 3, 3), (1, 3, 17, 15), dict(pads=[1, 1, 1, 1], strides=[2, 2])),
    ((12, 4, 3, 3), (2, 8, 10, 10), dict(group=2, pads=[0, 1, 2, 1], dilations=[2, 1])),
    ((10, 6, 1, 1), (1, 6, 9, 9), dict(strides=[2, 2])),
    ((8, 3, 5, 3), (1, 6, 13, 9), dict(group=2, pads=[2, 1, 2, 1], strides=[1, 3])),
]


@pytest.mark.parametrize("numerics", ["float", "int8"])
@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv_vs_reference(case, numerics):
    shape, x_shape, attrs = CONV_CASES[case]
    rng = np.random.default_rng(case)
    k, d = [(16, 8), (64, 4), (8, 3), (32, 9)][case % 4]
    n = math.prod(shape)
    d = d if n % d == 0 else 1
    layer = random_layer(rng, shape, k, d, ssvq=case % 3 != 2)
    x = rng.standard_normal(x_shape).astype(np.float32)
    scale = (rng.random(shape[0]) + 0.5).astype(np.float32) if case % 2 else None
    bias = rng.standard_normal(shape[0]).astype(np.float32) if case % 4 != 3 else None
    activation = ["none", "relu", "relu6"][case % 3]
    model = single_fused_model("SSVQConv", layer, list(x_shape), scale=scale, bias=bias, activation=activation,
                               numerics=numerics, conv_attrs=attrs)
    want = conv_reference(x, layer.codebook, layer.indices, layer.signs, scale, bias, k=layer.k, d=layer.d,
                          shape=list(shape), activation=activation, numerics=numerics, **attrs)
    w_abs = np.abs(layer.decode()).max() * (1 if scale is None else scale.max())
    bound = w_abs * np.abs(x).max() * math.prod(shape[1:]) + 1
    for kernels in KERNEL_SETS:
        if kernels != "auto" and not supported(kernels):
            continue
        for threads in (1, 2):
            got = session(model, kernels, threads).run(None, {"X": x})[0]
            assert_close(got, want, numerics, bound)


GEMM_CASES = [(64, 128, 1), (40, 64, 3), (100, 96, 7), (33, 24, 2), (70, 192, 4), (16, 512, 5)]


@pytest.mark.parametrize("numerics", ["float", "int8"])
@pytest.mark.parametrize("case", range(len(GEMM_CASES)))
def test_gemm_vs_reference(case, numerics):
    n_out, k_in, m = GEMM_CASES[case]
    rng = np.random.default_rng(100 + case)
    k, d = [(16, 8), (16, 8), (64, 4), (8, 8), (4, 8), (256, 8)][case]
    layer = random_layer(rng, (n_out, k_in), k, d, ssvq=case != 3)
    x = rng.standard_normal((m, k_in) if case % 2 == 0 else (1, m, k_in)).astype(np.float32)
    bias = rng.standard_normal(n_out).astype(np.float32) if case % 3 else None
    scale = (rng.random(n_out) + 0.5).astype(np.float32) if case == 4 else None
    activation = "relu" if case == 1 else "none"
    model = single_fused_model("SSVQGemm", layer, list(x.shape), scale=scale, bias=bias, activation=activation,
                               numerics=numerics)
    want = gemm_reference(x, layer.codebook, layer.indices, layer.signs, scale, bias, k=layer.k, d=layer.d,
                          shape=[n_out, k_in], activation=activation, numerics=numerics)
    bound = np.abs(layer.decode()).max() * np.abs(x).max() * k_in * (1 if scale is None else scale.max()) + 1
    for kernels in KERNEL_SETS:
        if kernels != "auto" and not supported(kernels):
            continue
        got = session(model, kernels).run(None, {"X": x})[0]
        assert_close(got, want, numerics, bound)


def test_gemv_lut_and_tile_paths_agree_bit_for_bit(tmp_path):
    # M <= 4 takes the lookup-table kernel, M > 4 the int8 tile kernel: the same integers, the same outputs.
    rng = np.random.default_rng(7)
    layer = random_layer(rng, (96, 256), 16, 8, ssvq=True)
    x = rng.standard_normal((8, 256)).astype(np.float32)
    report = tmp_path / "kernels.jsonl"
    many = session(single_fused_model("SSVQGemm", layer, [8, 256], numerics="int8"), report=str(report))
    few = session(single_fused_model("SSVQGemm", layer, [2, 256], numerics="int8"), report=str(report))
    big = many.run(None, {"X": x})[0]
    small = np.concatenate([few.run(None, {"X": x[i:i + 2]})[0] for i in range(0, 8, 2)])
    np.testing.assert_array_equal(big.view(np.uint32), small.view(np.uint32))
    paths = {json.loads(line)["path"] for line in report.read_text().splitlines()}
    assert {"gemm_tile_int8", "gemv_lut_int8"} <= paths


def test_kernel_report_names_path_and_flags_ref_as_fallback(tmp_path):
    rng = np.random.default_rng(8)
    layer = random_layer(rng, (8, 64, 1, 1), 16, 8, ssvq=True)  # d = 8: the vectorised tile decode
    model = single_fused_model("SSVQConv", layer, [1, 64, 5, 5], numerics="int8")
    x = rng.standard_normal((1, 64, 5, 5)).astype(np.float32)
    for kernels, fallback in (("auto", False), ("ref", True)):
        report = tmp_path / f"{kernels}.jsonl"
        s = session(model, kernels, report=str(report))
        for _ in range(2):
            s.run(None, {"X": x})
        lines = [json.loads(line) for line in report.read_text().splitlines()]
        assert len(lines) == 1  # once per (node, path)
        assert lines[0]["op"] == "SSVQConv" and lines[0]["path"] == "conv1x1_int8" and lines[0]["node"] == "w.conv"
        assert lines[0]["fallback"] is fallback and lines[0]["packed_bytes"] > 0
    # a slow sub-path is a fallback too, and says why: d = 4 tiles go through the scalar decode loop
    if supported("avx512vnni"):
        report = tmp_path / "d4.jsonl"
        slow = single_fused_model("SSVQConv", random_layer(rng, (8, 4, 1, 1), 16, 4, True), [1, 4, 5, 5],
                                  numerics="int8")
        session(slow, "avx512vnni", report=str(report)).run(None, {"X": x[:, :4]})
        line = json.loads(report.read_text())
        assert line["fallback"] and "scalar" in line["notes"]


@pytest.mark.parametrize("edit,message", [
    (lambda m: m.graph.node[0].attribute.append(__import__("onnx").helper.make_attribute("numerics", "int4")),
     'expected numerics "float" or "int8"'),
    (lambda m: m.graph.node[0].attribute.append(__import__("onnx").helper.make_attribute("activation", "gelu")),
     'expected activation "none", "relu" or "relu6"'),
])
def test_bad_attributes_rejected_with_node_name(edit, message):
    layer = random_layer(np.random.default_rng(9), (8, 4, 1, 1), 16, 4, ssvq=True)
    model = single_fused_model("SSVQConv", layer, [1, 4, 5, 5])
    node = model.graph.node[0]
    keep = [a for a in node.attribute if a.name not in ("numerics", "activation")]
    del node.attribute[:]
    node.attribute.extend(keep)
    edit(model)
    with pytest.raises(Exception, match=r"\[SSVQConv\] node w\.conv: " + message.replace("(", r"\(")):
        session(model)


def test_wrong_input_channels_rejected_at_run():
    layer = random_layer(np.random.default_rng(10), (8, 4, 1, 1), 16, 4, ssvq=True)
    model = single_fused_model("SSVQConv", layer, [1, "c", 5, 5])
    s = session(model)
    with pytest.raises(Exception, match=r"\[SSVQConv\] node w\.conv: expected X with C = 4 channels"):
        s.run(None, {"X": np.zeros((1, 3, 5, 5), np.float32)})
    assert s.run(None, {"X": np.zeros((1, 4, 5, 5), np.float32)})[0].shape == (1, 8, 5, 5)


def test_unknown_kernel_set_rejected():
    layer = random_layer(np.random.default_rng(11), (8, 16), 16, 8, ssvq=True)
    with pytest.raises(Exception, match="ssvq.kernels"):
        session(single_fused_model("SSVQGemm", layer, [1, 16]), kernels="sse9")
