"""Relax clean-ups applied to the fp32 and the SSVQ build alike, before fusion.

- Inference BatchNorm with constant statistics becomes ``x * scale + shift`` (per channel, computed in numpy as
  PyTorch's CPU inference kernel does), so each conv's epilogue is one multiply-add instead of sub/div/mul/add.
- Elementwise ops whose arguments are all constants (the importer's ``where(isnan(c), ...)`` around Clip bounds)
  are folded in numpy. TVM's FoldConstant would compile one LLVM module per folded call (~20 s for MobileNetV2).
Neither touches a decode: a packed weight stays packed.
"""
from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.ir import Op

_NUMPY = {
    "relax.isnan": np.isnan, "relax.where": np.where, "relax.add": np.add, "relax.subtract": np.subtract,
    "relax.multiply": np.multiply, "relax.divide": np.divide, "relax.sqrt": np.sqrt, "relax.maximum": np.maximum,
    "relax.minimum": np.minimum,
}
_OPS = {Op.get(name): fn for name, fn in _NUMPY.items()}
_BATCH_NORM = Op.get("relax.nn.batch_norm")


@relax.expr_functor.mutator
class _Simplifier(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule):
        super().__init__(mod)
        self.mod_ = mod

    def _const(self, expr) -> np.ndarray | None:
        if isinstance(expr, relax.Var):
            expr = self.lookup_binding(expr)
        if isinstance(expr, tvm.ir.GenericConst):
            return expr.value.numpy()
        return None

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if call.op in _OPS:
            values = [self._const(a) for a in call.args]
            if all(v is not None for v in values):
                result = np.asarray(_OPS[call.op](*values))
                dtype = str(call.ty.dtype)
                return relax.const(result.astype(dtype), dtype)
            return call
        if call.op == _BATCH_NORM and not call.attrs.training:
            folded = self._batch_norm(call)
            return call if folded is None else folded
        return call

    def _batch_norm(self, call):
        gamma, beta, mean, var = (self._const(a) for a in call.args[1:])
        if any(v is None for v in (gamma, beta, mean, var)):
            return None
        data, attrs = call.args[0], call.attrs
        ndim = len(data.ty.shape)
        axis = int(attrs.axis) % ndim
        if not attrs.scale:
            gamma = np.ones_like(gamma)
        if not attrs.center:
            beta = np.zeros_like(beta)
        scale = (gamma / np.sqrt(var + np.float32(attrs.epsilon))).astype(np.float32)
        shift = (beta - mean * scale).astype(np.float32)
        bshape = [1] * ndim
        bshape[axis] = -1
        out = self.builder_.emit(relax.op.add(relax.op.multiply(data, relax.const(scale.reshape(bshape))),
                                              relax.const(shift.reshape(bshape))))
        return relax.Tuple([out, relax.const(mean.astype(np.float32)), relax.const(var.astype(np.float32))])

    def run(self) -> tvm.IRModule:
        for gvar, func in self.mod_.functions_items():
            if isinstance(func, relax.Function):
                self.builder_.update_func(gvar, self.visit_expr(func))
        return self.builder_.get()


def simplify(mod: tvm.IRModule) -> tvm.IRModule:
    """BatchNorm -> multiply-add, constant elementwise ops folded, then bindings canonicalised."""
    mod = _Simplifier(mod).run()
    return tvm.transform.Sequential([relax.transform.CanonicalizeBindings(),
                                     relax.transform.DeadCodeElimination()])(mod)
