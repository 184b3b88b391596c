"""Diagonal Hessian estimates for Hessian-weighted k-means (paper supplementary section 11)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .compress import quantizable_layers


def fisher_diagonal(model: nn.Module, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Empirical Fisher diagonal per conv/linear weight: the mean squared gradient of the cross-entropy against
    the model's own top-1 prediction over ``inputs`` (no labels needed), one backward pass per sample."""
    layers = quantizable_layers(model)
    sums = {name: torch.zeros_like(m.weight) for name, m in layers.items()}
    model.eval()
    for x in inputs.split(1):
        model.zero_grad(set_to_none=True)
        logits = model(x)
        F.cross_entropy(logits, logits.argmax(-1)).backward()
        for name, m in layers.items():
            sums[name] += m.weight.grad.detach() ** 2
    model.zero_grad(set_to_none=True)
    return {name: s / inputs.shape[0] for name, s in sums.items()}
