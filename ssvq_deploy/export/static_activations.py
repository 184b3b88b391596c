"""Static uint8 NHWC activations for fused int8 conv graphs (``ssvq export --fused int8``, bench ``ssvq_fused_int8``).

``fuse`` leaves fp32 NCHW tensors between the SSVQConv nodes, so each node quantizes its input per image at run time.
:func:`quantize_activations` calibrates activation ranges once (MinMax over the calibration inputs, as ONNX Runtime's
``quantize_static``) and rewrites the graph so that activations stay uint8 NHWC from one SSVQConv to the next
(SSVQConv ``io="uint8_nhwc"``, docs/ssvq_op.md):

  float tensor fed into SSVQConv (graph input, other op) -> QuantizeLinear -> Transpose(0, 2, 3, 1) -> uint8 NHWC
  SSVQConv                          -> io="uint8_nhwc", numerics="int8" (depthwise too), x_/y_scale, x_/y_zero_point
  Add of two uint8 tensors          -> QLinearAdd (com.microsoft)
  GlobalAveragePool of a uint8 one  -> QLinearGlobalAveragePool (com.microsoft, channels_last; its output has a
                                       calibrated range of its own)
  any other consumer, graph output  -> DequantizeLinear -> Transpose(0, 3, 1, 2): the float NCHW tensor, same name

A graph without SSVQConv (Linear models, transformers) comes back unchanged: SSVQGemm keeps quantizing its rows at
run time. QLinearAdd and QLinearGlobalAveragePool have no ONNX schema: the checker accepts them unchecked as ops of an
imported custom domain, so their outputs' types and shapes (the replaced nodes', in NHWC) are set here and shape
inference carries on from them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Container, Mapping, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import CalibrationError
from ..runtime import create_session
from .decode_node import DOMAIN
from .fused_schema import CONV_OP, UINT8_NHWC, u8_params
from .onnx_export import ExportError, check

MS_DOMAIN = "com.microsoft"  # QLinearAdd, QLinearGlobalAveragePool
TO_NHWC, TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]


@dataclass(frozen=True)
class ActivationParams:
    """uint8 quantization of one tensor: real value = (q - zero_point) * scale, from the calibrated [lo, hi]."""

    lo: float
    hi: float
    scale: float  # a float32 value
    zero_point: int

    @classmethod
    def from_range(cls, lo: float, hi: float) -> ActivationParams:
        scale, _, zero_point = u8_params(lo, hi)
        return cls(lo, hi, float(scale), zero_point)


@dataclass
class StaticActivations:
    model: onnx.ModelProto  # the input model itself when it has no SSVQConv
    params: dict[str, ActivationParams]  # uint8 tensor (its name in the float graph) -> parameters; empty: unchanged
    samples: int  # calibration inputs used (0: unchanged)

    def describe(self, unit: str = "inputs") -> str:
        """One line for reports."""
        if not self.params:
            return "fp32 between fused ops (no SSVQConv: int8 numerics quantize at run time)"
        return (f"static uint8 NHWC activations between SSVQConv nodes ({len(self.params)} tensors), MinMax "
                f"calibration on {self.samples} {unit}")


def _is_conv(node: onnx.NodeProto) -> bool:
    return node.domain == DOMAIN and node.op_type == CONV_OP


def _uint8_add(node: onnx.NodeProto, uint8: Container[str]) -> bool:
    """An Add of two tensors of ``uint8``: a QLinearAdd."""
    return node.domain in ("", "ai.onnx") and node.op_type == "Add" and all(name in uint8 for name in node.input)


def _uint8_pool(node: onnx.NodeProto, uint8: Container[str]) -> bool:
    """A GlobalAveragePool of a tensor of ``uint8``: a QLinearGlobalAveragePool."""
    return node.domain in ("", "ai.onnx") and node.op_type == "GlobalAveragePool" and node.input[0] in uint8


def quantize_activations(fused: onnx.ModelProto, calibration: Sequence[Mapping[str, np.ndarray]],
                         threads: int | None = None) -> StaticActivations:
    """Static uint8 NHWC activations for ``fused`` (a ``fuse`` output, io float_nchw; checked, full shapes), with
    ranges calibrated by running it in ONNX Runtime (our library, ``threads`` intra-op threads) on every feed of
    ``calibration`` (input name -> array, one session.run each, e.g. one image per feed as the int8 QDQ baseline)."""
    convs = [n for n in fused.graph.node if _is_conv(n)]
    if not convs:
        return StaticActivations(fused, {}, 0)
    done = [n.name for n in convs if any(a.name == "io" and a.s == UINT8_NHWC.encode() for a in n.attribute)]
    if done:
        raise ExportError(f"{done[0]} already has io={UINT8_NHWC}: the model's activations are static already")
    model = onnx.shape_inference.infer_shapes(fused, strict_mode=True)  # a copy that knows every tensor's type
    tensors = dict.fromkeys(name for n in convs for name in (n.input[0], n.output[0]))
    for node in model.graph.node:  # graph order: an Add's or a pool's inputs are settled before it
        if _uint8_add(node, tensors) or _uint8_pool(node, tensors):
            tensors[node.output[0]] = None
    ranges = calibrate(fused, list(tensors), calibration, threads)
    params = {t: ActivationParams.from_range(*ranges[t]) for t in tensors}
    _Rewrite(model, params).apply()
    model.doc_string += f"; static uint8 NHWC activations ({len(calibration)} calibration inputs)"
    check(model)
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    known = {v.name for v in [*model.graph.value_info, *model.graph.output] if v.type.tensor_type.HasField("shape")}
    unknown = [name for node in model.graph.node for name in node.output if name not in known]
    if unknown:
        raise ExportError(f"static activations: no inferred shape for {unknown[:5]}")
    return StaticActivations(model, params, len(calibration))


def calibrate(model: onnx.ModelProto, tensors: Sequence[str], calibration: Sequence[Mapping[str, np.ndarray]],
              threads: int | None = None) -> dict[str, tuple[float, float]]:
    """(min, max) of each float tensor of ``tensors`` (graph inputs or node outputs of ``model``) over every feed
    of ``calibration``, ``model`` run in ONNX Runtime with our library."""
    if not calibration:
        raise CalibrationError("empty calibration set: static activation ranges need at least one input")
    graph = model.graph
    inputs = {i.name for i in graph.input} - {t.name for t in graph.initializer}
    computed = [t for t in tensors if t not in inputs]
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    outputs = {o.name for o in graph.output}
    probe.graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in computed
                              if t not in outputs)
    session = create_session(probe, threads)
    lo = {t: np.float32(np.inf) for t in tensors}
    hi = {t: np.float32(-np.inf) for t in tensors}
    for i, feed in enumerate(calibration):
        missing = sorted(inputs - set(feed))
        if missing:
            raise CalibrationError(f"calibration input {i} lacks the graph inputs {missing}")
        values = dict(zip(computed, session.run(computed, dict(feed))))
        values.update({t: feed[t] for t in tensors if t in inputs})
        for t, value in values.items():  # np.minimum / np.maximum keep a NaN
            lo[t], hi[t] = np.minimum(lo[t], np.min(value)), np.maximum(hi[t], np.max(value))
    bad = [t for t in tensors if not (np.isfinite(lo[t]) and np.isfinite(hi[t]))]
    if bad:
        raise CalibrationError(f"non-finite activation range over {len(calibration)} calibration inputs: "
                               + ", ".join(f"{t} [{lo[t]}, {hi[t]}]" for t in bad[:5]))
    return {t: (float(lo[t]), float(hi[t])) for t in tensors}


class _Rewrite:
    """The graph rewrite of :func:`quantize_activations`, in place; uint8 NHWC tensor names end in ``_u8nhwc``."""

    def __init__(self, model: onnx.ModelProto, params: dict[str, ActivationParams]):
        self.model, self.graph, self.params = model, model.graph, params
        g = self.graph
        self.types = {v.name: v.type for v in [*g.input, *g.value_info, *g.output]}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in g.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.outputs = {o.name for o in g.output}
        self.qadds = {id(n) for n in g.node if _uint8_add(n, params)}
        self.qpools = {id(n) for n in g.node if _uint8_pool(n, params)}
        self.made_u8 = {n.output[0] for n in g.node  # no float form first
                        if _is_conv(n) or id(n) in self.qadds or id(n) in self.qpools}
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.value_info: list[onnx.ValueInfoProto] = []
        self._made: set[str] = set()  # initializer names added

    def apply(self) -> None:
        g = self.graph
        for inp in g.input:
            if inp.name in self.params:
                self._quantize(inp.name)
        for node in g.node:
            self.nodes += self._replace(node)
            for name in node.output:
                if name in self.made_u8:
                    self._dequantize(name)
                elif name in self.params:
                    self._quantize(name)
        del g.node[:]
        g.node.extend(self.nodes)
        g.initializer.extend(self.inits)
        del g.value_info[:]
        g.value_info.extend(self.value_info)
        uses_ms = any(n.domain == MS_DOMAIN for n in self.nodes)
        if uses_ms and not any(o.domain == MS_DOMAIN for o in self.model.opset_import):
            self.model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))

    @staticmethod
    def u8(tensor: str) -> str:
        return f"{tensor}_u8nhwc"

    def _qparams(self, tensor: str) -> list[str]:
        """[scale, zero point] initializer names of ``tensor``'s uint8 form."""
        names = [f"{self.u8(tensor)}_scale", f"{self.u8(tensor)}_zero_point"]
        if names[0] not in self._made:
            p = self.params[tensor]
            self._add_init(np.array(p.scale, np.float32), names[0])
            self._add_init(np.array(p.zero_point, np.uint8), names[1])
        return names

    def _add_init(self, value: np.ndarray, name: str) -> None:
        self.inits.append(numpy_helper.from_array(value, name))
        self._made.add(name)

    def _uses_u8(self, node: onnx.NodeProto, tensor: str) -> bool:
        return (_is_conv(node) and node.input[0] == tensor) or id(node) in self.qadds or id(node) in self.qpools

    def _quantize(self, tensor: str) -> None:
        """float NCHW ``tensor`` -> its uint8 NHWC form."""
        nchw = f"{tensor}_u8nchw"
        self.nodes += [helper.make_node("QuantizeLinear", [tensor, *self._qparams(tensor)], [nchw],
                                        name=f"{tensor}.quantize"),
                       helper.make_node("Transpose", [nchw], [self.u8(tensor)], name=f"{tensor}.to_nhwc",
                                        perm=TO_NHWC)]

    def _dequantize(self, tensor: str) -> None:
        """The float NCHW form, under its own name, of a tensor made uint8 NHWC, when a float consumer or the graph's
        outputs read it."""
        uses = [n for n in self.consumers.get(tensor, []) if not self._uses_u8(n, tensor)]
        if not (uses or tensor in self.outputs):
            return
        self.nodes += [helper.make_node("DequantizeLinear", [self.u8(tensor), *self._qparams(tensor)],
                                        [f"{tensor}_nhwc"], name=f"{tensor}.dequantize"),
                       helper.make_node("Transpose", [f"{tensor}_nhwc"], [tensor], name=f"{tensor}.to_nchw",
                                        perm=TO_NCHW)]

    def _replace(self, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        if _is_conv(node):
            x, y = (self.params[node.input[0]], self.params[node.output[0]])
            conv = onnx.NodeProto()
            conv.CopyFrom(node)
            conv.input[0], conv.output[0] = self.u8(node.input[0]), self.u8(node.output[0])
            attrs = [a for a in conv.attribute if a.name != "numerics"]
            del conv.attribute[:]
            conv.attribute.extend(attrs)
            conv.attribute.extend(helper.make_attribute(k, v) for k, v in (
                ("io", UINT8_NHWC), ("numerics", "int8"), ("x_scale", x.scale), ("x_zero_point", x.zero_point),
                ("y_scale", y.scale), ("y_zero_point", y.zero_point)))
            return [conv]
        if id(node) in self.qadds:
            a, b = node.input
            out = node.output[0]
            self.value_info.append(_nhwc_info(self.u8(out), self.types[out]))
            return [helper.make_node("QLinearAdd", [self.u8(a), *self._qparams(a), self.u8(b), *self._qparams(b),
                                                    *self._qparams(out)], [self.u8(out)],
                                     name=node.name or f"{out}.add", domain=MS_DOMAIN)]
        if id(node) in self.qpools:
            x, out = node.input[0], node.output[0]
            self.value_info.append(_nhwc_info(self.u8(out), self.types[out]))
            return [helper.make_node("QLinearGlobalAveragePool", [self.u8(x), *self._qparams(x), *self._qparams(out)],
                                     [self.u8(out)], name=node.name or f"{out}.pool", domain=MS_DOMAIN,
                                     channels_last=1)]
        return [node]


def _nhwc_info(name: str, nchw: onnx.TypeProto) -> onnx.ValueInfoProto:
    """uint8 value info of ``name``: the NCHW type ``nchw``, transposed to NHWC."""
    dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in nchw.tensor_type.shape.dim]
    return helper.make_tensor_value_info(name, TensorProto.UINT8, [dims[i] for i in TO_NHWC])
