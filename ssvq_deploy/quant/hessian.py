"""Diagonal Hessian estimates for Hessian-weighted k-means (paper supplementary section 11)."""
from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .compress import quantizable_layers

# objective(model output of one sample, generator) -> scalar whose squared gradient estimates the diagonal.
Objective = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def self_label_cross_entropy(logits: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Cross-entropy against the model's own top-1 class: its squared gradient is the empirical Fisher (classifiers)."""
    return F.cross_entropy(logits, logits.argmax(-1))


def random_projection(output: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``<output, r>`` with r ~ N(0, I): E[(d/dw <f, r>)^2] = diag(J^T J), the Gauss-Newton diagonal of a squared-error
    loss on the output (regression / embedding models, which have no class to sample)."""
    return (output * torch.randn(output.shape, generator=gen, dtype=output.dtype)).sum()


def fisher_diagonal(model: nn.Module, inputs: torch.Tensor | Iterable[tuple[torch.Tensor, ...]],
                    objective: Objective = self_label_cross_entropy, seed: int = 0) -> dict[str, torch.Tensor]:
    """Mean squared gradient of ``objective`` per conv/linear weight, one backward pass per sample (no labels).
    ``inputs``: a batch [n, ...] of single-input samples, or per-sample argument tuples (``model(*sample)``, batch
    1 each). The default objective gives the empirical Fisher of a classifier."""
    samples = [(x,) for x in inputs.split(1)] if isinstance(inputs, torch.Tensor) else list(inputs)
    layers = quantizable_layers(model)
    sums = {name: torch.zeros_like(m.weight) for name, m in layers.items()}
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    for sample in samples:
        model.zero_grad(set_to_none=True)
        objective(model(*sample), gen).backward()
        for name, m in layers.items():
            sums[name] += m.weight.grad.detach() ** 2
    model.zero_grad(set_to_none=True)
    return {name: s / len(samples) for name, s in sums.items()}
