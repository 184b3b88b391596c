"""TE definitions of the conv / dense kernels that consume a weight, plain or decoded (``decode.py``).

The fp32 build and the SSVQ build use the same definitions and the same schedules; only the weight's producer
differs. Every main block carries annotations for ``schedule.py``: ``ssvq_kind`` (``KINDS``), ``ssvq_template``
(``TEMPLATES``, chosen here from the shape) and ``ssvq_strides``. NCHW data, OIHW weights, float32, as the ONNX
importer produces them.
"""
from __future__ import annotations

from dataclasses import dataclass

from tvm import te, tirx

CONV_BLOCK, PAD_BLOCK, DENSE_BLOCK, WEIGHT_VIEW = "ssvq_conv", "ssvq_pad", "ssvq_dense", "ssvq_weight_view"
SPLIT_BLOCK = "ssvq_split_columns"  # stride-2 depthwise: padded input as [.., row, column parity, column // 2]
KIND_ATTR, TEMPLATE_ATTR, STRIDE_ATTR = "ssvq_kind", "ssvq_template", "ssvq_strides"
KINDS = ("pointwise", "depthwise", "conv", "dense")
# Schedule templates (schedule.py): "rows" vectorises along output rows (weights broadcast), "channels" along output
# channels (inputs broadcast; the weight tile is read as [c, r, s, o]), "dense" splits the reduction into 16 lanes.
TEMPLATES = ("rows", "channels", "dense")
MIN_ROW_LANES = 14  # below this many output columns, row vectors waste most of a 16-lane register


def template_for(kind: str, out_w: int) -> str:
    """The schedule template of a kernel; the fp32 build lays its constant weight out for it at build time."""
    if kind == "dense":
        return "dense"
    if kind == "depthwise" or (kind == "pointwise" and out_w >= MIN_ROW_LANES):
        return "rows"
    return "channels"


def transposed_view(weight_t: te.Tensor, shape) -> te.Tensor:
    """The OIHW weight as a view of its [I/groups, kH, kW, O] copy (``channels`` template; inlined by the schedule)."""
    return te.compute(shape, lambda o, c, r, s: weight_t[c, r, s, o], name=WEIGHT_VIEW)


@dataclass(frozen=True)
class Conv2dSpec:
    """Static conv2d attributes (the subset of Relax's conv2d that the kernels take)."""

    strides: tuple[int, int]
    padding: tuple[int, int, int, int]  # top, left, bottom, right
    dilation: tuple[int, int]
    groups: int

    def out_hw(self, h, w, kh, kw):
        (sh, sw), (dh, dw), (top, left, bottom, right) = self.strides, self.dilation, self.padding
        return (h + top + bottom - dh * (kh - 1) - 1) // sh + 1, (w + left + right - dw * (kw - 1) - 1) // sw + 1

    def kind(self, channels: int, weight_shape) -> str:
        out, per_group, kh, kw = (int(s) for s in weight_shape)
        if self.groups == channels == out and per_group == 1:
            return "depthwise"
        if (kh, kw) == (1, 1) and self.groups == 1 and self.strides == (1, 1) and not any(self.padding):
            return "pointwise"
        return "conv"


def _pad(data: te.Tensor, padding) -> te.Tensor:
    top, left, bottom, right = padding
    if not any(padding):
        return data
    n, c, h, w = data.shape

    def value(b, ch, y, x):
        inside = tirx.all(y >= top, y < h + top, x >= left, x < w + left)
        return tirx.if_then_else(inside, data[b, ch, y - top, x - left], tirx.const(0.0, data.dtype))
    return te.compute((n, c, h + top + bottom, w + left + right), value, name=PAD_BLOCK)


def conv2d_nchw(data: te.Tensor, weight: te.Tensor, spec: Conv2dSpec) -> te.Tensor:
    """out[n, o, y, x] = sum_{c, r, s} data_padded[n, g(o) + c, y*sh + r*dh, x*sw + s*dw] * weight[o, c, r, s]."""
    n, channels, h, w = data.shape
    out_ch, per_group, kh, kw = weight.shape
    (sh, sw), (dh, dw), (top, left, bottom, right) = spec.strides, spec.dilation, spec.padding
    out_h, out_w = spec.out_hw(h, w, kh, kw)
    padded = _pad(data, spec.padding)
    kind = spec.kind(int(channels), weight.shape)
    r, s = te.reduce_axis((0, kh), "r"), te.reduce_axis((0, kw), "s")
    attrs = {KIND_ATTR: kind, TEMPLATE_ATTR: template_for(kind, int(out_w)), STRIDE_ATTR: [sh, sw]}
    if kind == "depthwise" and sw == 2 and int(padded.shape[3]) % 2 == 0:
        # Even and odd columns apart, so each tap reads contiguous lanes: (2x + s*dw) = 2(x + s*dw//2) + s*dw%2.
        hp, wp = padded.shape[2], padded.shape[3]
        split = te.compute((n, channels, hp, 2, wp // 2), lambda b, ch, y, p, q: padded[b, ch, y, 2 * q + p],
                           name=SPLIT_BLOCK)
        return te.compute((n, out_ch, out_h, out_w),
                          lambda b, o, y, x: te.sum(split[b, o, y * sh + r * dh, (s * dw) % 2, x + (s * dw) // 2]
                                                    * weight[o, 0, r, s], axis=[r, s]), name=CONV_BLOCK, attrs=attrs)
    if kind == "depthwise":
        return te.compute((n, out_ch, out_h, out_w),
                          lambda b, o, y, x: te.sum(padded[b, o, y * sh + r * dh, x * sw + s * dw] * weight[o, 0, r, s],
                                                    axis=[r, s]), name=CONV_BLOCK, attrs=attrs)
    per_out = out_ch // spec.groups
    c = te.reduce_axis((0, per_group), "c")
    def conv(b, o, y, x):
        return te.sum(padded[b, o // per_out * per_group + c, y * sh + r * dh, x * sw + s * dw] * weight[o, c, r, s],
                      axis=[c, r, s])
    return te.compute((n, out_ch, out_h, out_w), conv, name=CONV_BLOCK, attrs=attrs)


def dense(data: te.Tensor, weight: te.Tensor) -> te.Tensor:
    """out[n, o] = sum_i data[n, i] * weight[o, i] (ONNX Gemm with transB=1, Linear layout)."""
    n, _ = data.shape
    out, inner = weight.shape
    i = te.reduce_axis((0, inner), "i")
    return te.compute((n, out), lambda b, o: te.sum(data[b, i] * weight[o, i], axis=i), name=DENSE_BLOCK,
                      attrs={KIND_ATTR: "dense", TEMPLATE_ATTR: "dense"})
