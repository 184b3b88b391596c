"""Fine-tuning of a compressed model: AdamW on codebooks (lr) and sign latents (lr_mask), optional distillation.

Runs in one process or under ``torchrun`` (DDP, gloo on CPU). Each global batch of ``batch_size`` samples is drawn
identically on every rank and split evenly across ranks, so N processes follow the 1-process trajectory up to
floating-point summation order. The model runs in eval mode throughout: BatchNorm keeps its pretrained statistics
(small distillation sets cannot re-estimate them, and per-rank batch statistics would break that equivalence) and
dropout is off.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..errors import ConfigError
from ..format import CompressedModel
from ..quant.modules import QuantWeight
from .config import FinetuneConfig

log = logging.getLogger(__name__)


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _optimizer(qweights: dict[str, QuantWeight], config: FinetuneConfig) -> torch.optim.Optimizer:
    codebooks = [q.codebook for q in qweights.values()]
    latents = [q.latent for q in qweights.values() if q.signed]
    groups = [{"params": codebooks, "lr": config.lr, "weight_decay": config.weight_decay}]
    if latents:
        groups.append({"params": latents, "lr": config.lr_mask, "weight_decay": 0.0})
    return torch.optim.AdamW(groups)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) on temperature-softened outputs, scaled by T^2, averaged over the batch."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, -1), F.log_softmax(teacher_logits / t, -1),
                    log_target=True, reduction="batchmean") * t * t


def cosine_distillation_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cos(student, teacher) over the batch (embedding models; for unit-norm embeddings this is half
    the mean squared distance)."""
    return (1 - F.cosine_similarity(student_emb, teacher_emb, dim=-1)).mean()


def finetune(student: nn.Module, qweights: dict[str, QuantWeight],
             inputs: torch.Tensor | tuple[torch.Tensor, ...], config: FinetuneConfig,
             teacher: nn.Module | None = None, labels: torch.Tensor | None = None,
             augment: Callable | None = None, progress: bool = False,
             distill: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> list[float]:
    """Fine-tune ``student`` (whose compressed layers are ``qweights``) on ``inputs``: one tensor [n, ...] or, for
    models of several inputs, a tuple of tensors with n rows each (``model(*inputs)``).

    The target is the ``teacher``'s output (distillation: ``distill(student_out, teacher_out)``, by default
    :func:`distillation_loss` with the config's temperature) or ``labels`` (cross-entropy). ``augment(batch, gen)``
    transforms each global batch (a tensor, or a tuple like ``inputs``). Returns the mean loss of every step (this
    rank's shard).
    """
    if (teacher is None) == (labels is None):
        raise ConfigError("fine-tuning needs exactly one target: a teacher model or labels")
    single = isinstance(inputs, torch.Tensor)
    parts = (inputs,) if single else tuple(inputs)
    n = parts[0].shape[0]
    if any(p.shape[0] != n for p in parts):
        raise ConfigError(f"inputs disagree on the number of samples: {[p.shape[0] for p in parts]}")
    if distill is None:
        def distill(out, target):
            return distillation_loss(out, target, config.temperature)
    rank, world = _world()
    batch = min(config.batch_size, n)
    if batch % world:
        raise ConfigError(f"global batch {batch} is not divisible by the {world} processes")
    for p in student.parameters():
        p.requires_grad_(False)
    for q in qweights.values():
        q.codebook.requires_grad_(True)
        if q.signed:
            q.latent.requires_grad_(True)
    student.eval()
    model = nn.parallel.DistributedDataParallel(student) if world > 1 else student
    optimizer = _optimizer(qweights, config)
    gen = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = n // batch
    losses = []
    bar = tqdm(total=config.epochs * steps_per_epoch, desc="fine-tune", disable=not progress or rank != 0)
    for _ in range(config.epochs):
        order = torch.randperm(n, generator=gen)
        for step in range(steps_per_epoch):
            idx = order[step * batch:(step + 1) * batch]
            x = tuple(p[idx] for p in parts)
            if augment is not None:
                x = (augment(x[0], gen),) if single else tuple(augment(x, gen))
            shard = slice(rank * batch // world, (rank + 1) * batch // world)
            x = tuple(p[shard] for p in x)
            out = model(*x)
            if teacher is not None:
                with torch.no_grad():
                    target = teacher(*x)
                loss = distill(out, target)
            else:
                loss = F.cross_entropy(out, labels[idx][shard])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for q in qweights.values():
                q.after_step()
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    bar.close()
    return losses


def sign_statistics(qweights: dict[str, QuantWeight]) -> dict:
    """Counts over all SSVQ signs: total, flipped at least once, frozen."""
    signed = [q for q in qweights.values() if q.signed]
    return {"signs": sum(q.flips.numel() for q in signed),
            "flipped": sum(int((q.flips > 0).sum()) for q in signed),
            "frozen": sum(int(q.frozen.sum()) for q in signed)}


def to_compressed(qweights: dict[str, QuantWeight], base: CompressedModel, meta: dict) -> CompressedModel:
    """The fine-tuned layers packed again, with ``base``'s dense tensors and ``meta`` added to its metadata."""
    layers = {name: q.to_packed() for name, q in qweights.items()}
    return dataclasses.replace(base, layers=layers, meta={**base.meta, **meta})
