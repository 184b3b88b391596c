"""The SSVQDecode contract (docs/ssvq_op.md) for ONNX tooling: a registered schema with shape inference, so
``onnx.checker.check_model(full_check=True)`` checks our nodes, and a numpy op for ``onnx.reference``."""
from __future__ import annotations

import onnx
from onnx import TensorProto, helper
from onnx.defs import OpSchema
from onnx.reference.op_run import OpRun

from ..format import FORMAT_VERSION, decode_parts
from .decode_node import DOMAIN, DOMAIN_VERSION, OP_TYPE


def _infer_output(ctx) -> None:
    shape = ctx.get_attribute("shape")
    dims = list(shape.ints) if shape is not None else None
    ctx.set_output_type(0, helper.make_tensor_type_proto(TensorProto.FLOAT, dims))


def _schema() -> OpSchema:
    param = OpSchema.FormalParameter
    schema = OpSchema(
        OP_TYPE, DOMAIN, DOMAIN_VERSION, "Decode a packed SSVQ/VQ weight (docs/ssvq_op.md).",
        inputs=[param("codebook", "C"), param("indices", "tensor(uint8)"),
                param("signs", "tensor(uint8)", param_option=OpSchema.FormalParameterOption.Optional)],
        outputs=[param("weight", "tensor(float)")],
        type_constraints=[("C", ["tensor(float16)", "tensor(float)"], "codebook element type")],
        attributes=[OpSchema.Attribute("k", OpSchema.AttrType.INT, "codebook size", required=True),
                    OpSchema.Attribute("d", OpSchema.AttrType.INT, "sub-vector length", required=True),
                    OpSchema.Attribute("shape", OpSchema.AttrType.INTS, "output shape", required=True),
                    OpSchema.Attribute("format_version", helper.make_attribute("format_version", FORMAT_VERSION),
                                       "packed format version"),
                    OpSchema.Attribute("layout", helper.make_attribute("layout", "flat"), "output layout")])
    schema.set_type_and_shape_inference_function(_infer_output)
    return schema


def register_schema() -> None:
    """Register the SSVQDecode schema with onnx (idempotent)."""
    if not onnx.defs.has(OP_TYPE, DOMAIN):
        onnx.defs.register_schema(_schema())


class SSVQDecodeReference(OpRun):
    """``onnx.reference`` implementation: the golden decoder. Use ``ReferenceEvaluator(model, new_ops=[...])``."""

    op_domain = DOMAIN

    def _run(self, codebook, indices, signs=None, k=None, d=None, shape=None, format_version=FORMAT_VERSION,
             layout="flat"):
        return (decode_parts(self.onnx_node.name, shape, k, d, codebook, indices, signs),)


SSVQDecodeReference.__name__ = OP_TYPE
