"""Helpers for the TVM backend tests: random packed layers, one-op ONNX models, the golden parity check."""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper

from ssvq_deploy.export.decode_node import DOMAIN, DOMAIN_VERSION, ONNX_OPSET, decode_node
from ssvq_deploy.format import PackedLayer


def random_layer(rng: np.random.Generator, k: int, d: int, shape, ssvq: bool = True,
                 edges: bool = True) -> PackedLayer:
    """A packed layer with random codes and signs; with ``edges`` the codebook holds fp16 edge values (zero,
    subnormals, max), else small magnitudes (for kernels compared with a float tolerance)."""
    n = math.prod(shape)
    codebook = (rng.standard_normal((k, d)) * (1.0 if edges else 0.2)).astype(np.float16)
    if edges:
        values = np.array([0.0, 6e-8, 3.05e-5, 6.1e-5, 65504.0, 1.0, 2.5], np.float16)
        flat = codebook.reshape(-1)
        flat[: min(flat.size, values.size)] = values[: flat.size]
    negative = rng.random(n) < 0.5 if ssvq else None
    return PackedLayer.pack("w", shape, codebook, rng.integers(0, k, n // d), negative)


def assert_bit_exact(got: np.ndarray, layer: PackedLayer) -> None:
    """Same dtype, shape and bit patterns as the golden decoder (PackedLayer.decode)."""
    want = layer.decode()
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), (
        f"{np.count_nonzero(got.view(np.uint32) != want.view(np.uint32))} of {want.size} weights differ")


def _model(nodes, inits, inputs, output_shape, name="m") -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(output_shape))],
                              initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET),
                                                   helper.make_opsetid(DOMAIN, DOMAIN_VERSION)])


def conv_model(layer: PackedLayer, x_shape, out_shape, strides=(1, 1), pads=(0, 0, 0, 0), groups=1,
               bias: np.ndarray | None = None, relu: bool = False, packed: bool = True) -> onnx.ModelProto:
    """x -> Conv(weight = SSVQDecode(layer) or the decoded constant) [-> Relu] -> y; pads are ONNX order
    (top, left, bottom, right)."""
    from onnx import numpy_helper
    if packed:
        node, inits = decode_node(layer, "w", "w.weight")
        nodes = [node]
    else:
        nodes, inits = [], [numpy_helper.from_array(layer.decode(), "w.weight")]
    conv_in = ["x", "w.weight"]
    if bias is not None:
        inits.append(numpy_helper.from_array(bias.astype(np.float32), "w.bias"))
        conv_in.append("w.bias")
    nodes.append(helper.make_node("Conv", conv_in, ["c" if relu else "y"], strides=list(strides), pads=list(pads),
                                  group=groups, kernel_shape=list(layer.shape[2:])))
    if relu:
        nodes.append(helper.make_node("Relu", ["c"], ["y"]))
    return _model(nodes, inits, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))], out_shape)


def gemm_model(layer: PackedLayer, batch: int, bias: np.ndarray | None = None) -> onnx.ModelProto:
    """x [batch, in] -> Gemm(x, SSVQDecode(layer) [out, in], transB=1) -> y."""
    from onnx import numpy_helper
    node, inits = decode_node(layer, "fc", "fc.weight")
    gemm_in = ["x", "fc.weight"]
    if bias is not None:
        inits.append(numpy_helper.from_array(bias.astype(np.float32), "fc.bias"))
        gemm_in.append("fc.bias")
    nodes = [node, helper.make_node("Gemm", gemm_in, ["y"], transB=1)]
    out, inner = layer.shape
    return _model(nodes, inits, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, inner])],
                  [batch, out])
