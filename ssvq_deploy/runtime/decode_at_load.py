"""Decode-at-load: turn every SSVQDecode node over constant initializers into a plain float initializer in memory.

The file on disk stays packed; the session then sees ordinary Conv/Gemm weights and gets ONNX Runtime's full
graph optimisations (BatchNorm folding, weight pre-packing), at the cost of float weights in RAM.
"""
from __future__ import annotations

import onnx
from onnx import numpy_helper

from ..format import decode_parts
from ..format.op_contract import DOMAIN, OP_TYPE


def decode_at_load(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with decode nodes replaced by decoded initializers (golden decoder)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    keep, decoded = [], []
    for node in graph.node:
        if node.domain != DOMAIN or node.op_type != OP_TYPE or not all(i in inits for i in node.input if i):
            keep.append(node)
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        arrays = [numpy_helper.to_array(inits[i]) for i in node.input if i]
        weight = decode_parts(node.name, attrs["shape"], attrs["k"], attrs["d"], arrays[0], arrays[1],
                              arrays[2] if len(arrays) > 2 else None)
        decoded.append(numpy_helper.from_array(weight, node.output[0]))
        for name in node.input:
            if name:
                graph.initializer.remove(inits.pop(name))
    del graph.node[:]
    graph.node.extend(keep)
    graph.initializer.extend(decoded)
    if not any(n.domain == DOMAIN for n in keep):
        kept = [o for o in model.opset_import if o.domain != DOMAIN]
        del model.opset_import[:]
        model.opset_import.extend(kept)
    return model
