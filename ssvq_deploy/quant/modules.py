"""Trainable quantized weights for fine-tuning: codebook + fixed assignments (+ learnable signs for SSVQ).

Sign learning (SSVQ): each weight has a latent real ``z``; the forward pass uses sign(z) (z >= 0 -> +1) and the
backward pass is the identity straight-through estimator. Progressive freezing, applied by :meth:`after_step`
after every optimizer step: a sign whose sign(z) differs from its value before the step has flipped once; when its
flip count reaches ``theta`` it is frozen for good at the value it has after that flip. A frozen sign ignores its
latent in the forward pass and its latent gets no gradient.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..format import PackedLayer


class QuantWeight(nn.Module):
    """Produces the weight ``S * C[A]`` (SSVQ) or ``C[A]`` (VQ) from a packed layer."""

    def __init__(self, layer: PackedLayer, theta: int | None = None, original: torch.Tensor | None = None):
        super().__init__()
        self.name, self.shape, self.k, self.d, self.theta = layer.name, layer.shape, layer.k, layer.d, theta
        self.codebook = nn.Parameter(torch.from_numpy(layer.codebook.astype("float32")))
        self.register_buffer("assignments", torch.from_numpy(layer.assignments()))
        self.signed = layer.signs is not None
        if self.signed:
            negative = torch.from_numpy(layer.negative_mask()).reshape(self.shape)
            init = original.detach().float().clone() if original is not None else torch.from_numpy(layer.decode())
            # Latent starts at W (paper); zero magnitudes still need the stored sign: nudge them off zero.
            tiny = torch.finfo(torch.float32).tiny
            init = torch.where(negative, -init.abs().clamp_min(tiny), init.abs())
            self.latent = nn.Parameter(init)
            self.latent.register_hook(lambda g: g.masked_fill(self.frozen, 0))
            self.register_buffer("flips", torch.zeros(self.shape, dtype=torch.int32))
            self.register_buffer("frozen", torch.zeros(self.shape, dtype=torch.bool))
            self.register_buffer("positive", ~negative)  # sign before the step; the frozen value once frozen

    def signs(self) -> torch.Tensor:
        """Current +-1 signs with the straight-through gradient path to the latent."""
        hard = torch.where(self.latent >= 0, 1.0, -1.0)
        live = hard + (self.latent - self.latent.detach())
        fixed = torch.where(self.positive, 1.0, -1.0)
        return torch.where(self.frozen, fixed, live)

    def forward(self) -> torch.Tensor:
        magnitude = self.codebook[self.assignments].reshape(self.shape)
        return self.signs() * magnitude if self.signed else magnitude

    @torch.no_grad()
    def after_step(self) -> None:
        """Keep SSVQ codewords non-negative, count sign flips and freeze signs that reached theta."""
        if not self.signed:
            return
        self.codebook.clamp_(min=0)
        now = self.latent >= 0
        flipped = (now != self.positive) & ~self.frozen
        self.flips += flipped.to(torch.int32)
        self.positive.copy_(torch.where(self.frozen, self.positive, now))  # in place: DDP holds buffer references
        if self.theta is not None:
            self.frozen |= self.flips >= self.theta

    @torch.no_grad()
    def to_packed(self) -> PackedLayer:
        """The current weight in the packed format (codebook rounded to fp16)."""
        negative = None
        if self.signed:
            negative = (~torch.where(self.frozen, self.positive, self.latent >= 0)).reshape(-1).numpy()
        return PackedLayer.pack(self.name, self.shape, self.codebook.numpy(), self.assignments.numpy(), negative)


class QuantConv2d(nn.Conv2d):
    """Conv2d whose weight comes from a :class:`QuantWeight`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.qweight(), self.bias)


class QuantLinear(nn.Linear):
    """Linear whose weight comes from a :class:`QuantWeight`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.qweight(), self.bias)


_QUANT_CLASS = {nn.Conv2d: QuantConv2d, nn.Linear: QuantLinear}


def attach_quant_weights(model: nn.Module, layers: dict[str, PackedLayer], theta: int | None = None,
                         originals: dict[str, torch.Tensor] | None = None) -> dict[str, QuantWeight]:
    """Turn each compressed Conv2d/Linear of ``model`` (in place) into its quantized twin; returns the weights."""
    modules = dict(model.named_modules())
    qweights = {}
    for name, layer in layers.items():
        module = modules[name]
        module.__class__ = _QUANT_CLASS[type(module)]
        del module.weight
        module.qweight = QuantWeight(layer, theta, None if originals is None else originals.get(name))
        qweights[name] = module.qweight
    return qweights
