"""SSVQConv / SSVQGemm (docs/ssvq_op.md) in libssvq_ort.so against the golden decoder + reference conv / matmul
(ssvq_deploy.export.fused_schema: onnx.reference's Conv on the golden-decoded weight, int8 numerics emulated in
numpy), on randomised shapes, through every kernel set this CPU runs (forced by the ``ssvq.kernels`` session config).
Tests that need the library skip when it is not built; the checks of the numpy reference itself always run.

Tolerances: float numerics FLOAT_RTOL of the sum of |products| (summation order differs); int8 numerics bit-exact
with the numpy emulation up to INT8_ULPS (the emulation rounds fma through float64); io uint8_nhwc outputs equal,
except at most U8_TIE_FRACTION of them one step apart (the same fma emulation: a float32 result one ulp off can
round to the neighbouring uint8 when it sits on a .5 boundary)."""
from __future__ import annotations

import json
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx.reference import ReferenceEvaluator

from ssvq_deploy.export.fused import single_fused_model
from ssvq_deploy.export.fused_schema import (ACTIVATIONS, UINT8_NHWC, SSVQConvReference, conv_reference,
                                             gemm_reference, mse_codebook_scale, quantize_codebook,
                                             register_fused_schemas, u8_params)
from ssvq_deploy.format import PackedLayer, decode_parts
from ssvq_deploy.runtime import LibraryNotFoundError, library_path

FLOAT_RTOL = 1e-5
INT8_ULPS = 1
U8_TIE_FRACTION = 1e-3
KERNEL_SETS = ["auto", "avx512vnni", "avx2", "ref"]


def session(model, kernels: str = "auto", threads: int = 1, report: str | None = None) -> ort.InferenceSession:
    """A session with the library registered; skips the test when the library is not built."""
    try:
        library = library_path()
    except LibraryNotFoundError as e:
        pytest.skip(f"libssvq_ort.so is not built: {e}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("ssvq.kernels", kernels)
    if report:
        options.add_session_config_entry("ssvq.kernel_report", report)
    options.register_custom_ops_library(str(library))
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


@pytest.mark.parametrize("op", ["SSVQConv", "SSVQGemm"])
def test_int8_codebook_scale_attribute(op):
    """An explicit codebook_scale (here clipping the largest codewords) gives the reference's int8 weights in every
    kernel set, and other outputs than the default max|c| / 127."""
    rng = np.random.default_rng(21)
    shape, x_shape = ((24, 16, 1, 1), [1, 16, 5, 6]) if op == "SSVQConv" else ((40, 64), [3, 64])
    layer = random_layer(rng, shape, 16, 8, ssvq=True)
    _, default = quantize_codebook(layer.codebook)
    codebook_scale = float(default * np.float32(0.6))
    x = rng.standard_normal(x_shape).astype(np.float32)
    reference = conv_reference if op == "SSVQConv" else gemm_reference
    want = reference(x, layer.codebook, layer.indices, layer.signs, k=layer.k, d=layer.d, shape=list(shape),
                     numerics="int8", codebook_scale=codebook_scale)
    plain = reference(x, layer.codebook, layer.indices, layer.signs, k=layer.k, d=layer.d, shape=list(shape),
                      numerics="int8")
    assert not np.array_equal(want, plain)
    model = single_fused_model(op, layer, x_shape, numerics="int8", codebook_scale=codebook_scale)
    for kernels in KERNEL_SETS:
        if kernels == "auto" or supported(kernels):
            assert_close(session(model, kernels).run(None, {"X": x})[0], want, "int8", 0)
    for bad, numerics in ((0.0, "int8"), (codebook_scale, "float")):
        with pytest.raises(Exception, match=r"node w\.(conv|gemm): expected codebook_scale > 0 and finite"):
            session(single_fused_model(op, layer, x_shape, numerics=numerics, codebook_scale=bad))


def test_mse_codebook_scale_never_worse_than_the_default():
    """A codebook with one large codeword: the usage-weighted error of the chosen scale is below max|c| / 127's."""
    rng = np.random.default_rng(22)
    codebook = np.abs(rng.standard_normal((16, 8))).astype(np.float32) * 0.05
    codebook[3] *= 10
    counts = rng.integers(50, 100, 16)
    counts[3] = 1
    err = lambda s: float((counts[:, None] * (quantize_codebook(codebook, s)[0] * float(s) - codebook) ** 2).sum())
    chosen, default = mse_codebook_scale(codebook, counts), quantize_codebook(codebook)[1]
    assert chosen < default and err(chosen) < 0.85 * err(default)  # measured: 0.92x the scale, 0.79x the error
    assert mse_codebook_scale(codebook, np.ones(16)) <= default


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


# ---- SSVQConv io="uint8_nhwc": static uint8 activations in NHWC -------------------------------------------------

# CONV_CASES (NCHW shapes, turned into NHWC) plus the layouts the NHWC paths special-case.
UINT8_CASES = CONV_CASES + [
    ((8, 7, 1, 1), (2, 7, 6, 5), {}),  # pointwise, C % 4 != 0
    ((20, 1, 3, 3), (1, 20, 9, 8), dict(group=20, pads=[1, 0, 1, 1], strides=[2, 2])),  # depthwise, stride 2, padded
    ((18, 1, 5, 5), (1, 18, 14, 13), dict(group=18, pads=[4, 4, 4, 4], dilations=[2, 2])),  # depthwise 5x5, dilated
    ((12, 2, 3, 3), (1, 12, 8, 9), dict(group=6, pads=[1, 1, 1, 1])),  # grouped, 2 channels per group
    ((16, 1, 3, 3), (1, 8, 7, 7), dict(group=8, pads=[1, 1, 1, 1])),  # one input channel per group, M = 2 * group
    ((200, 1, 3, 3), (2, 200, 7, 9), dict(group=200, pads=[1, 1, 1, 1])),  # depthwise, wide: channel-split items
    ((136, 1, 3, 3), (1, 136, 20, 21), dict(group=136, pads=[1, 1, 1, 1], strides=[2, 2])),  # strips, stride 2
    ((96, 40, 1, 1), (1, 40, 7, 7), {}),  # pointwise, few pixels: shared weight blocks, finer pixel items
]


def dequantized_conv(layer, x, scale, bias, activation, attrs, x_scale, x_zero_point):
    """The uint8_nhwc contract in float64, independent of conv_reference: dequantized X [N, H, W, C], the int8-quantized
    weight times its scale (per layer through the codebook; per channel for depthwise), a direct conv (one einsum per
    tap over the zero-padded image), scale, bias, activation."""
    m, cg, kh, kw = layer.shape
    group = attrs.get("group", 1)
    if cg == 1 and group == m:
        w = layer.decode().astype(np.float64)
        amax = np.abs(w).reshape(m, -1).max(axis=1)[:, None, None, None]
        w = np.where(amax > 0, np.rint(w * 127 / np.where(amax > 0, amax, 1)) * amax / 127, 0)
    else:
        q, cs = quantize_codebook(layer.codebook)
        w = decode_parts("w", layer.shape, layer.k, layer.d, q.astype(np.float32), layer.indices, layer.signs) * float(cs)
    (sh, sw), (dh, dw) = attrs.get("strides", [1, 1]), attrs.get("dilations", [1, 1])
    top, left, bottom, right = attrs.get("pads", [0, 0, 0, 0])
    x = np.pad((x.astype(np.float64) - x_zero_point) * x_scale, ((0, 0), (top, bottom), (left, right), (0, 0)))
    n, hp, wp, _ = x.shape
    ho, wo = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, ho, wo, group, m // group))
    for i in range(kh):
        for j in range(kw):
            taps = x[:, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]
            y += np.einsum("nhwgc,gmc->nhwgm", taps.reshape(n, ho, wo, group, cg),
                           w[:, :, i, j].reshape(group, m // group, cg))
    y = y.reshape(n, ho, wo, m) * (1 if scale is None else scale) + (0 if bias is None else bias)
    if activation in ("relu", "relu6"):
        y = np.maximum(y, 0)
    return np.minimum(y, 6) if activation == "relu6" else y


def uint8_case(case, affine, activation):
    """(layer, X uint8 NHWC, scale, bias, conv attributes, quantization attributes) of UINT8_CASES[case]; y_scale and
    y_zero_point cover 90% of the float output range, so a few outputs saturate and most do not."""
    shape, (n, c, h, w), attrs = UINT8_CASES[case]
    rng = np.random.default_rng(200 + case)
    k, d = [(16, 8), (64, 4), (8, 3), (32, 9)][case % 4]
    layer = random_layer(rng, shape, k, d if math.prod(shape) % d == 0 else 1, ssvq=case % 3 != 2)
    x = rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)
    quant = {"x_scale": float(np.float32(10 ** rng.uniform(-2.5, -1.5))), "x_zero_point": int(rng.integers(0, 256))}
    scale = (rng.random(shape[0]) + 0.5).astype(np.float32) if affine else None
    bias = (2 * rng.standard_normal(shape[0])).astype(np.float32) if affine else None
    y = dequantized_conv(layer, x, scale, bias, activation, attrs, **quant)
    y_scale, _, y_zero_point = u8_params(0.9 * y.min(), 0.9 * y.max())
    return layer, x, scale, bias, attrs, {**quant, "y_scale": float(y_scale), "y_zero_point": y_zero_point}


def uint8_reference(layer, x, scale, bias, activation, attrs, quant):
    return conv_reference(x, layer.codebook, layer.indices, layer.signs, scale, bias, k=layer.k, d=layer.d,
                          shape=list(layer.shape), activation=activation, numerics="int8", io=UINT8_NHWC, **quant,
                          **attrs)


def uint8_model(layer, x_shape, scale, bias, activation, attrs, quant):
    return single_fused_model("SSVQConv", layer, list(x_shape), scale=scale, bias=bias, activation=activation,
                              numerics="int8", conv_attrs=attrs, io=UINT8_NHWC, **quant)


def assert_u8_equal(got, want):
    assert got.shape == want.shape and got.dtype == np.uint8
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    assert diff.max() <= 1 and (diff != 0).mean() <= U8_TIE_FRACTION, f"{(diff != 0).sum()} differ, max {diff.max()}"


@pytest.mark.parametrize("case", range(len(UINT8_CASES)))
def test_uint8_reference_matches_dequantized_float_conv(case):
    # the numpy reference against the contract computed in float64: rounding differences only (one step, rarely)
    for affine in (False, True):
        for activation in ACTIVATIONS:
            layer, x, scale, bias, attrs, quant = uint8_case(case, affine, activation)
            want = np.clip(np.rint(dequantized_conv(layer, x, scale, bias, activation, attrs, quant["x_scale"],
                                                    quant["x_zero_point"]) / quant["y_scale"])
                           + quant["y_zero_point"], 0, 255)
            got = uint8_reference(layer, x, scale, bias, activation, attrs, quant)
            assert got.dtype == np.uint8 and got.shape == want.shape
            diff = np.abs(got - want)
            assert diff.max() <= 1 and (diff != 0).mean() < 0.01
            assert len(np.unique(got)) > 16  # the case spans the uint8 range, not just the clamps


def test_uint8_model_checks_and_runs_in_the_reference_evaluator():
    register_fused_schemas()
    layer, x, scale, bias, attrs, quant = uint8_case(4, True, "relu6")
    model = uint8_model(layer, x.shape, scale, bias, "relu6", attrs, quant)
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    want = uint8_reference(layer, x, scale, bias, "relu6", attrs, quant)
    y = model.graph.output[0].type.tensor_type
    assert y.elem_type == onnx.TensorProto.UINT8 and [d.dim_value for d in y.shape.dim] == list(want.shape)
    got = ReferenceEvaluator(model, new_ops=[SSVQConvReference]).run(None, {"X": x})[0]
    np.testing.assert_array_equal(got, want)


def _set_attr(name, value):
    def edit(model):
        node = model.graph.node[0]
        keep = [a for a in node.attribute if a.name != name]
        del node.attribute[:]
        node.attribute.extend(keep + ([onnx.helper.make_attribute(name, value)] if value is not None else []))
    return edit


def _float_x(model):
    model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT


# (io of the model built, edit, what ORT's message must name after "[SSVQConv] node w.conv: ")
UINT8_ERRORS = {
    "io_bogus": ("float_nchw", _set_attr("io", "bogus"), r"io.*bogus"),
    "numerics_float": ("uint8_nhwc", _set_attr("numerics", "float"), r"numerics"),
    "no_y_scale": ("uint8_nhwc", _set_attr("y_scale", None), r"y_scale"),
    "x_zero_point_300": ("uint8_nhwc", _set_attr("x_zero_point", 300), r"x_zero_point.*300"),
    "quant_with_float_nchw": ("float_nchw", _set_attr("x_scale", 0.5), r"x_scale"),
    "float_x": ("uint8_nhwc", _float_x, r"uint8"),
}


def _error_model(io, edit):
    layer, x, scale, bias, attrs, quant = uint8_case(0, False, "none")
    if io == UINT8_NHWC:
        model = uint8_model(layer, x.shape, scale, bias, "none", attrs, quant)
    else:
        model = single_fused_model("SSVQConv", layer, list(x.transpose(0, 3, 1, 2).shape), numerics="int8")
    edit(model)
    return model


def _zeros_input(model) -> np.ndarray:
    x = model.graph.input[0].type.tensor_type
    return np.zeros([d.dim_value for d in x.shape.dim], onnx.helper.tensor_dtype_to_np_dtype(x.elem_type))


@pytest.mark.parametrize("error", UINT8_ERRORS)
def test_uint8_bad_io_rejected_with_node_name(error):
    io, edit, message = UINT8_ERRORS[error]
    model = _error_model(io, edit)
    with pytest.raises(Exception, match=r"\[SSVQConv\] node w\.conv: .*" + message):
        session(model).run(None, {"X": _zeros_input(model)})


@pytest.mark.parametrize("error", UINT8_ERRORS)
def test_uint8_bad_io_fails_the_checker(error):
    register_fused_schemas()
    model = _error_model(*UINT8_ERRORS[error][:2])
    with pytest.raises((onnx.checker.ValidationError, onnx.shape_inference.InferenceError)):
        onnx.checker.check_model(onnx.shape_inference.infer_shapes(model), full_check=True)


def test_uint8_wrong_input_channels_rejected_at_run():
    layer, x, scale, bias, attrs, quant = uint8_case(0, False, "none")  # C = 16, the last axis
    s = session(uint8_model(layer, [1, 9, 7, "c"], scale, bias, "none", attrs, quant))
    with pytest.raises(Exception, match=r"\[SSVQConv\] node w\.conv: .*C = 16"):
        s.run(None, {"X": x[..., :15]})
    assert s.run(None, {"X": x})[0].shape == (1, 9, 7, 32)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("affine", [False, True], ids=["plain", "scale_bias"])
@pytest.mark.parametrize("case", range(len(UINT8_CASES)))
def test_conv_uint8_nhwc_vs_reference(case, affine, activation):
    layer, x, scale, bias, attrs, quant = uint8_case(case, affine, activation)
    model = uint8_model(layer, x.shape, scale, bias, activation, attrs, quant)
    want = uint8_reference(layer, x, scale, bias, activation, attrs, quant)
    for kernels in KERNEL_SETS:
        if kernels != "auto" and not supported(kernels):
            continue
        for threads in (1, 2):
            assert_u8_equal(session(model, kernels, threads).run(None, {"X": x})[0], want)


def test_conv_uint8_nhwc_saturates_huge_values():
    # yf / y_scale far outside the int32 range must clamp to 0 / 255 (a float -> int32 conversion would wrap)
    layer, x, scale, bias, attrs, quant = uint8_case(5, True, "none")
    quant.update(x_zero_point=255, y_scale=1e-20, y_zero_point=128)
    model = uint8_model(layer, x.shape, scale, bias, "none", attrs, quant)
    want = uint8_reference(layer, x, scale, bias, "none", attrs, quant)
    assert {0, 255} <= set(np.unique(want)) <= {0, 128, 255}
    for kernels in KERNEL_SETS:
        if kernels == "auto" or supported(kernels):
            np.testing.assert_array_equal(session(model, kernels).run(None, {"X": x})[0], want)


def _expected_path(shape, attrs) -> str:
    m, cg, kh, kw = shape
    group = attrs.get("group", 1)
    if (kh, kw) == (1, 1) and group == 1 and not any(attrs.get("pads", [])) and attrs.get("strides", [1, 1]) == [1, 1]:
        return "conv1x1_u8nhwc"
    return "dwconv_u8nhwc" if cg == 1 and m == group else "conv_im2col_u8nhwc"


@pytest.mark.parametrize("case", range(len(UINT8_CASES)))
def test_uint8_kernel_report_names_the_nhwc_path(case, tmp_path):
    layer, x, scale, bias, attrs, quant = uint8_case(case, False, "relu")
    report = tmp_path / "kernels.jsonl"
    session(uint8_model(layer, x.shape, scale, bias, "relu", attrs, quant), report=str(report)).run(None, {"X": x})
    line = json.loads(report.read_text())
    assert line["node"] == "w.conv" and line["path"] == _expected_path(layer.shape, attrs)
