"""Relax pass: every conv2d / dense whose weight is an ``SSVQDecode`` becomes ONE TIR function that decodes inside
the consumer; every conv2d / dense with a plain constant weight becomes the same kernel reading that weight.

Before: ``w = call_tir(ssvq_decode, (codebook, indices, signs))``; ``y = R.nn.conv2d(x, w)`` (or
``R.matmul(x, R.permute_dims(w))`` for Gemm transB=1). After: ``y = call_tir(ssvq_fused_conv, (x, codebook, indices,
signs))`` whose TIR holds the decode block and the conv block (``kernels.py``); ``schedule.py`` then computes the
decode block per output-channel tile, so lowering sizes its buffer to the tile. The fused functions are marked
out-elementwise-fusable, so Relax's FuseOps still merges bias, BatchNorm and ReLU6 into them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax
from tvm.ir import Op

from .converter import DECODE_ATTR
from .decode import DecodeSpec, decode_compute
from .kernels import Conv2dSpec, conv2d_nchw, dense, template_for, transposed_view

OUT_EWISE_FUSABLE = 4  # relay/relax OpPatternKind::kOutEWiseFusable
_CALL_TIR, _CONV2D = Op.get("relax.call_tir"), Op.get("relax.nn.conv2d")
_MATMUL, _PERMUTE = Op.get("relax.matmul"), Op.get("relax.permute_dims")


@dataclass
class FusionReport:
    """What the pass did: fused layers, plain-weight kernels, and decodes it had to leave standing."""

    fused: list[dict] = field(default_factory=list)  # {"kind", "shape", "k", "d", "numel"} per fused layer
    plain: int = 0
    unfused: list[str] = field(default_factory=list)  # decode bindings still used by an op the pass cannot fuse

    @property
    def weight_shapes(self) -> set[tuple[int, ...]]:
        return {tuple(f["shape"]) for f in self.fused}


def _static_shape(expr) -> tuple[int, ...] | None:
    ty = expr.ty
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        return None
    try:
        return tuple(int(s) for s in ty.shape)
    except TypeError:
        return None


def _conv_spec(call) -> Conv2dSpec | None:
    a = call.attrs
    if (a.data_layout, a.kernel_layout, a.out_layout) != ("NCHW", "OIHW", "NCHW"):
        return None
    if str(a.out_dtype or "float32") not in ("", "void", "float32") or call.args[0].ty.dtype != "float32":
        return None
    pad = [int(p) for p in a.padding]
    pad = pad * 2 if len(pad) == 2 else pad
    return Conv2dSpec(tuple(int(s) for s in a.strides), tuple(pad), tuple(int(s) for s in a.dilation), int(a.groups))


@relax.expr_functor.mutator
class _Fuser(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, plain_weights: bool, report: FusionReport):
        super().__init__(mod)
        self.mod_, self.plain_weights, self.report = mod, plain_weights, report

    def _bound(self, expr):
        if isinstance(expr, relax.Var):
            return self.lookup_binding(expr)
        return expr

    def _decode_of(self, expr) -> tuple[DecodeSpec, list] | None:
        """(spec, packed args) if ``expr`` is the output of an SSVQDecode call_tir."""
        value = self._bound(expr)
        if not isinstance(value, relax.Call) or value.op != _CALL_TIR:
            return None
        func = self.mod_[value.args[0]] if value.args[0] in self.mod_.get_global_vars() else None
        attrs = getattr(func, "attrs", None)
        if func is None or attrs is None or DECODE_ATTR not in attrs:
            return None
        info = attrs[DECODE_ATTR]
        spec = DecodeSpec(int(info["k"]), int(info["d"]), tuple(int(s) for s in info["shape"]),
                          bool(int(info["signed"])))
        return spec, list(value.args[1].fields)

    def _weight(self, expr):
        """('decode', spec, args) | ('plain', None, [const]) | None."""
        decoded = self._decode_of(expr)
        if decoded is not None:
            return "decode", decoded[0], decoded[1]
        value = self._bound(expr)
        if self.plain_weights and isinstance(value, tvm.ir.GenericConst) and value.ty.dtype == "float32":
            return "plain", None, [value]
        return None

    def _emit(self, source, spec, packed, build, data, name, transposed=None):
        """call_tir of ``build(data, weight)``; the weight is decoded in the kernel, or a constant (laid out as
        [I/groups, kH, kW, O] for the ``channels`` template when ``transposed`` gives the OIHW shape)."""
        def kernel(x, *weight_args):
            if source == "decode":
                weight = decode_compute(spec, *weight_args)
            elif transposed is not None:
                weight = transposed_view(weight_args[0], transposed)
            else:
                weight = weight_args[0]
            return build(x, weight)
        return self.builder_.call_te(kernel, data, *packed, primfunc_name_hint=name,
                                     primfunc_attrs={"op_pattern": OUT_EWISE_FUSABLE})

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if call.op == _CONV2D:
            weight, conv = self._weight(call.args[1]), _conv_spec(call)
            if weight is None or conv is None or _static_shape(call.args[0]) is None:
                return call
            source, spec, packed = weight
            data_shape, weight_shape = _static_shape(call.args[0]), _static_shape(call.args[1])
            kind = conv.kind(data_shape[1], weight_shape)
            out_w = conv.out_hw(data_shape[2], data_shape[3], weight_shape[2], weight_shape[3])[1]
            transposed = None
            if source == "plain" and template_for(kind, out_w) == "channels":
                array = packed[0].value.numpy()
                packed, transposed = [relax.const(np.ascontiguousarray(array.transpose(1, 2, 3, 0)))], array.shape
            out = self._emit(source, spec, packed, lambda x, w: conv2d_nchw(x, w, conv), call.args[0],
                             "ssvq_fused_conv" if source == "decode" else "ssvq_conv", transposed)
            self._record(source, spec, kind)
            return out
        if call.op == _MATMUL:
            rhs = self._bound(call.args[1])
            if not (isinstance(rhs, relax.Call) and rhs.op == _PERMUTE and
                    [int(a) for a in (rhs.attrs.axes or [1, 0])] == [1, 0]):
                return call
            shape_a = _static_shape(call.args[0])
            weight = self._weight(rhs.args[0])
            if weight is None or shape_a is None or len(shape_a) != 2 or call.args[0].ty.dtype != "float32":
                return call
            source, spec, packed = weight
            out = self._emit(source, spec, packed, dense, call.args[0],
                             "ssvq_fused_dense" if source == "decode" else "ssvq_dense")
            self._record(source, spec, "dense")
            return out
        return call

    def _record(self, source, spec, kind):
        if source == "decode":
            self.report.fused.append({"kind": kind, "shape": list(spec.shape), "k": spec.k, "d": spec.d,
                                      "numel": spec.numel})
        else:
            self.report.plain += 1

    def run(self) -> tvm.IRModule:
        for gvar, func in self.mod_.functions_items():
            if isinstance(func, relax.Function):
                self.builder_.update_func(gvar, self.visit_expr(func))
        return self.builder_.get()


def remaining_decodes(mod: tvm.IRModule) -> list[str]:
    """Relax bindings that still call a stand-alone decode function (their full weight would be materialised)."""
    decode_gvars = {g for g, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc) and f.attrs is not None
                    and DECODE_ATTR in f.attrs}
    found = []

    @relax.expr_functor.visitor
    class _Finder(relax.PyExprVisitor):
        def visit_var_binding_(self, binding):
            value = binding.value
            if isinstance(value, relax.Call) and value.op == _CALL_TIR and value.args[0] in decode_gvars:
                found.append(str(binding.var.name))
            super().visit_var_binding_(binding)

    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            _Finder().visit_expr(func)
    return found


def fuse_decode(mod: tvm.IRModule, plain_weights: bool = True) -> tuple[tvm.IRModule, FusionReport]:
    """Rewrite ``mod`` (see the module docstring); dead decode calls and unused functions are removed."""
    report = FusionReport()
    mod = _Fuser(mod, plain_weights, report).run()
    mod = relax.transform.DeadCodeElimination()(mod)
    report.unfused = remaining_decodes(mod)
    return mod, report
