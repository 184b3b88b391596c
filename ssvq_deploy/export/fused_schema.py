"""The SSVQConv / SSVQGemm contract (docs/ssvq_op.md) for ONNX tooling: registered schemas with shape inference, so
``onnx.checker.check_model(full_check=True)`` checks fused graphs, and numpy ops for ``onnx.reference`` that are
the golden reference of both numerics (float and int8) and of SSVQConv's io modes (float NCHW, static uint8 NHWC)."""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper
from onnx.defs import OpSchema
from onnx.shape_inference import InferenceError
from onnx.reference.op_run import OpRun
from onnx.reference.ops.op_conv import _conv_implementation

from ..format import FORMAT_VERSION, decode_parts
from .decode_node import DOMAIN, DOMAIN_VERSION

CONV_OP, GEMM_OP = "SSVQConv", "SSVQGemm"
NUMERICS = ("float", "int8")
ACTIVATIONS = ("none", "relu", "relu6")
FLOAT_NCHW, UINT8_NHWC = "float_nchw", "uint8_nhwc"
IO_MODES = (FLOAT_NCHW, UINT8_NHWC)
QUANT_ATTRS = ("x_scale", "x_zero_point", "y_scale", "y_zero_point")  # SSVQConv, required in uint8_nhwc only


def _dims(type_proto) -> list | None:
    tensor = type_proto.tensor_type
    if not tensor.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim]


def _ints(ctx, name: str, default: list[int]) -> list[int]:
    attr = ctx.get_attribute(name)
    return list(attr.ints) if attr is not None else default


def _quant_ok(attr) -> bool:
    """A uint8_nhwc quantization attribute in range: a scale finite and > 0, a zero point in 0..255."""
    return math.isfinite(attr.f) and attr.f > 0 if attr.name.endswith("scale") else 0 <= attr.i <= 255


def _conv_io(ctx) -> str:
    """SSVQConv's io mode, checked against numerics, the quantization attributes and the type of X."""
    name = lambda elem: TensorProto.DataType.Name(elem)
    attr, numerics = ctx.get_attribute("io"), ctx.get_attribute("numerics")
    io = attr.s.decode() if attr is not None else FLOAT_NCHW
    numerics = numerics.s.decode() if numerics is not None else "float"
    uint8 = io == UINT8_NHWC
    needed = list(QUANT_ATTRS) if uint8 else []
    given = [a for a in (ctx.get_attribute(n) for n in QUANT_ATTRS) if a is not None]
    want = TensorProto.UINT8 if uint8 else TensorProto.FLOAT
    elem = ctx.get_input_type(0).tensor_type.elem_type if ctx.get_num_inputs() > 0 else TensorProto.UNDEFINED
    if (io not in IO_MODES or [a.name for a in given] != needed or not all(map(_quant_ok, given))
            or elem not in (TensorProto.UNDEFINED, want) or (uint8 and numerics != "int8")):
        got = {a.name: helper.get_attribute_value(a) for a in given}
        rules = " (scales finite > 0, zero points 0..255) with numerics int8" if uint8 else ""
        raise InferenceError(f"SSVQConv: io {io!r} (one of {IO_MODES}) takes X of type {name(want)} and the "
                             f"attributes {needed}{rules}; got X of type {name(elem)}, numerics {numerics!r} and {got}")
    return io


def _infer_conv(ctx) -> None:
    io = _conv_io(ctx)
    shape = list(ctx.get_attribute("shape").ints)
    x = _dims(ctx.get_input_type(0)) if ctx.get_num_inputs() > 0 else None
    dims = None
    if x is not None and len(x) == 4 and len(shape) == 4:
        strides, dil = _ints(ctx, "strides", [1, 1]), _ints(ctx, "dilations", [1, 1])
        pads = _ints(ctx, "pads", [0, 0, 0, 0])
        spatial = x[1:3] if io == UINT8_NHWC else x[2:4]
        out = []
        for axis, size in enumerate(spatial):
            out.append((size + pads[axis] + pads[axis + 2] - dil[axis] * (shape[2 + axis] - 1) - 1) // strides[axis] + 1
                       if isinstance(size, int) else None)
        dims = [x[0], *out, shape[0]] if io == UINT8_NHWC else [x[0], shape[0], *out]
    elem = TensorProto.UINT8 if io == UINT8_NHWC else TensorProto.FLOAT
    ctx.set_output_type(0, helper.make_tensor_type_proto(elem, dims))


def _infer_gemm(ctx) -> None:
    shape = list(ctx.get_attribute("shape").ints)
    x = _dims(ctx.get_input_type(0)) if ctx.get_num_inputs() > 0 else None
    dims = None if x is None else [*x[:-1], shape[0]]
    ctx.set_output_type(0, helper.make_tensor_type_proto(TensorProto.FLOAT, dims))


def _schema(op: str, doc: str, extra_attributes: list, infer, io_type: str = "tensor(float)",
            extra_types: tuple = ()) -> OpSchema:
    param, optional = OpSchema.FormalParameter, OpSchema.FormalParameterOption.Optional
    attr = OpSchema.Attribute
    schema = OpSchema(
        op, DOMAIN, DOMAIN_VERSION, doc,
        inputs=[param("X", io_type), param("codebook", "C"), param("indices", "tensor(uint8)"),
                param("signs", "tensor(uint8)", param_option=optional),
                param("scale", "tensor(float)", param_option=optional),
                param("bias", "tensor(float)", param_option=optional)],
        outputs=[param("Y", io_type)],
        type_constraints=[("C", ["tensor(float16)", "tensor(float)"], "codebook element type"), *extra_types],
        attributes=[attr("k", OpSchema.AttrType.INT, "codebook size", required=True),
                    attr("d", OpSchema.AttrType.INT, "sub-vector length", required=True),
                    attr("shape", OpSchema.AttrType.INTS, "weight shape (Conv OIHW, Gemm [N, K])", required=True),
                    attr("format_version", helper.make_attribute("format_version", FORMAT_VERSION), "format"),
                    attr("layout", helper.make_attribute("layout", "flat"), "packed layout"),
                    attr("numerics", helper.make_attribute("numerics", "float"), "float | int8"),
                    attr("activation", helper.make_attribute("activation", "none"), "none | relu | relu6"),
                    attr("codebook_scale", OpSchema.AttrType.FLOAT, "int8 numerics: codeword scale (default "
                         "max|c| / 127)", required=False),
                    *extra_attributes])
    schema.set_type_and_shape_inference_function(infer)
    return schema


def register_fused_schemas() -> None:
    """Register the SSVQConv and SSVQGemm schemas with onnx (idempotent)."""
    attr = OpSchema.Attribute
    conv_attrs = [attr("strides", OpSchema.AttrType.INTS, "", required=False),
                  attr("pads", OpSchema.AttrType.INTS, "", required=False),
                  attr("dilations", OpSchema.AttrType.INTS, "", required=False),
                  attr("group", helper.make_attribute("group", 1), ""),
                  attr("io", helper.make_attribute("io", FLOAT_NCHW), " | ".join(IO_MODES)),
                  *(attr(name, OpSchema.AttrType.FLOAT if name.endswith("scale") else OpSchema.AttrType.INT,
                         f"{UINT8_NHWC} only", required=False) for name in QUANT_ATTRS)]
    if not onnx.defs.has(CONV_OP, DOMAIN):
        onnx.defs.register_schema(_schema(CONV_OP, "Conv over a packed weight (docs/ssvq_op.md).", conv_attrs,
                                          _infer_conv, "T", [("T", ["tensor(float)", "tensor(uint8)"],
                                                              f"float ({FLOAT_NCHW}) or uint8 ({UINT8_NHWC})")]))
    if not onnx.defs.has(GEMM_OP, DOMAIN):
        onnx.defs.register_schema(_schema(GEMM_OP, "X @ W^T over a packed weight (docs/ssvq_op.md).", [],
                                          _infer_gemm))


# ---- the numerics, in numpy (docs/ssvq_op.md "Numerics") ------------------------------------------------------

def _f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def quantize_codebook(codebook: np.ndarray, scale=None) -> tuple[np.ndarray, np.float32]:
    """int8 numerics: q = clamp(round_half_even(c * inv), -127, 127) in float32 arithmetic and the codeword scale:
    by default inv = 127 / max|c| and scale max|c| / 127; with a ``codebook_scale`` s, inv = 1 / s."""
    c = _f32(codebook)
    if scale is not None:
        s = np.float32(scale)
        return np.clip(np.rint(c * (np.float32(1) / s)), -127, 127).astype(np.int8), s
    amax = np.float32(np.abs(c).max())
    if not amax > 0:
        return np.zeros(c.shape, np.int8), np.float32(1)
    inv = np.float32(127) / amax
    return np.clip(np.rint(c * inv), -127, 127).astype(np.int8), np.float32(amax / np.float32(127))


def mse_codebook_scale(codebook: np.ndarray, counts: np.ndarray) -> np.float32:
    """The ``codebook_scale`` whose int8 codewords are closest to the float ones, in squared error weighted by how
    many sub-vectors use each codeword (``counts`` [k]), over clipping ratios 0.30 .. 1.00 of max|c| / 127 (1.00:
    the default scale). A few large codewords otherwise leave the many small ones with few levels."""
    c = _f32(codebook).astype(np.float64)
    amax = float(np.abs(c).max())
    if not amax > 0:
        return np.float32(1)
    weight = np.asarray(counts, np.float64)[:, None]
    best, best_err = np.float32(amax / 127), np.inf
    for ratio in np.linspace(0.3, 1.0, 71)[::-1]:
        s = np.float32(amax * ratio / 127)
        q, _ = quantize_codebook(c, s)
        err = float((weight * (q.astype(np.float64) * float(s) - c) ** 2).sum())
        if err < best_err:
            best, best_err = s, err
    return best


def u8_params(lo: float, hi: float) -> tuple[np.float32, np.float32, int]:
    """(scale, inverse scale, zero point) of a uint8 asymmetric range that includes 0."""
    lo, hi = np.float32(min(lo, 0.0)), np.float32(max(hi, 0.0))
    rng = np.float32(hi - lo)
    if not (rng > 0 and np.isfinite(rng)):
        return np.float32(1), np.float32(1), 0
    inv = np.float32(255) / rng
    zp = int(np.clip(np.rint(-lo * inv), 0, 255))
    return np.float32(rng / np.float32(255)), inv, zp


def s8_params(absmax: float) -> tuple[np.float32, np.float32]:
    absmax = np.float32(absmax)
    if not (absmax > 0 and np.isfinite(absmax)):
        return np.float32(1), np.float32(1)
    return np.float32(absmax / np.float32(127)), np.float32(np.float32(127) / absmax)


def u8_activation_range(activation: str, y_scale, y_zero_point: int) -> tuple[int, int]:
    """io uint8_nhwc: the activation as a clamp of the uint8 output: relu from the zero point up, relu6 also at most
    the zero point + round(6 / y_scale) (float32), both within 0..255."""
    lo = y_zero_point if activation in ("relu", "relu6") else 0
    if activation != "relu6":
        return lo, 255
    return lo, int(min(255.0, float(np.rint(np.float32(6) / np.float32(y_scale))) + y_zero_point))


def _epilogue(acc: np.ndarray, mult: np.ndarray, bias: np.ndarray, activation: str) -> np.ndarray:
    # fma(float(acc), mult, bias): the double product of two floats is exact; one rounding to float32 after the add
    # (a double rounding that can differ from a true fma by one ulp in rare ties).
    y = (acc.astype(np.float32).astype(np.float64) * mult.astype(np.float64) + bias.astype(np.float64)).astype(np.float32)
    if activation in ("relu", "relu6"):
        y = np.where(y > 0, y, np.float32(0))
    if activation == "relu6":
        y = np.where(y < 6, y, np.float32(6))
    return y.astype(np.float32)


def _weights(name, shape, k, d, codebook, indices, signs, numerics, codebook_scale=None):
    """(weight, codebook scale): float32 golden decode, or the exact int8 weights +-q as float64."""
    if numerics == "float":
        return decode_parts(name, shape, k, d, _f32(codebook), indices, signs), None
    q, cscale = quantize_codebook(codebook, codebook_scale)
    return decode_parts(name, shape, k, d, q.astype(np.float32), indices, signs).astype(np.float64), cscale


def per_channel_s8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depthwise weights of io uint8_nhwc: per output channel q = round_half_even(w * (127 / max|w|)) in float32, as
    exact float64 integers, and the channel scales max|w| / 127 (1 for an all-zero channel)."""
    amax = np.abs(w).reshape(len(w), -1).max(axis=1).astype(np.float32)
    safe = np.where(amax > 0, amax, np.float32(1))
    inv = np.where(amax > 0, np.float32(127) / safe, np.float32(1)).astype(np.float32)
    q = np.rint(w * inv[:, None, None, None]).astype(np.float64)
    return q, np.where(amax > 0, safe / np.float32(127), np.float32(1)).astype(np.float32)


def conv_reference(x, codebook, indices, signs=None, scale=None, bias=None, *, k, d, shape, strides=(1, 1),
                   pads=(0, 0, 0, 0), dilations=(1, 1), group=1, activation="none", numerics="float",
                   io=FLOAT_NCHW, x_scale=None, x_zero_point=None, y_scale=None, y_zero_point=None,
                   codebook_scale=None, name="SSVQConv"):
    """SSVQConv by the golden decoder and onnx.reference's Conv; int8 numerics emulated exactly (up to the
    one-ulp fma note in _epilogue). io ``uint8_nhwc``: X and Y uint8 NHWC with the given static scales / zero points
    (requires int8 numerics)."""
    quant = dict(zip(QUANT_ATTRS, (x_scale, x_zero_point, y_scale, y_zero_point)))
    dtype = np.asarray(x).dtype
    if not (set(quant.values()) == {None} if io == FLOAT_NCHW else
            io == UINT8_NHWC and numerics == "int8" and None not in quant.values() and dtype == np.uint8):
        raise ValueError(f"{name}: io {io!r} with numerics {numerics!r}, X {dtype} and {quant}")
    m = shape[0]
    scale = np.ones(m, np.float32) if scale is None else _f32(scale)
    bias = np.zeros(m, np.float32) if bias is None else _f32(bias)
    w, cscale = _weights(name, shape, k, d, codebook, indices, signs, numerics, codebook_scale)
    conv = lambda a, b: _conv_implementation(a, b, None, "NOTSET", list(dilations), group, list(shape[2:]),
                                             list(pads), list(strides))

    def int8_conv(xq, s):  # xq: zero-point-free activations [N, C, H, W] (float64, exact), s: their scale
        acc = np.rint(conv(xq, w)).astype(np.int64)  # exact: |sums| < 2^53; padding = 0 = the real value 0
        mult = (s * (cscale * scale)).astype(np.float32)
        return _epilogue(acc, mult[:, None, None], bias[:, None, None], activation)

    if io == UINT8_NHWC:
        xq = np.asarray(x).transpose(0, 3, 1, 2).astype(np.float64) - x_zero_point
        if shape[1] == 1 and group == m:  # depthwise: int8 weights per channel
            w, cscale = per_channel_s8(decode_parts(name, shape, k, d, _f32(codebook), indices, signs))
        acc = np.rint(conv(xq, w)).astype(np.int64)
        y_scale = np.float32(y_scale)
        mult = (np.float32(x_scale) * (cscale * scale)).astype(np.float32) / y_scale  # float32 all the way
        y = _epilogue(acc, mult[:, None, None], (bias / y_scale)[:, None, None], "none")  # in output units
        lo, hi = u8_activation_range(activation, y_scale, y_zero_point)
        y = np.clip(np.rint(y) + np.float32(y_zero_point), lo, hi).astype(np.uint8)
        return np.ascontiguousarray(y.transpose(0, 2, 3, 1))
    x = _f32(x)
    if numerics == "float":
        acc = conv(x.astype(np.float64), w.astype(np.float64))  # float64 sums: the float tolerance covers order
        return _activation_only(_f32(acc) * scale[None, :, None, None] + bias[None, :, None, None], activation)
    out = []
    for image in x:
        s, inv, zp = u8_params(float(image.min()), float(image.max()))
        xq = np.clip(np.rint(image * inv) + np.float32(zp), 0, 255).astype(np.float64) - zp
        out.append(int8_conv(xq[None], s)[0])
    return np.stack(out)


def _activation_only(y: np.ndarray, activation: str) -> np.ndarray:
    if activation in ("relu", "relu6"):
        y = np.where(y > 0, y, np.float32(0))
    if activation == "relu6":
        y = np.where(y < 6, y, np.float32(6))
    return y.astype(np.float32)


def gemm_reference(x, codebook, indices, signs=None, scale=None, bias=None, *, k, d, shape, activation="none",
                   numerics="float", codebook_scale=None, name="SSVQGemm"):
    """SSVQGemm: Y = act((X @ W^T) * scale + bias) for X [..., K], W [N, K]; int8 numerics emulated exactly."""
    n = shape[0]
    scale = np.ones(n, np.float32) if scale is None else _f32(scale)
    bias = np.zeros(n, np.float32) if bias is None else _f32(bias)
    w, cscale = _weights(name, shape, k, d, codebook, indices, signs, numerics, codebook_scale)
    x = _f32(x)
    rows = x.reshape(-1, shape[1])
    if numerics == "float":
        y = _f32(rows.astype(np.float64) @ w.astype(np.float64).T) * scale + bias
        return _activation_only(y, activation).reshape(*x.shape[:-1], n)
    out = np.empty((rows.shape[0], n), np.float32)
    for i, row in enumerate(rows):
        s, inv = s8_params(float(np.abs(row).max()) if row.size else 0.0)
        xq = np.clip(np.rint(row * inv), -127, 127).astype(np.float64)
        acc = np.rint(w @ xq).astype(np.int64)
        out[i] = _epilogue(acc, (s * (cscale * scale)).astype(np.float32), bias, activation)
    return out.reshape(*x.shape[:-1], n)


class SSVQConvReference(OpRun):
    """``onnx.reference`` implementation of SSVQConv: ``ReferenceEvaluator(model, new_ops=[...])``."""

    op_domain = DOMAIN

    def _run(self, x, codebook, indices, signs=None, scale=None, bias=None, k=None, d=None, shape=None,
             format_version=FORMAT_VERSION, layout="flat", numerics="float", activation="none", strides=None,
             pads=None, dilations=None, group=1, io=FLOAT_NCHW, x_scale=None, x_zero_point=None, y_scale=None,
             y_zero_point=None, codebook_scale=None):
        return (conv_reference(x, codebook, indices, signs, scale, bias, k=k, d=d, shape=list(shape),
                               strides=strides or (1, 1), pads=pads or (0, 0, 0, 0), dilations=dilations or (1, 1),
                               group=group, activation=activation, numerics=numerics, io=io, x_scale=x_scale,
                               x_zero_point=x_zero_point, y_scale=y_scale, y_zero_point=y_zero_point,
                               codebook_scale=codebook_scale, name=self.onnx_node.name),)


class SSVQGemmReference(OpRun):
    """``onnx.reference`` implementation of SSVQGemm."""

    op_domain = DOMAIN

    def _run(self, x, codebook, indices, signs=None, scale=None, bias=None, k=None, d=None, shape=None,
             format_version=FORMAT_VERSION, layout="flat", numerics="float", activation="none", codebook_scale=None):
        return (gemm_reference(x, codebook, indices, signs, scale, bias, k=k, d=d, shape=list(shape),
                               activation=activation, numerics=numerics, codebook_scale=codebook_scale,
                               name=self.onnx_node.name),)


SSVQConvReference.__name__ = CONV_OP
SSVQGemmReference.__name__ = GEMM_OP
