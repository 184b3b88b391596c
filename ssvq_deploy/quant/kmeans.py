"""Seeded, deterministic k-means (k-means++ init, Lloyd iterations), optionally importance-weighted per element.

Objective: sum_i sum_j h_ij (x_ij - c_{a(i) j})^2, with h = 1 (plain) or a diagonal Hessian/Fisher estimate.
Computed in float64 so that the monotone decrease of Lloyd's algorithm holds numerically as well.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

_CHUNK_ELEMS = 1 << 22  # rows x k distances evaluated at once


@dataclass
class KMeansResult:
    codebook: torch.Tensor  # [k, d] float64
    assignments: torch.Tensor  # [n] int64
    history: list[float]  # objective after init and after every iteration (non-increasing)


def _distances(x: torch.Tensor, hx: torch.Tensor, hxx: torch.Tensor, h: torch.Tensor | None,
               centers: torch.Tensor) -> torch.Tensor:
    """Weighted squared distances [n, k] via sum h x^2 - 2 sum h x c + sum h c^2."""
    cross = hx @ centers.T
    ccsq = (h @ (centers * centers).T) if h is not None else (centers * centers).sum(1)[None, :]
    return (hxx[:, None] - 2 * cross + ccsq).clamp_min_(0)


def _assign(x, hx, hxx, h, centers) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest center and its distance per row, evaluated in chunks to bound memory."""
    rows = max(1, _CHUNK_ELEMS // centers.shape[0])
    best, idx = [], []
    for s in range(0, x.shape[0], rows):
        sl = slice(s, s + rows)
        dist = _distances(x[sl], hx[sl], hxx[sl], None if h is None else h[sl], centers)
        b, i = dist.min(1)
        best.append(b)
        idx.append(i)
    return torch.cat(best), torch.cat(idx)


def _init_plus_plus(x, hx, hxx, h, k: int, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    centers = x[torch.randint(n, (1,), generator=gen)]
    best, _ = _assign(x, hx, hxx, h, centers)
    for _ in range(1, k):
        total = best.sum()
        if total <= 0:  # fewer distinct points than k: any point is as good as another
            pick = torch.randint(n, (1,), generator=gen)
        else:
            pick = torch.multinomial(best / total, 1, generator=gen)
        new = x[pick]
        centers = torch.cat([centers, new])
        best = torch.minimum(best, _assign(x, hx, hxx, h, new)[0])
    return centers


def kmeans(x: torch.Tensor, k: int, iters: int = 25, seed: int = 0, weights: torch.Tensor | None = None,
           tol: float = 1e-7) -> KMeansResult:
    """Cluster rows of ``x`` [n, d] into ``k`` centers.

    ``weights`` [n, d] >= 0 are per-element importances (diagonal Hessian); None means all ones. Stops after
    ``iters`` Lloyd iterations, when no assignment changes, or when the objective improves by less than ``tol``
    (relative). Deterministic for a given seed.
    """
    x = x.detach().to(torch.float64)
    if x.ndim != 2 or x.shape[0] < k:
        raise ValueError(f"k-means needs at least k={k} rows of a 2-D input, got shape {list(x.shape)}")
    h = None if weights is None else weights.detach().to(torch.float64)
    hx = x if h is None else h * x
    hxx = (hx * x).sum(1)
    gen = torch.Generator().manual_seed(seed)
    centers = _init_plus_plus(x, hx, hxx, h, k, gen)
    dist, assign = _assign(x, hx, hxx, h, centers)
    history = [float(dist.sum())]
    for _ in range(iters):
        centers = _update(x, hx, h, assign, centers)
        dist, new_assign = _assign(x, hx, hxx, h, centers)
        # Keep the old assignment where it is as good: guarantees a non-increasing objective under rounding.
        old = _row_distance(x, h, centers, assign)
        new_assign = torch.where(old <= dist, assign, new_assign)
        dist = torch.minimum(old, dist)
        centers, new_assign, dist = _reseed_empty(x, h, centers, new_assign, dist)
        changed = bool((new_assign != assign).any())
        assign = new_assign
        history.append(float(dist.sum()))
        if not changed or history[-2] - history[-1] <= tol * max(history[-2], 1e-300):
            break
    return KMeansResult(centers, assign, history)


def _row_distance(x, h, centers, assign) -> torch.Tensor:
    diff = x - centers[assign]
    return ((diff * diff) if h is None else (h * diff * diff)).sum(1)


def _update(x, hx, h, assign, centers) -> torch.Tensor:
    """Weighted mean per cluster and dimension; dimensions with zero total weight keep their old value."""
    k, d = centers.shape
    num = torch.zeros(k, d, dtype=x.dtype).index_add_(0, assign, hx)
    den = torch.zeros(k, d, dtype=x.dtype).index_add_(0, assign, torch.ones_like(x) if h is None else h)
    return torch.where(den > 0, num / den.clamp_min(1e-300), centers)


def _reseed_empty(x, h, centers, assign, dist):
    """Move each empty center onto the worst-fitted point (that point's error drops to zero)."""
    counts = torch.bincount(assign, minlength=centers.shape[0])
    empty = torch.nonzero(counts == 0).flatten()
    if empty.numel() == 0:
        return centers, assign, dist
    worst = torch.topk(dist, empty.numel()).indices
    centers = centers.clone()
    centers[empty] = x[worst]
    assign = assign.clone()
    assign[worst] = empty
    dist = dist.clone()
    dist[worst] = 0
    return centers, assign, dist
