"""k-means: monotone objective, determinism, exact objective bookkeeping, importance weighting."""
import numpy as np
import pytest
import torch

from ssvq_deploy.quant import kmeans as km
from ssvq_deploy.quant.kmeans import kmeans


def objective(x, codebook, assignments, weights=None):
    """Independent recomputation in numpy with an explicit loop over rows."""
    x, c = np.asarray(x, np.float64), np.asarray(codebook, np.float64)
    h = np.ones_like(x) if weights is None else np.asarray(weights, np.float64)
    return sum(float((h[i] * (x[i] - c[a]) ** 2).sum()) for i, a in enumerate(np.asarray(assignments)))


def _data(seed, n=60, d=3, distinct=None):
    """Blobs with a few duplicates, or (``distinct``) n rows drawn from only that many different points."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    x[: n // 3] += 4
    x[-5:] = x[0]
    if distinct is not None:
        x = x[torch.randint(distinct, (n,), generator=g)]
    return x, torch.rand(n, d, generator=g) ** 4 * 10  # strongly varying importances


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k, distinct", [(4, None), (40, None), (55, None), (16, 20), (30, 20)])
def test_history_non_increasing_and_final_objective_exact(seed, weighted, k, distinct):
    x, h = _data(seed, distinct=distinct)
    w = h if weighted else None
    r = kmeans(x, k, iters=30, seed=seed, weights=w)
    assert r.codebook.shape == (k, 3) and r.assignments.shape == (60,)
    assert r.assignments.min() >= 0 and r.assignments.max() < k
    assert len(r.history) >= 2
    for a, b in zip(r.history, r.history[1:]):
        assert b <= a, r.history
    ref = objective(x, r.codebook, r.assignments, w)
    assert r.history[-1] == pytest.approx(ref, rel=1e-9, abs=1e-12)
    # every point sits at its nearest center (up to ties) for the returned codebook
    hh = np.ones((60, 3)) if w is None else w.double().numpy()
    dist = (hh[:, None, :] * (x.double().numpy()[:, None, :] - r.codebook.numpy()[None]) ** 2).sum(-1)
    chosen = dist[np.arange(60), r.assignments.numpy()]
    assert np.all(chosen <= dist.min(1) + 1e-9)


@pytest.mark.parametrize("weighted", [False, True])
def test_empty_clusters_are_reseeded(monkeypatch, weighted):
    """k above the number of distinct points: duplicate centers leave clusters empty, and they get reseeded."""
    x, h = _data(0, distinct=20)
    empties = []
    original = km._reseed_empty

    def spy(x_, h_, centers, assign, dist):
        empties.append(int((torch.bincount(assign, minlength=centers.shape[0]) == 0).sum()))
        return original(x_, h_, centers, assign, dist)

    monkeypatch.setattr(km, "_reseed_empty", spy)
    r = kmeans(x, 30, iters=30, seed=0, weights=h if weighted else None)
    assert max(empties) > 0
    assert all(b <= a for a, b in zip(r.history, r.history[1:]))
    assert r.history[-1] == pytest.approx(0, abs=1e-20)
    assert objective(x, r.codebook, r.assignments, h if weighted else None) == pytest.approx(0, abs=1e-20)


def test_k_equals_n_reaches_zero_objective():
    x = torch.randn(12, 2, generator=torch.Generator().manual_seed(3))
    r = kmeans(x, 12, iters=20, seed=0)
    assert r.history[-1] == pytest.approx(0, abs=1e-18)
    assert len(set(r.assignments.tolist())) == 12


def test_deterministic_per_seed_and_different_across_seeds():
    x, h = _data(7, n=200, d=4)
    a, b = kmeans(x, 16, seed=1, weights=h), kmeans(x, 16, seed=1, weights=h)
    assert torch.equal(a.codebook, b.codebook) and torch.equal(a.assignments, b.assignments)
    assert a.history == b.history
    others = [kmeans(x, 16, seed=s, weights=h) for s in (2, 3)]
    assert any(not torch.equal(a.codebook, o.codebook) for o in others)


def test_importance_pulls_centroid_toward_heavy_point():
    one = kmeans(torch.tensor([[0.0], [1.0]]), 1, weights=torch.tensor([[1.0], [99.0]]))
    assert one.codebook.item() == pytest.approx(0.99)  # weighted mean of 0 (w=1) and 1 (w=99)
    x = torch.tensor([[0.0], [1.0], [100.0], [101.0]])
    for seed in range(4):
        plain = kmeans(x, 2, iters=10, seed=seed)
        heavy = kmeans(x, 2, iters=10, seed=seed, weights=torch.tensor([[1.0], [99.0], [1.0], [1.0]]))
        assert sorted(plain.codebook.flatten().tolist()) == pytest.approx([0.5, 100.5])
        assert sorted(heavy.codebook.flatten().tolist()) == pytest.approx([0.99, 100.5])


def test_zero_weight_dimension_keeps_center():
    # dimension 1 has zero importance everywhere: it must not produce NaN
    x = torch.randn(20, 2, generator=torch.Generator().manual_seed(0))
    h = torch.ones(20, 2)
    h[:, 1] = 0
    r = kmeans(x, 4, seed=0, weights=h)
    assert torch.isfinite(r.codebook).all()
    assert r.history[-1] == pytest.approx(objective(x, r.codebook, r.assignments, h), rel=1e-9, abs=1e-12)


def test_reseed_moves_empty_center_onto_worst_point():
    x = torch.tensor([[0.0], [1.0], [5.0], [9.0]], dtype=torch.float64)
    centers = torch.tensor([[0.5], [6.0], [100.0]], dtype=torch.float64)
    assign = torch.tensor([0, 0, 1, 1])
    dist = ((x - centers[assign]) ** 2).sum(1)  # 0.25, 0.25, 1, 9
    c2, a2, d2 = km._reseed_empty(x, None, centers, assign, dist)
    assert c2[2].item() == 9.0 and a2.tolist() == [0, 0, 1, 2]
    assert d2.tolist() == [0.25, 0.25, 1.0, 0.0]
    assert centers[2].item() == 100.0  # inputs untouched


def test_too_few_rows():
    with pytest.raises(ValueError, match="at least k=8 rows"):
        kmeans(torch.randn(7, 2), 8)
    with pytest.raises(ValueError):
        kmeans(torch.randn(8), 2)
