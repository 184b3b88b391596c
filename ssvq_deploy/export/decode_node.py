"""Build `SSVQDecode` nodes (docs/ssvq_op.md) and their packed initializers from a PackedLayer."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..format import FORMAT_VERSION, PackedLayer
from ..format.op_contract import DOMAIN, DOMAIN_VERSION, OP_TYPE
ONNX_OPSET = 18  # standard-op opset of every exported graph (BitwiseAnd for the portable decode needs 18)


def decode_node(layer: PackedLayer, prefix: str, output: str,
                codebook_dtype=np.float16) -> tuple[onnx.NodeProto, list[onnx.TensorProto]]:
    """One SSVQDecode node writing ``output`` and the initializers it reads, all named ``<prefix>.*``."""
    inits = [numpy_helper.from_array(layer.codebook.astype(codebook_dtype), f"{prefix}.codebook"),
             numpy_helper.from_array(layer.indices, f"{prefix}.indices")]
    inputs = [inits[0].name, inits[1].name]
    if layer.signs is not None:
        inits.append(numpy_helper.from_array(layer.signs, f"{prefix}.signs"))
        inputs.append(inits[2].name)
    node = helper.make_node(OP_TYPE, inputs, [output], name=f"{prefix}.decode", domain=DOMAIN,
                            k=layer.k, d=layer.d, shape=list(layer.shape), format_version=FORMAT_VERSION)
    return node, inits


def single_decode_model(layer: PackedLayer, codebook_dtype=np.float16,
                        constant_inputs: bool = True) -> onnx.ModelProto:
    """A model whose only node decodes ``layer``; its inputs are initializers or, if not ``constant_inputs``,
    graph inputs named ``codebook``, ``indices``, ``signs`` (fed at run time)."""
    node, inits = decode_node(layer, "w", "weight", codebook_dtype)
    out = helper.make_tensor_value_info("weight", TensorProto.FLOAT, list(layer.shape))
    if constant_inputs:
        graph = helper.make_graph([node], "ssvq_decode", [], [out], initializer=inits)
    else:
        renamed = {t.name: t.name.split(".")[-1] for t in inits}
        node.input[:] = [renamed[n] for n in node.input]
        inputs = [helper.make_tensor_value_info(renamed[t.name], t.data_type, list(t.dims)) for t in inits]
        graph = helper.make_graph([node], "ssvq_decode", inputs, [out])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET),
                                                   helper.make_opsetid(DOMAIN, DOMAIN_VERSION)])
