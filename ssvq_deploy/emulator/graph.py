"""Read an exported ONNX model (float, or with SSVQDecode nodes over packed weights) into the emulator's float graph.

The graph is what the accelerator compiler sees: Conv/Gemm with BatchNormalization and Clip/Relu fused into them,
residual Add, GlobalAveragePool, and Flatten as a no-op. Packed weights stay packed (``PackedLayer``, validated
by the format module); float weights stay float. Every unsupported node is listed in one error.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from ..errors import SSVQError
from ..format.op_contract import DOMAIN, OP_TYPE
from ..format import PackedLayer

DECODE_OPS = {OP_TYPE, "VQDecode"}  # VQDecode: the portable export's name for a sign-less (VQ) decode


class GraphError(SSVQError):
    """The ONNX model holds nodes or patterns the emulator cannot map onto the accelerator."""


@dataclass(frozen=True, eq=False)
class ConvOp:
    """Conv or Gemm (``linear``) with its BatchNorm and clipping fused: y = clip(scale * (W*x + bias) + shift)."""

    name: str  # the layer (module) name: the weight tensor's name without ".weight"
    input: str
    output: str
    weight: np.ndarray | PackedLayer  # float32 [O, I/g, kh, kw] (Conv) or [O, I] (Gemm), or packed
    bias: np.ndarray  # [O] float32 (zeros when the node has none)
    bn_scale: np.ndarray | None  # [O] float32 gamma / sqrt(var + eps); None without BatchNorm
    bn_shift: np.ndarray | None  # [O] float32 beta - bn_scale * mean
    clip: tuple[float, float] | None  # fused Clip / Relu bounds
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    group: int = 1
    linear: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.weight.shape)

    def float_weight(self) -> np.ndarray:
        """float32 weight; packed layers through the golden decoder."""
        return self.weight.decode() if isinstance(self.weight, PackedLayer) else self.weight

    def fused_scale_bias(self) -> tuple[np.ndarray, np.ndarray]:
        """(per-channel scale [O], bias [O]) with y = scale * (W*x) + bias before clipping, float64."""
        out = self.shape[0]
        scale = np.ones(out) if self.bn_scale is None else self.bn_scale.astype(np.float64)
        bias = scale * self.bias.astype(np.float64)
        if self.bn_shift is not None:
            bias = bias + self.bn_shift.astype(np.float64)
        return scale, bias


@dataclass(frozen=True)
class AddOp:
    name: str
    inputs: tuple[str, str]
    output: str
    clip: tuple[float, float] | None = None


@dataclass(frozen=True)
class GlobalPoolOp:
    name: str
    input: str
    output: str


Op = ConvOp | AddOp | GlobalPoolOp


@dataclass(frozen=True)
class Graph:
    input: str
    output: str
    ops: tuple[Op, ...]

    def conv_ops(self) -> list[ConvOp]:
        return [op for op in self.ops if isinstance(op, ConvOp)]


def _short_name(node: onnx.NodeProto) -> str:
    """'features.3.Add' for the exporter's '/features/features.3/Add'; the output name when unnamed."""
    parts = [p for p in node.name.split("/") if p]
    return ".".join(parts[-2:]) if parts else node.output[0]


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _packed(node: onnx.NodeProto, values: dict[str, np.ndarray]) -> PackedLayer:
    attrs = _attrs(node)
    codebook = values[node.input[0]]
    if codebook.dtype != np.float16:
        as16 = codebook.astype(np.float16)
        if not np.array_equal(as16.astype(codebook.dtype), codebook):
            raise GraphError(f"{node.name}: float32 codebook is not exactly representable in float16")
        codebook = as16
    signs = values[node.input[2]] if len(node.input) > 2 and node.input[2] else None
    name = node.output[0].removesuffix(".weight")
    return PackedLayer(name, tuple(attrs["shape"]), int(attrs["k"]), int(attrs["d"]), codebook,
                       values[node.input[1]], signs)


class _Reader:
    """One pass over the nodes (ONNX keeps them topologically sorted), fusing Conv/Gemm + BN + Clip/Relu."""

    def __init__(self, model: onnx.ModelProto):
        self.graph = model.graph
        self.values = {t.name: numpy_helper.to_array(t) for t in self.graph.initializer}
        self.values.update({n.output[0]: numpy_helper.to_array(_attrs(n)["value"]) for n in self.graph.node
                            if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and "value" in _attrs(n)})
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.alias: dict[str, str] = {}
        self.fused: set[int] = set()
        self.packed: dict[str, PackedLayer] = {}
        self.ops: list[Op] = []
        self.problems: list[str] = []

    def name(self, tensor: str) -> str:
        return self.alias.get(tensor, tensor)

    def only_consumer(self, tensor: str, op_types: set[str]) -> onnx.NodeProto | None:
        users = self.consumers.get(tensor, [])
        if len(users) == 1 and users[0].op_type in op_types and users[0].domain in ("", "ai.onnx"):
            return users[0]
        return None

    def clip_bounds(self, node: onnx.NodeProto) -> tuple[float, float] | None:
        if node.op_type == "Relu":
            return 0.0, float("inf")
        bounds = []
        for slot, default in ((1, -np.inf), (2, np.inf)):
            if len(node.input) > slot and node.input[slot]:
                if node.input[slot] not in self.values:
                    self.problems.append(f"{node.name}: Clip bound {node.input[slot]!r} is not a constant")
                    return None
                bounds.append(float(self.values[node.input[slot]]))
            else:
                bounds.append(default)
        return bounds[0], bounds[1]

    def weight(self, node: onnx.NodeProto) -> np.ndarray | PackedLayer | None:
        source = node.input[1]
        if source in self.values:
            return self.values[source].astype(np.float32)
        if source in self.packed:
            return self.packed[source]
        self.problems.append(f"{node.name}: weight {source!r} is neither an initializer nor an SSVQDecode output")
        return None

    def conv(self, node: onnx.NodeProto, index: dict[int, int]) -> None:
        attrs = _attrs(node)
        linear = node.op_type == "Gemm"
        if linear and (attrs.get("transB", 0) != 1 or attrs.get("transA", 0) != 0
                       or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
            self.problems.append(f"{node.name}: Gemm must have transA=0, transB=1, alpha=beta=1")
            return
        if not linear:
            kernel_rank = len(attrs.get("kernel_shape", [0, 0]))
            if kernel_rank != 2 or any(v != 1 for v in attrs.get("dilations", [1, 1])) \
                    or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                self.problems.append(f"{node.name}: only 2-D Conv without dilation or auto_pad is supported")
                return
        weight = self.weight(node)
        if weight is None:
            return
        out_channels = weight.shape[0]
        bias = self.values.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if len(node.input) > 2 and node.input[2] and bias is None:
            self.problems.append(f"{node.name}: bias {node.input[2]!r} is not an initializer")
            return
        bias = np.zeros(out_channels, np.float32) if bias is None else bias.astype(np.float32).reshape(-1)
        output, bn_scale, bn_shift, clip = node.output[0], None, None, None
        bn = self.only_consumer(output, {"BatchNormalization"})
        if bn is not None:
            gamma, beta, mean, var = (self.values.get(n) for n in bn.input[1:5])
            if any(v is None for v in (gamma, beta, mean, var)):
                self.problems.append(f"{bn.name}: BatchNormalization parameters must be initializers")
                return
            eps = _attrs(bn).get("epsilon", 1e-5)
            bn_scale = (gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)).astype(np.float32)
            bn_shift = (beta - bn_scale.astype(np.float64) * mean).astype(np.float32)
            self.fused.add(index[id(bn)])
            output = bn.output[0]
        act = self.only_consumer(output, {"Clip", "Relu"})
        if act is not None:
            clip = self.clip_bounds(act)
            self.fused.add(index[id(act)])
            output = act.output[0]
        pads = tuple(attrs.get("pads", [0, 0, 0, 0]))
        self.ops.append(ConvOp(
            name=node.input[1].removesuffix(".weight"), input=self.name(node.input[0]), output=output,
            weight=weight, bias=bias, bn_scale=bn_scale, bn_shift=bn_shift, clip=clip,
            stride=tuple(attrs.get("strides", [1, 1])), pads=(pads[0], pads[1], pads[2], pads[3]),
            group=int(attrs.get("group", 1)), linear=linear))

    def read(self) -> Graph:
        nodes = list(self.graph.node)
        index = {id(n): i for i, n in enumerate(nodes)}
        for i, node in enumerate(nodes):
            if i in self.fused:
                continue
            if node.domain == DOMAIN and node.op_type in DECODE_OPS:
                self.packed[node.output[0]] = _packed(node, self.values)
            elif node.domain not in ("", "ai.onnx"):
                self.problems.append(f"{node.name}: op {node.domain}.{node.op_type} is not supported")
            elif node.op_type == "Constant" and node.output[0] in self.values:
                continue
            elif node.op_type in ("Conv", "Gemm"):
                self.conv(node, index)
            elif node.op_type == "Add":
                if any(n in self.values for n in node.input):
                    self.problems.append(f"{node.name}: Add with a constant operand is not supported")
                    continue
                clip = None
                act = self.only_consumer(node.output[0], {"Clip", "Relu"})
                output = node.output[0]
                if act is not None:
                    clip = self.clip_bounds(act)
                    self.fused.add(index[id(act)])
                    output = act.output[0]
                self.ops.append(AddOp(_short_name(node), (self.name(node.input[0]), self.name(node.input[1])), output,
                                      clip))
            elif node.op_type == "GlobalAveragePool":
                self.ops.append(GlobalPoolOp(_short_name(node), self.name(node.input[0]), node.output[0]))
            elif node.op_type in ("Flatten", "Identity", "Dropout"):
                self.alias[node.output[0]] = self.name(node.input[0])
            else:
                self.problems.append(f"{node.name}: op {node.op_type} is not supported")
        if len(self.graph.input) != 1 or len(self.graph.output) != 1:
            self.problems.append("the model must have exactly one input and one output")
        if self.problems:
            raise GraphError("cannot map this ONNX model onto the accelerator:\n  " + "\n  ".join(self.problems))
        return Graph(self.graph.input[0].name, self.name(self.graph.output[0].name), tuple(self.ops))


def read_onnx(model: onnx.ModelProto) -> Graph:
    """The emulator's float graph of ``model``; raises GraphError listing every unsupported node."""
    return _Reader(model).read()


def run_float(graph: Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    """Float32 execution of ``graph`` on ``x`` [N, C, H, W] (golden-decoded weights); every tensor by name.

    Used for calibration and as the fp32 reference of the compiled integer networks."""
    tensors = {graph.input: torch.from_numpy(np.ascontiguousarray(x, np.float32))}
    with torch.no_grad():
        for op in graph.ops:
            if isinstance(op, ConvOp):
                x_in = tensors[op.input]
                w = torch.from_numpy(op.float_weight())
                if op.linear:
                    y = x_in.reshape(x_in.shape[0], -1) @ w.T + torch.from_numpy(op.bias)
                else:
                    top, left, bottom, right = op.pads
                    y = F.conv2d(F.pad(x_in, (left, right, top, bottom)), w, torch.from_numpy(op.bias),
                                 op.stride, 0, 1, op.group)
                if op.bn_scale is not None:
                    shape = (1, -1) if op.linear else (1, -1, 1, 1)
                    y = y * torch.from_numpy(op.bn_scale).reshape(shape) + torch.from_numpy(op.bn_shift).reshape(shape)
                if op.clip is not None:
                    y = torch.clamp(y, op.clip[0], op.clip[1])
            elif isinstance(op, AddOp):
                y = tensors[op.inputs[0]] + tensors[op.inputs[1]]
                if op.clip is not None:
                    y = torch.clamp(y, op.clip[0], op.clip[1])
            else:
                y = tensors[op.input].mean(dim=(2, 3), keepdim=True)
            tensors[op.output] = y
    return {name: t.numpy() for name, t in tensors.items()}
