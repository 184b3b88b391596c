"""Whole MobileNetV2, read from the exported ONNX models (float for int8, SSVQDecode for SSVQ): the graph maps onto
the accelerator, and the engine equals the integer reference bit for bit in both requant conventions."""
import numpy as np
import pytest

from ssvq_deploy.emulator import (AcceleratorConfig, GraphError, preset, read_onnx, run_engine, run_float,
                                  run_reference)
from ssvq_deploy.emulator.graph import AddOp, ConvOp, GlobalPoolOp
from ssvq_deploy.emulator.network import CodebookWeights, Int8Weights
from ssvq_deploy.export.onnx_export import compressed_onnx, float_onnx
from ssvq_deploy.format import PackedLayer
from ssvq_deploy.pipeline import decoded_model


def test_graph_structure(mobilenet_graphs, mobilenet):
    _, compressed = mobilenet
    for build, graph in mobilenet_graphs.items():
        kinds = [type(op) for op in graph.ops]
        assert kinds.count(ConvOp) == 53 and kinds.count(AddOp) == 10 and kinds.count(GlobalPoolOp) == 1
        convs = graph.conv_ops()
        assert sum(op.bn_scale is not None for op in convs) == 52 and convs[-1].linear
        assert sum(op.clip == (0.0, 6.0) for op in convs) == 35
        packed = [op for op in convs if isinstance(op.weight, PackedLayer)]
        assert len(packed) == (53 if build == "ssvq" else 0)
    for op in mobilenet_graphs["ssvq"].conv_ops():  # the file's packed streams, untouched
        assert np.array_equal(op.weight.indices, compressed.layers[op.name].indices)
        assert np.array_equal(op.weight.signs, compressed.layers[op.name].signs)


def test_portable_export_reads_the_same(mobilenet):
    _, compressed = mobilenet
    graph = read_onnx(compressed_onnx(compressed, decoded_model(compressed), (1, 3, 64, 64), portable=True))
    assert len([op for op in graph.conv_ops() if isinstance(op.weight, PackedLayer)]) == 53


@pytest.mark.parametrize("build", ["int8", "ssvq"])
@pytest.mark.parametrize("mode", ["gemmlowp", "fp32"])
def test_whole_model_bit_exact(mobilenet_networks, photos, build, mode):
    network = mobilenet_networks[(build, mode)]
    weights = {type(op.weights) for op in network.conv_ops()}
    assert weights == ({CodebookWeights} if build == "ssvq" else {Int8Weights})
    x = network.quantize_input(photos[:2])
    config = preset("paper_edge") if mode == "gemmlowp" else AcceleratorConfig(pe_rows=16, pe_cols=8)
    engine = run_engine(network, x, config, keep_all=True)
    reference = run_reference(network, x, keep_all=True)
    for op in network.ops:  # layer by layer, so a failure names the first layer that differs
        assert np.array_equal(engine[op.output], reference[op.output]), op.output
    logits = engine[network.output]
    assert logits.shape == (2, 1000) and len(np.unique(logits)) > 50


def test_int8_emulation_tracks_the_float_model(mobilenet_networks, mobilenet_graphs, photos):
    network, graph = mobilenet_networks[("int8", "gemmlowp")], mobilenet_graphs["int8"]
    x = photos[:4]
    emulated = network.dequantize_output(run_engine(network, network.quantize_input(x), preset("paper_edge"))
                                         [network.output])
    reference = run_float(graph, x)[graph.output]
    snr = 10 * np.log10((reference ** 2).sum() / ((emulated - reference) ** 2).sum())
    assert snr > 10, snr  # int8 MobileNetV2 with per-tensor MinMax activations: a rough, not a tight, match


def test_unsupported_nodes_are_listed_once(mobilenet):
    original, _ = mobilenet
    model = float_onnx(original, (1, 3, 64, 64))
    nodes = list(model.graph.node)
    for node in nodes:
        if node.op_type == "GlobalAveragePool":
            node.op_type = "GlobalMaxPool"
        if node.op_type == "Clip" and node.name.startswith("/features/features.1/"):
            node.op_type = "Sigmoid"
            del node.input[1:]
    with pytest.raises(GraphError) as info:
        read_onnx(model)
    message = str(info.value)
    assert "GlobalMaxPool is not supported" in message and "Sigmoid is not supported" in message
