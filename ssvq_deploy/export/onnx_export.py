"""PyTorch -> ONNX, with every compressed Conv/Gemm weight replaced by an SSVQDecode node over packed initializers.

The float graph comes from torch's TorchScript exporter with constant folding off, so initializers keep their
state_dict names (``<module>.weight``) and BatchNorm stays a separate node (folding it would rescale a weight
that is stored packed). The rewrite then swaps each compressed weight initializer for a decode node that produces
a tensor of the same name, so the consumers are untouched and no float copy of a compressed weight remains.
"""
from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import onnx
import torch
from onnx import TensorProto, helper
from torch import nn

from ..atomic import atomic_path
from ..errors import SSVQError
from ..format import CompressedModel, PackedLayer
from ..models import ModelIO
from .decode_node import DOMAIN, DOMAIN_VERSION, ONNX_OPSET, decode_node
from .fused_schema import register_fused_schemas
from .op_schema import register_schema
from .portable import decode_functions

log = logging.getLogger(__name__)
INPUT, OUTPUT = "input", "output"


class ExportError(SSVQError):
    """The model cannot be exported as asked (unsupported consumer, missing weight, checker failure)."""


def float_onnx(model: nn.Module, model_io: ModelIO | tuple[int, ...]) -> onnx.ModelProto:
    """The float ONNX graph of ``model`` (eval mode, BatchNorm kept, initializers by state_dict name), called as
    ``model_io`` says (a model's ``ModelSpec.model_io()``: example inputs, names, dynamic axes). A shape is shorthand
    for one float input ``input`` of that shape and one output ``output``, dynamic batch."""
    if not isinstance(model_io, ModelIO):
        model_io = ModelIO.single(tuple(model_io), INPUT, OUTPUT)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model.eval(), tuple(model_io.examples), buffer, dynamo=False, opset_version=ONNX_OPSET,
                          input_names=list(model_io.input_names), output_names=list(model_io.output_names),
                          do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE,
                          dynamic_axes={k: dict(v) for k, v in model_io.dynamic_axes.items()})
    return onnx.load_from_string(buffer.getvalue())


def _consumers(graph: onnx.GraphProto) -> dict[str, list[tuple[onnx.NodeProto, int]]]:
    uses: dict[str, list] = {}
    for node in graph.node:
        for slot, name in enumerate(node.input):
            uses.setdefault(name, []).append((node, slot))
    return uses


def _consumer_problem(tensor: str, uses: list[tuple[onnx.NodeProto, int]]) -> str | None:
    """Why ``tensor`` cannot be fed by SSVQDecode's flat OIHW/[out, in] output, or None if it can."""
    for node, slot in uses:
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        transposed = node.op_type == "Transpose" and perm == [1, 0]  # Linear on 3-D input: MatMul(x, W^T)
        if not (transposed or (slot == 1 and (node.op_type == "Conv" or (node.op_type == "Gemm" and trans_b == 1)))):
            return (f"{tensor}: consumed by {node.op_type} input {slot} (need Conv weight, Gemm transB=1 weight or "
                    f"Transpose(perm=[1, 0]))")
    return None


def replace_weights(model: onnx.ModelProto, layers: dict[str, PackedLayer], portable: bool) -> onnx.ModelProto:
    """Swap the initializer ``<layer>.weight`` of every packed layer for a decode node (in place)."""
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    uses = _consumers(graph)
    problems = [f"{name}.weight: no such initializer in the exported graph" for name in layers
                if f"{name}.weight" not in initializers]
    problems += [p for name in layers if f"{name}.weight" in initializers
                 for p in [_consumer_problem(f"{name}.weight", uses.get(f"{name}.weight", []))] if p]
    if problems:
        raise ExportError("cannot attach SSVQDecode to these weights:\n  " + "\n  ".join(problems))
    decode_nodes, packed = [], []
    for name, layer in layers.items():
        tensor = f"{name}.weight"
        graph.initializer.remove(initializers[tensor])
        node, inits = decode_node(layer, name, tensor)
        if portable and layer.signs is None:
            node.op_type = "VQDecode"
        decode_nodes.append(node)
        packed += inits
        graph.value_info.append(helper.make_tensor_value_info(tensor, TensorProto.FLOAT, list(layer.shape)))
    graph.initializer.extend(packed)
    nodes = decode_nodes + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    model.opset_import.append(helper.make_opsetid(DOMAIN, DOMAIN_VERSION))
    if portable:
        model.functions.extend(decode_functions())
    return model


def check(model: onnx.ModelProto) -> None:
    """Full ONNX check with shape inference; a failure is an error, never a warning."""
    register_schema()
    register_fused_schemas()
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"exported model fails onnx.checker: {exc}") from exc


def compressed_onnx(compressed: CompressedModel, reference: nn.Module, model_io: ModelIO | tuple[int, ...],
                    portable: bool = False) -> onnx.ModelProto:
    """ONNX model of ``reference`` (the golden-decoded model) with packed weights and decode nodes, checked;
    ``model_io`` as for :func:`float_onnx`."""
    model = replace_weights(float_onnx(reference, model_io), compressed.layers, portable)
    model.doc_string = f"ssvq-deploy: {compressed.model} {compressed.meta.get('method', '')}, packed weights"
    check(model)
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def save_onnx(model: onnx.ModelProto, path: str | Path) -> int:
    """Write ``model`` atomically; returns its size in bytes."""
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return Path(path).stat().st_size
