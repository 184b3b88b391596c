"""Distillation data: a train / held-out split of the bundled photos by source, random crops of photos, random
spans of tokenized text."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .photos import PHOTOS


def split_by_source(heldout_every: int = 4) -> tuple[list[str], list[str]]:
    """(train, held-out) photo names; every ``heldout_every``-th source is held out with all of its photos."""
    sources = sorted({p.source for p in PHOTOS})
    heldout = set(sources[heldout_every - 1::heldout_every])
    return ([p.name for p in PHOTOS if p.source not in heldout], [p.name for p in PHOTOS if p.source in heldout])


def random_crops(images: torch.Tensor, gen: torch.Generator, size: int = 224,
                 min_scale: float = 0.3) -> torch.Tensor:
    """A random square crop of each image [n, C, H, W] covering ``min_scale``..1 of its area, resized to
    ``size`` (bilinear), and flipped left-right with probability 1/2. Deterministic for a given generator."""
    n, _, h, w = images.shape
    out = torch.empty(n, images.shape[1], size, size, dtype=images.dtype)
    for i in range(n):
        scale = min_scale + (1 - min_scale) * float(torch.rand((), generator=gen))
        side = max(8, int(round(min(h, w) * scale ** 0.5)))
        top = int(torch.randint(h - side + 1, (), generator=gen))
        left = int(torch.randint(w - side + 1, (), generator=gen))
        crop = images[i:i + 1, :, top:top + side, left:left + side]
        crop = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)
        out[i] = crop[0].flip(-1) if bool(torch.rand((), generator=gen) < 0.5) else crop[0]
    return out


def trim_padding(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Token batches [n, L] without the columns that are padding in every row (same outputs, less compute)."""
    longest = max(int(mask.sum(1).max()), 1)
    return ids[:, :longest], mask[:, :longest]


def random_spans(batch: tuple[torch.Tensor, torch.Tensor], gen: torch.Generator,
                 min_fraction: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """The text counterpart of :func:`random_crops`: for each right-padded token row (``input_ids``,
    ``attention_mask`` [n, L]) a random contiguous span covering ``min_fraction``..1 of its inner tokens, keeping
    its first and last real token (BERT's [CLS] and [SEP]); padding trimmed. Deterministic for a given generator."""
    ids, mask = batch
    out_ids, out_mask = torch.zeros_like(ids), torch.zeros_like(mask)
    for i in range(ids.shape[0]):
        length = int(mask[i].sum())
        inner = max(length - 2, 0)
        shortest = min(inner, max(1, math.ceil(min_fraction * inner)))
        span = shortest + int(torch.randint(inner - shortest + 1, (), generator=gen))
        start = 1 + int(torch.randint(inner - span + 1, (), generator=gen))
        row = torch.cat([ids[i, :1], ids[i, start:start + span], ids[i, length - 1:length]]) if length >= 2 \
            else ids[i, :length]
        out_ids[i, :row.numel()] = row
        out_mask[i, :row.numel()] = 1
    return trim_padding(out_ids, out_mask)
