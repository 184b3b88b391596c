"""Distillation data from the bundled photos: a train / held-out split by source, and random crops."""
from __future__ import annotations

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
