"""Test helper: a compiled QuantizedNetwork written as ONNX for ONNX Runtime, with our exact scales, zero points,
int8 weights and int32 biases, in one of two forms:

  ``qdq``: int8 tensors between DequantizeLinear / QuantizeLinear pairs around float Conv / Add /
    GlobalAveragePool, the form ``quantize_static`` produces. ORT's optimizer fuses a group into QLinearConv /
    QLinearAdd / QLinearGlobalAveragePool only where its QDQ selectors accept it; a group it leaves unfused runs in
    float (DequantizeLinear, float Conv, QuantizeLinear), which is not integer arithmetic at all.
  ``qlinear``: the integer operators directly (QLinearConv, com.microsoft QLinearAdd and QLinearGlobalAveragePool),
    so every op runs ORT's integer kernels.

A Gemm is written as the equivalent 1x1 Conv on [N, C, 1, 1] (same integer arithmetic)."""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ssvq_deploy.emulator.network import QAdd, QConv, QGlobalPool, QParams, QuantizedNetwork
from ssvq_deploy.emulator.reference import integer_weights

OPSET = 21
MS_DOMAIN = "com.microsoft"


class _Builder:
    def __init__(self):
        self.nodes, self.inits, self.count = [], [], 0

    def const(self, array: np.ndarray) -> str:
        self.count += 1
        name = f"c{self.count}"
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def dq(self, tensor: str, q: QParams) -> str:
        """A DequantizeLinear of ``tensor`` for one consumer: ORT fuses a group only if its DQ has one consumer."""
        self.count += 1
        out = f"{tensor}__f{self.count}"
        self.nodes.append(helper.make_node("DequantizeLinear", [tensor, self.const(np.array(q.scale, np.float32)),
                                                                 self.const(np.array(q.zero_point, np.int8))], [out]))
        return out

    def q(self, tensor: str, q: QParams, out: str) -> None:
        self.nodes.append(helper.make_node("QuantizeLinear", [tensor, self.const(np.array(q.scale, np.float32)),
                                                               self.const(np.array(q.zero_point, np.int8))], [out]))


def conv_nodes(b: _Builder, op: QConv, names: dict[str, str], out: str) -> None:
    w = integer_weights(op).astype(np.int8)
    if op.linear:
        w = w.reshape(*w.shape, 1, 1)
    out_ch = op.out_channels
    wf = f"{op.name}__w"
    b.nodes.append(helper.make_node("DequantizeLinear", [b.const(w), b.const(op.weight_scale.astype(np.float32)),
                                                         b.const(np.zeros(out_ch, np.int8))], [wf], axis=0))
    bias_scale = (np.float32(op.input_q.scale) * op.weight_scale.astype(np.float32)).astype(np.float32)
    bf = f"{op.name}__b"
    b.nodes.append(helper.make_node("DequantizeLinear", [b.const(op.bias.astype(np.int32)), b.const(bias_scale),
                                                         b.const(np.zeros(out_ch, np.int32))], [bf], axis=0))
    x = b.dq(names[op.input], op.input_q)
    y = f"{op.name}__y"
    b.nodes.append(helper.make_node("Conv", [x, wf, bf], [y], kernel_shape=list(op.kernel), strides=list(op.stride),
                                    pads=list(op.pads), group=op.group))
    b.q(y, op.output_q, out)


def _qparams(b: _Builder, q: QParams) -> list[str]:
    return [b.const(np.array(q.scale, np.float32)), b.const(np.array(q.zero_point, np.int8))]


def qlinear_nodes(b: _Builder, op, names: dict[str, str]) -> None:
    if isinstance(op, QConv):
        w = integer_weights(op).astype(np.int8)
        if op.linear:
            w = w.reshape(*w.shape, 1, 1)
        inputs = [names[op.input], *_qparams(b, op.input_q), b.const(w), b.const(op.weight_scale.astype(np.float32)),
                  b.const(np.zeros(op.out_channels, np.int8)), *_qparams(b, op.output_q),
                  b.const(op.bias.astype(np.int32))]
        b.nodes.append(helper.make_node("QLinearConv", inputs, [op.output], kernel_shape=list(op.kernel),
                                        strides=list(op.stride), pads=list(op.pads), group=op.group))
    elif isinstance(op, QAdd):
        (qa, qc), (na, nc) = op.input_q, op.inputs
        b.nodes.append(helper.make_node("QLinearAdd", [names[na], *_qparams(b, qa), names[nc], *_qparams(b, qc),
                                                       *_qparams(b, op.output_q)], [op.output], domain=MS_DOMAIN))
    else:
        b.nodes.append(helper.make_node("QLinearGlobalAveragePool", [names[op.input], *_qparams(b, op.input_q),
                                                                     *_qparams(b, op.output_q)], [op.output],
                                        domain=MS_DOMAIN, channels_last=0))


def network_to_onnx(network: QuantizedNetwork, input_shape: tuple[int, ...], form: str = "qlinear") -> onnx.ModelProto:
    """The network as an ONNX model, input ``input`` and output ``output`` ([N, C, H, W], or [N, C, 1, 1] after a
    final Gemm). ``qlinear``: int8 input and output. ``qdq``: float input (QuantizeLinear first) and float output
    (DequantizeLinear last), as quantize_static writes models: ORT fuses a DQ -> op -> Q group only when its DQ
    reads a QuantizeLinear (not an int8 graph input) and its Q feeds a DequantizeLinear (not a graph output)."""
    b = _Builder()
    names = {network.input: "input"}
    if form == "qdq":
        names[network.input] = "input__q"
        b.q("input", network.input_q, "input__q")
    for op in network.ops:
        assert (getattr(op, "act_min", -128), getattr(op, "act_max", 127)) == (-128, 127), "int8 range clamps only"
        out = names[op.output] = op.output if form == "qlinear" else f"{op.output}__q"
        if form == "qlinear":
            qlinear_nodes(b, op, names)
        elif isinstance(op, QConv):
            conv_nodes(b, op, names, out)
        elif isinstance(op, QAdd):
            a, c = (b.dq(names[n], q) for n, q in zip(op.inputs, op.input_q))
            y = f"{op.output}__y"
            b.nodes.append(helper.make_node("Add", [a, c], [y]))
            b.q(y, op.output_q, out)
        else:
            assert isinstance(op, QGlobalPool)
            y = f"{op.output}__y"
            b.nodes.append(helper.make_node("GlobalAveragePool", [b.dq(names[op.input], op.input_q)], [y]))
            b.q(y, op.output_q, out)
    last = names[network.output]
    if form == "qdq":
        last = b.dq(last, network.output_q)
    if last != "output":
        b.nodes.append(helper.make_node("Identity", [last], ["output"]))
    elem = TensorProto.FLOAT if form == "qdq" else TensorProto.INT8
    graph = helper.make_graph(b.nodes, form, [helper.make_tensor_value_info("input", elem, list(input_shape))],
                              [helper.make_tensor_value_info("output", elem, None)], initializer=b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)])
    model.ir_version = 10
    return model
