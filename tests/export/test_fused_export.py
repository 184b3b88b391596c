"""Fused export (--fused): every compressed layer of TinyNet (first conv, depthwise, pointwise, grouped, BN, ReLU6,
residual, classifier) becomes one SSVQConv / SSVQGemm; float numerics match PyTorch within 1e-4; int8 numerics match
the numpy reference evaluator; the checker passes with full shapes; unfusable consumers are reported, not hidden."""
import numpy as np
import onnx
import pytest
import torch
from onnx.reference import ReferenceEvaluator

from ssvq_deploy.export.decode_node import DOMAIN
from ssvq_deploy.export.fused import FusedConfig, fuse, fused_onnx
from ssvq_deploy.export.fused_schema import SSVQConvReference, SSVQGemmReference
from ssvq_deploy.export.onnx_export import INPUT, check, compressed_onnx
from ssvq_deploy.runtime import LibraryNotFoundError, create_session, library_path

INPUT_SHAPE = (1, 3, 16, 16)
X = np.random.default_rng(0).standard_normal((3, *INPUT_SHAPE[1:])).astype(np.float32)
MAX_ABS_ERR = 1e-4


def _library():
    try:
        library_path()
    except LibraryNotFoundError as e:
        pytest.skip(f"libssvq_ort.so is not built: {e}")


def _run(model):
    session = create_session(model, threads=1)
    return np.concatenate([session.run(None, {INPUT: x[None]})[0] for x in X])


@pytest.mark.parametrize("fixture", ["tiny_ssvq", "tiny_vq"])
def test_fused_float_matches_torch(fixture, request):
    _library()
    _, compressed, reference = request.getfixturevalue(fixture)
    result = fused_onnx(compressed, reference, INPUT_SHAPE, FusedConfig(numerics="float"))
    assert not result.unfused and set(result.fused) == set(compressed.layers)
    ops = [n.op_type for n in result.model.graph.node if n.domain == DOMAIN]
    assert sorted(ops) == sorted(["SSVQConv"] * 4 + ["SSVQGemm"])  # no SSVQDecode left
    assert not any(n.op_type in ("BatchNormalization", "Clip", "Conv", "Gemm") for n in result.model.graph.node)
    with torch.no_grad():
        want = reference(torch.from_numpy(X)).numpy()
    assert np.abs(_run(result.model) - want).max() < MAX_ABS_ERR


def test_fused_int8_matches_reference_evaluator(tiny_ssvq):
    _library()
    _, compressed, reference = tiny_ssvq
    model = fused_onnx(compressed, reference, INPUT_SHAPE, FusedConfig(numerics="int8")).model
    numerics = {n.name: onnx.helper.get_attribute_value(next(a for a in n.attribute if a.name == "numerics"))
                for n in model.graph.node if n.domain == DOMAIN}
    assert numerics["dw.0.conv"] == b"float" and numerics["pw.conv"] == b"int8"  # depthwise stays float
    evaluator = ReferenceEvaluator(model, new_ops=[SSVQConvReference, SSVQGemmReference])
    want = np.concatenate([evaluator.run(None, {INPUT: x[None]})[0] for x in X])
    got = _run(model)
    # int8 layers agree exactly up to the reference's float64 fma emulation (one ulp) and the float depthwise
    # layer's summation order, amplified by the layers after it
    assert np.abs(got - want).max() < 1e-3 * max(1.0, np.abs(want).max())
    with torch.no_grad():
        golden = reference(torch.from_numpy(X)).numpy()
    rel = np.linalg.norm(got - golden) / np.linalg.norm(golden)
    assert rel < 0.05, rel  # int8 numerics vs the float golden model (documented in docs/ssvq_op.md)


def test_fused_model_checks_with_full_shapes(tiny_ssvq):
    _, compressed, reference = tiny_ssvq
    model = fused_onnx(compressed, reference, INPUT_SHAPE).model
    check(model)
    infos = {v.name: v.type.tensor_type for v in [*model.graph.value_info, *model.graph.output]}
    for node in model.graph.node:
        for out in node.output:
            assert infos[out].HasField("shape"), out
    names = {t.name for t in model.graph.initializer}
    assert not names & {f"{layer}.weight" for layer in compressed.layers}  # no float copy of a packed weight
    assert not [n for n in names if "running_" in n]  # BatchNorm folded into scale / bias


def test_unfusable_consumer_stays_decode_and_is_reported(tiny_ssvq):
    _, compressed, reference = tiny_ssvq
    base = compressed_onnx(compressed, reference, INPUT_SHAPE)
    gemm = next(n for n in base.graph.node if n.op_type == "Gemm")
    for attr in gemm.attribute:
        if attr.name == "alpha":
            attr.f = 2.0
    result = fuse(base)
    assert "head" in result.unfused and "alpha" in result.unfused["head"]
    assert any(n.op_type == "SSVQDecode" and n.name == "head.decode" for n in result.model.graph.node)


def test_fused_config_rejects_unknown_numerics():
    from ssvq_deploy.errors import ConfigError
    with pytest.raises(ConfigError, match="numerics"):
        FusedConfig(numerics="int4")
