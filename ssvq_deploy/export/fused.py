"""Fused export (``--fused``): rewrite an SSVQDecode graph so that each packed weight feeds one SSVQConv / SSVQGemm
node (docs/ssvq_op.md) that multiplies straight from the packed form.

Patterns, on the graph ``replace_weights`` produces (decode nodes over packed initializers):
  SSVQDecode -> Conv [-> BatchNormalization] [-> Relu | Clip(0, 6)]          => SSVQConv
  SSVQDecode -> Gemm(transB=1, alpha=beta=1) [-> Relu | Clip(0, 6)]          => SSVQGemm
  SSVQDecode -> Transpose(perm=[1, 0]) -> MatMul [-> Add(bias)] [-> Relu]    => SSVQGemm   (Linear on 3-D input)
BatchNormalization folds exactly into the per-channel ``scale`` / ``bias`` applied after the accumulation (the shared
codebook cannot absorb a per-channel scale). A decode whose consumer fits no pattern stays an SSVQDecode node (the
generic path); ``FusionResult.unfused`` names each one and why, and the benchmark prints them as fallbacks.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..format import FORMAT_VERSION, PackedLayer, index_bits, unpack_bits
from .decode_node import DOMAIN, DOMAIN_VERSION, ONNX_OPSET, OP_TYPE
from .fused_schema import (ACTIVATIONS, CONV_OP, FLOAT_NCHW, GEMM_OP, NUMERICS, UINT8_NHWC, mse_codebook_scale,
                           register_fused_schemas)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FusedConfig:
    """How to fuse: ``numerics`` of every fused node ("float" or "int8"), except depthwise convolutions, which take
    ``depthwise_numerics`` (float by default: a 3x3 depthwise reduction is 9 products, cheaper and exact in fp32)."""

    numerics: str = "float"
    depthwise_numerics: str = "float"

    def __post_init__(self):
        from ..errors import ConfigError
        for name in ("numerics", "depthwise_numerics"):
            if getattr(self, name) not in NUMERICS:
                raise ConfigError(f"{name} must be one of {NUMERICS}, got {getattr(self, name)!r}")


@dataclass
class FusionResult:
    model: onnx.ModelProto
    fused: dict[str, str] = field(default_factory=dict)  # layer prefix -> fused node name
    unfused: dict[str, str] = field(default_factory=dict)  # layer prefix -> why it stays an SSVQDecode


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def fused_node(op: str, x: str, y: str, prefix: str, packed_inputs: list[str], layer_attrs: dict, *,
               scale: str = "", bias: str = "", activation: str = "none", numerics: str = "float",
               conv_attrs: dict | None = None, codebook_scale: float | None = None) -> onnx.NodeProto:
    """One SSVQConv / SSVQGemm node; ``packed_inputs`` = [codebook, indices, signs or ""]; ``codebook_scale`` (int8
    numerics) the int8 codewords' scale, None for the op's default max|c| / 127."""
    if activation not in ACTIVATIONS or numerics not in NUMERICS:
        raise ValueError(f"activation {activation!r} / numerics {numerics!r}")
    inputs = [x, *packed_inputs[:2], packed_inputs[2] if len(packed_inputs) > 2 else "", scale, bias]
    while inputs and inputs[-1] == "":
        inputs.pop()
    extra = {} if codebook_scale is None else {"codebook_scale": float(codebook_scale)}
    return helper.make_node(op, inputs, [y], name=f"{prefix}.{'conv' if op == CONV_OP else 'gemm'}", domain=DOMAIN,
                            **layer_attrs, activation=activation, numerics=numerics, **(conv_attrs or {}), **extra)


def single_fused_model(op: str, layer: PackedLayer, x_shape: list, *, scale=None, bias=None, activation="none",
                       numerics="float", conv_attrs: dict | None = None, codebook_dtype=np.float16,
                       io: str = FLOAT_NCHW, x_scale=None, x_zero_point=None, y_scale=None,
                       y_zero_point=None, codebook_scale=None) -> onnx.ModelProto:
    """A model of one fused node over ``layer`` (constant initializers); input ``X`` of ``x_shape``, output ``Y``.
    ``io="uint8_nhwc"`` (SSVQConv): X and Y uint8 NHWC, the quantization arguments become node attributes."""
    inits = [numpy_helper.from_array(layer.codebook.astype(codebook_dtype), "w.codebook"),
             numpy_helper.from_array(layer.indices, "w.indices")]
    packed = ["w.codebook", "w.indices", ""]
    if layer.signs is not None:
        inits.append(numpy_helper.from_array(layer.signs, "w.signs"))
        packed[2] = "w.signs"
    names = {}
    for key, value in (("scale", scale), ("bias", bias)):
        if value is not None:
            inits.append(numpy_helper.from_array(np.asarray(value, np.float32), f"w.{key}"))
            names[key] = f"w.{key}"
    elem = onnx.TensorProto.FLOAT
    if io == UINT8_NHWC:
        elem = onnx.TensorProto.UINT8
        conv_attrs = {**(conv_attrs or {}), "io": io, "x_scale": float(x_scale), "x_zero_point": int(x_zero_point),
                      "y_scale": float(y_scale), "y_zero_point": int(y_zero_point)}
    node = fused_node(op, "X", "Y", "w", packed, {"k": layer.k, "d": layer.d, "shape": list(layer.shape),
                                                  "format_version": FORMAT_VERSION},
                      activation=activation, numerics=numerics, conv_attrs=conv_attrs,
                      codebook_scale=codebook_scale, **names)
    graph = helper.make_graph([node], "ssvq_fused", [helper.make_tensor_value_info("X", elem, x_shape)],
                              [helper.make_tensor_value_info("Y", elem, None)], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET),
                                                   helper.make_opsetid(DOMAIN, DOMAIN_VERSION)])


class _Graph:
    """Read-only indexes of a graph for the pattern matcher."""

    def __init__(self, graph: onnx.GraphProto):
        self.inits = {t.name: t for t in graph.initializer}
        self.consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
        for node in graph.node:
            for slot, name in enumerate(node.input):
                self.consumers.setdefault(name, []).append((node, slot))
        self.constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
        self.identities = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity"}
        self.outputs = {o.name for o in graph.output}

    def array(self, name: str) -> np.ndarray | None:
        """The constant value of ``name`` (an initializer or Constant, through Identity nodes), else None."""
        while name in self.identities:
            name = self.identities[name]
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        if name in self.constants:
            return numpy_helper.to_array(_attr(self.constants[name], "value"))
        return None

    def sole_consumer(self, tensor: str) -> onnx.NodeProto | None:
        uses = self.consumers.get(tensor, [])
        if len(uses) != 1 or tensor in self.outputs:
            return None
        return uses[0][0]


def _activation_after(g: _Graph, tensor: str) -> tuple[str, onnx.NodeProto | None]:
    node = g.sole_consumer(tensor)
    if node is None:
        return "none", None
    if node.op_type == "Relu":
        return "relu", node
    if node.op_type == "Clip":
        lo = g.array(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        hi = g.array(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if lo is not None and hi is not None and float(lo) == 0.0 and float(hi) == 6.0:
            return "relu6", node
    return "none", None


def _int8_codebook_scale(g: _Graph, packed: list[str], layer_attrs: dict) -> float:
    """The int8 codewords' scale of least usage-weighted error (fused_schema.mse_codebook_scale) of a packed weight."""
    k, d = int(layer_attrs["k"]), int(layer_attrs["d"])
    n_vec = int(np.prod(layer_attrs["shape"])) // d
    codes = unpack_bits(g.array(packed[1]), n_vec, index_bits(k))
    return float(mse_codebook_scale(g.array(packed[0]), np.bincount(codes, minlength=k)))


def fuse(model: onnx.ModelProto, config: FusedConfig = FusedConfig()) -> FusionResult:
    """A copy of ``model`` (an SSVQDecode export) with every fusable decode + consumer replaced by a fused node."""
    register_fused_schemas()
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    g = _Graph(graph)
    result = FusionResult(model)
    drop: set[int] = set()  # id() of nodes replaced
    new_inits: list[onnx.TensorProto] = []
    placement: dict[int, onnx.NodeProto] = {}  # id(last replaced node) -> fused node, keeps topological order
    for dec in [n for n in graph.node if n.domain == DOMAIN and n.op_type == OP_TYPE]:
        prefix = dec.name[: -len(".decode")] if dec.name.endswith(".decode") else dec.name
        layer_attrs = {a.name: helper.get_attribute_value(a) for a in dec.attribute}
        packed = list(dec.input) + [""] * (3 - len(dec.input))
        consumer = g.sole_consumer(dec.output[0])
        if consumer is None:
            result.unfused[prefix] = "the decoded weight has several consumers or is a graph output"
            continue
        replaced = [dec, consumer]
        scale = bias = None
        if consumer.op_type == "Conv" and consumer.input[1] == dec.output[0]:
            op = CONV_OP
            if _attr(consumer, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                result.unfused[prefix] = "Conv with auto_pad"
                continue
            shape = layer_attrs["shape"]
            conv_attrs = {"strides": list(_attr(consumer, "strides", [1, 1])),
                          "pads": list(_attr(consumer, "pads", [0, 0, 0, 0])),
                          "dilations": list(_attr(consumer, "dilations", [1, 1])),
                          "group": int(_attr(consumer, "group", 1))}
            x = consumer.input[0]
            if len(consumer.input) > 2 and consumer.input[2]:
                bias = g.array(consumer.input[2])
            out = consumer.output[0]
            bn = g.sole_consumer(out)
            if bn is not None and bn.op_type == "BatchNormalization" and len(bn.output) == 1:
                gamma, beta, mean, var = (g.array(name) for name in bn.input[1:5])
                if all(a is not None for a in (gamma, beta, mean, var)):
                    eps = float(_attr(bn, "epsilon", 1e-5))
                    s = (gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps))
                    b0 = np.zeros_like(s) if bias is None else bias.astype(np.float64)
                    scale, bias = s.astype(np.float32), (beta + (b0 - mean) * s).astype(np.float32)
                    replaced.append(bn)
                    out = bn.output[0]
            numerics = config.depthwise_numerics if shape[1] == 1 and conv_attrs["group"] > 1 else config.numerics
        elif consumer.op_type == "Gemm" and consumer.input[1] == dec.output[0]:
            op, conv_attrs, numerics = GEMM_OP, None, config.numerics
            if (_attr(consumer, "transB", 0) != 1 or _attr(consumer, "transA", 0) != 0
                    or float(_attr(consumer, "alpha", 1.0)) != 1.0 or float(_attr(consumer, "beta", 1.0)) != 1.0):
                result.unfused[prefix] = "Gemm other than transB=1, alpha=beta=1"
                continue
            x, out = consumer.input[0], consumer.output[0]
            if len(consumer.input) > 2 and consumer.input[2]:
                bias = g.array(consumer.input[2])
                if bias is None or bias.shape != (layer_attrs["shape"][0],):
                    result.unfused[prefix] = "Gemm bias that is not a constant [N] vector"
                    continue
        elif consumer.op_type == "Transpose" and list(_attr(consumer, "perm", [])) == [1, 0]:
            op, conv_attrs, numerics = GEMM_OP, None, config.numerics
            matmul = g.sole_consumer(consumer.output[0])
            if matmul is None or matmul.op_type != "MatMul" or matmul.input[1] != consumer.output[0]:
                result.unfused[prefix] = "Transpose not followed by MatMul"
                continue
            replaced.append(matmul)
            x, out = matmul.input[0], matmul.output[0]
            add = g.sole_consumer(out)
            if add is not None and add.op_type == "Add":
                other = add.input[0] if add.input[1] == out else add.input[1]
                b = g.array(other)
                if b is not None and b.shape == (layer_attrs["shape"][0],):
                    bias = b
                    replaced.append(add)
                    out = add.output[0]
        else:
            result.unfused[prefix] = f"consumed by {consumer.op_type}"
            continue
        activation, act_node = _activation_after(g, out)
        if act_node is not None:
            replaced.append(act_node)
            out = act_node.output[0]
        names = {}
        for key, value in (("scale", scale), ("bias", bias)):
            if value is not None:
                tensor = numpy_helper.from_array(np.asarray(value, np.float32), f"{prefix}.fused_{key}")
                new_inits.append(tensor)
                names[key] = tensor.name
        node = fused_node(op, x, out, prefix, packed, layer_attrs, activation=activation, numerics=numerics,
                          conv_attrs=conv_attrs, codebook_scale=_int8_codebook_scale(g, packed, layer_attrs)
                          if numerics == "int8" else None, **names)
        drop.update(id(n) for n in replaced)
        placement[id(replaced[-1])] = node
        result.fused[prefix] = node.name
    nodes = []
    for node in graph.node:
        if id(node) in placement:
            nodes.append(placement[id(node)])
        elif id(node) not in drop:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(new_inits)
    _prune(graph)
    for prefix, why in result.unfused.items():
        log.warning("fused export: %s stays an SSVQDecode node (generic path): %s", prefix, why)
    return result


def _prune(graph: onnx.GraphProto) -> None:
    """Drop initializers, Constant nodes and value_info that nothing uses any more (BatchNorm parameters, biases,
    intermediate tensors); shape inference re-derives the value_info."""
    while True:  # drop Constant / Identity nodes nothing reads, until none is left
        used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        keep = [n for n in graph.node if not (n.op_type in ("Constant", "Identity") and n.output[0] not in used)]
        if len(keep) == len(graph.node):
            break
        del graph.node[:]
        graph.node.extend(keep)
    inits = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    del graph.value_info[:]


def fused_onnx(compressed, reference, model_io, config: FusedConfig = FusedConfig()) -> FusionResult:
    """The fused ONNX model of ``reference`` (the golden-decoded torch model of ``compressed``), checked and with
    full shapes; ``result.unfused`` lists layers left on the generic decode path. ``model_io``: a ``ModelIO`` or an
    input shape, as for ``float_onnx``."""
    from .onnx_export import check, compressed_onnx
    result = fuse(compressed_onnx(compressed, reference, model_io), config)
    result.model.doc_string = (f"ssvq-deploy: {compressed.model} {compressed.meta.get('method', '')}, packed weights, "
                               f"fused ops ({config.numerics})")
    check(result.model)
    result.model = onnx.shape_inference.infer_shapes(result.model, strict_mode=True)
    return result
