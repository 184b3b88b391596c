"""ONNX export: decode nodes replace every compressed weight; library, portable function, onnx.reference and
PyTorch agree; the checker passes with full shapes."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from ssvq_deploy.export.decode_node import DOMAIN
from ssvq_deploy.export.onnx_export import INPUT, ExportError, check, compressed_onnx, float_onnx, replace_weights
from ssvq_deploy.export.op_schema import SSVQDecodeReference
from ssvq_deploy.runtime import create_session, session_options
from ssvq_deploy.runtime.decode_at_load import decode_at_load

INPUT_SHAPE = (1, 3, 16, 16)  # TinyNet in conftest.py takes any spatial size

X = np.random.default_rng(0).standard_normal((4, *INPUT_SHAPE[1:])).astype(np.float32)


def _run(session):
    return np.concatenate([session.run(None, {INPUT: x[None]})[0] for x in X])


def _float_tensors(model: onnx.ModelProto) -> list[np.ndarray]:
    arrays = [numpy_helper.to_array(t) for t in model.graph.initializer]
    arrays += [numpy_helper.to_array(a.t) for n in model.graph.node for a in n.attribute if a.type == a.TENSOR]
    return [a for a in arrays if a.dtype.kind == "f" and a.dtype != np.float16]


@pytest.mark.parametrize("portable", [False, True])
def test_no_float_copy_of_compressed_weights(tiny_ssvq, portable):
    _, compressed, reference = tiny_ssvq
    model = compressed_onnx(compressed, reference, INPUT_SHAPE, portable=portable)
    initializer_names = {t.name for t in model.graph.initializer}
    for name, layer in compressed.layers.items():
        assert f"{name}.weight" not in initializer_names
        decoded = layer.decode()
        assert not any(a.size == decoded.size for a in _float_tensors(model)), name
    decode_ops = [n for n in model.graph.node if n.domain == DOMAIN]
    assert len(decode_ops) == len(compressed.layers)


@pytest.mark.parametrize("portable", [False, True])
def test_checker_and_full_shapes(tiny_ssvq, portable):
    _, compressed, reference = tiny_ssvq
    model = compressed_onnx(compressed, reference, INPUT_SHAPE, portable=portable)
    check(model)
    infos = {v.name: v.type.tensor_type for v in [*model.graph.value_info, *model.graph.output]}
    shapes = {name: [d.dim_value or d.dim_param for d in t.shape.dim] for name, t in infos.items()}
    for name, layer in compressed.layers.items():
        assert shapes[f"{name}.weight"] == list(layer.shape)
    for node in model.graph.node:  # every tensor has a known rank and every dim is known (batch symbolic)
        for out in node.output:
            assert infos[out].HasField("shape"), out
            assert all(d not in (0, "") for d in shapes[out]), (out, shapes[out])
    assert shapes["output"] == ["batch", 10]


def _with_weight_outputs(model: onnx.ModelProto, names: list[str]) -> bytes:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    infos = {v.name: v for v in model.graph.value_info}
    model.graph.output.extend(infos[n] for n in names)
    return model.SerializeToString()


def _unoptimized(options: ort.SessionOptions) -> ort.SessionOptions:
    # Same kernels downstream of the decode in both graphs: ORT would otherwise constant-fold the portable
    # function (standard ops over initializers) and fuse Conv+BN there, but never across our custom op.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return options


@pytest.mark.parametrize("fixture", ["tiny_ssvq", "tiny_vq"])
def test_library_portable_reference_and_torch_agree(fixture, request):
    _, compressed, reference = request.getfixturevalue(fixture)
    library_model = compressed_onnx(compressed, reference, INPUT_SHAPE, portable=False)
    portable_model = compressed_onnx(compressed, reference, INPUT_SHAPE, portable=True)
    weights = [f"{name}.weight" for name in compressed.layers]
    library_session = ort.InferenceSession(_with_weight_outputs(library_model, weights),
                                           _unoptimized(session_options(1)), providers=["CPUExecutionProvider"])
    portable_session = ort.InferenceSession(_with_weight_outputs(portable_model, weights),
                                            _unoptimized(ort.SessionOptions()), providers=["CPUExecutionProvider"])
    for x in X:
        library_outs = library_session.run(None, {INPUT: x[None]})
        portable_outs = portable_session.run(None, {INPUT: x[None]})
        for name, a, b in zip(["output", *weights], library_outs, portable_outs):
            np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32), err_msg=name)
        for layer, decoded in zip(compressed.layers.values(), library_outs[1:]):
            np.testing.assert_array_equal(decoded.view(np.uint32), layer.decode().view(np.uint32))
    library = _run(create_session(library_model, threads=1))
    with torch.no_grad():
        expected = reference(torch.from_numpy(X)).numpy()
    assert np.abs(library - expected).max() < 1e-4
    evaluator = ReferenceEvaluator(library_model, new_ops=[SSVQDecodeReference])
    numpy_out = np.concatenate([evaluator.run(None, {INPUT: x[None]})[0] for x in X])
    assert np.abs(numpy_out - expected).max() < 1e-4


def test_decode_at_load_is_plain_onnx_with_golden_weights(tiny_ssvq):
    _, compressed, reference = tiny_ssvq
    model = decode_at_load(compressed_onnx(compressed, reference, INPUT_SHAPE))
    assert not any(n.domain == DOMAIN for n in model.graph.node)
    assert all(o.domain != DOMAIN for o in model.opset_import)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for name, layer in compressed.layers.items():
        np.testing.assert_array_equal(inits[f"{name}.weight"].view(np.uint32), layer.decode().view(np.uint32))
    out = _run(ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]))
    with torch.no_grad():
        assert np.abs(out - reference(torch.from_numpy(X)).numpy()).max() < 1e-4


def test_export_refuses_unsupported_consumers_listing_all(tiny_ssvq):
    model, compressed, reference = tiny_ssvq
    graph = float_onnx(reference, INPUT_SHAPE)
    gemm = next(n for n in graph.graph.node if n.op_type == "Gemm")
    for attr in gemm.attribute:
        if attr.name == "transB":
            attr.i = 0
    layers = dict(compressed.layers)
    layers["missing.layer"] = layers["pw"]
    with pytest.raises(ExportError) as err:
        replace_weights(graph, layers, portable=False)
    assert "head.weight: consumed by Gemm" in str(err.value)
    assert "missing.layer.weight: no such initializer" in str(err.value)
