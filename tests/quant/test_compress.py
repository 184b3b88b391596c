"""Model compression: SSVQ/VQ on every conv kind, layer rules, one error listing all bad layers, Hessian weighting."""
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from ssvq_deploy.errors import ConfigError
from ssvq_deploy.quant.compress import compress_model, plan_layers, relative_error
from ssvq_deploy.quant.config import LayerRule, QuantConfig
from ssvq_deploy.quant.hessian import fisher_diagonal, random_projection

LAYERS = ["0", "2", "4", "6", "9"]


def _rel(w, layer):
    w = w.detach().double().numpy()
    return np.linalg.norm(w - layer.decode()) / np.linalg.norm(w)


def test_ssvq_all_conv_kinds(tiny_convnet):
    model = tiny_convnet()
    model[0].weight.data[0, 0, 0, :] = 0.0  # zero weights count as positive
    cm = compress_model(model, QuantConfig(method="ssvq", k=8, d=4, iters=10), "tiny")
    assert list(cm.layers) == LAYERS
    mods = dict(model.named_modules())
    assert (model[0].weight == 0).sum() == 3 and not cm.layers["0"].negative_mask()[:3].any()
    for name, layer in cm.layers.items():
        w = mods[name].weight.detach()
        assert layer.method == "ssvq" and (layer.k, layer.d) == (8, 4) and layer.shape == tuple(w.shape)
        assert (layer.codebook >= 0).all() and not np.signbit(layer.codebook).any()
        np.testing.assert_array_equal(layer.negative_mask().reshape(w.shape), (w < 0).numpy())
        decoded = layer.decode()
        # the decoded IEEE sign bit is the original sign, also where a magnitude decodes to 0; zero counts as +
        np.testing.assert_array_equal(np.signbit(decoded), (w < 0).numpy())
        err = _rel(w, layer)
        assert 0 < err < 1
        assert relative_error(w, layer) == pytest.approx(err)
    # everything that is not a packed weight is kept dense, as float32
    assert set(cm.dense) == {f"{n}.bias" for n in LAYERS}
    for n in LAYERS:
        np.testing.assert_array_equal(cm.dense[f"{n}.bias"], mods[n].bias.detach().numpy())
    assert cm.meta["method"] == "ssvq" and cm.model == "tiny"


def test_vq_through_the_same_api(tiny_convnet):
    model = tiny_convnet()
    cm = compress_model(model, QuantConfig(method="vq", k=16, d=4, iters=10), "tiny")
    mods = dict(model.named_modules())
    for name, layer in cm.layers.items():
        assert layer.method == "vq" and layer.signs is None
        assert (layer.codebook < 0).any()  # VQ codewords carry the signs
        assert _rel(mods[name].weight, layer) < 1


def test_larger_k_lowers_error(tiny_convnet):
    model = tiny_convnet()
    mods = dict(model.named_modules())
    small = compress_model(model, QuantConfig(k=2, d=4, iters=15), "tiny")
    large = compress_model(model, QuantConfig(k=16, d=4, iters=15), "tiny")
    for name in LAYERS:
        assert _rel(mods[name].weight, large.layers[name]) < _rel(mods[name].weight, small.layers[name]), name


def test_layer_rules_skip_and_override(tiny_convnet):
    model = tiny_convnet()
    rules = (LayerRule("2", skip=True), LayerRule("9", k=4, d=2), LayerRule("*", k=8))
    cm = compress_model(model, QuantConfig(k=16, d=4, iters=5, rules=rules), "tiny")
    assert "2" not in cm.layers
    np.testing.assert_array_equal(cm.dense["2.weight"], model[2].weight.detach().numpy())
    assert cm.dense["2.weight"].dtype == np.float32
    assert (cm.layers["9"].k, cm.layers["9"].d) == (4, 2)
    assert cm.layers["9"].codebook.shape == (4, 2)
    for name in ("0", "4", "6"):  # first matching rule wins: "*" gives k=8 and the default d
        assert (cm.layers[name].k, cm.layers[name].d) == (8, 4)


def test_plan_errors_listed_together():
    model = nn.Sequential(OrderedDict(
        odd=nn.Linear(5, 3),        # 15 weights: d=2 does not divide
        bad=nn.Linear(4, 4),        # NaN
        tiny=nn.Linear(1, 2),       # 2 weights -> 1 sub-vector: no codebook possible
        fine=nn.Linear(16, 16),
    ))
    model.bad.weight.data[1, 2] = float("nan")
    with pytest.raises(ConfigError) as info:
        plan_layers(model, QuantConfig(k=8, d=2))
    msg = str(info.value)
    assert "odd: d=2 does not divide its 15 weights" in msg
    assert "bad: weight holds NaN" in msg
    assert "tiny: only 1 sub-vector of d=2" in msg
    assert "fine" not in msg
    with pytest.raises(ConfigError, match="odd.*\n.*bad.*\n.*tiny"):
        compress_model(model, QuantConfig(k=8, d=2), "m")
    # skipping the layers that do not fit leaves a valid plan
    rules = (LayerRule("odd", skip=True), LayerRule("tiny", d=1))
    model.bad.weight.data[1, 2] = 0.0
    assert plan_layers(model, QuantConfig(k=8, d=2, rules=rules)) == {"bad": (8, 2), "tiny": (2, 1), "fine": (8, 2)}


def test_k_capped_for_layers_with_few_sub_vectors(caplog):
    model = nn.Sequential(OrderedDict(small=nn.Linear(4, 6), big=nn.Linear(16, 16)))  # 24 / 2 = 12 sub-vectors
    with caplog.at_level("WARNING"):
        assert plan_layers(model, QuantConfig(k=16, d=2)) == {"small": (8, 2), "big": (16, 2)}
    assert "small: 12 sub-vectors < k=16, using k=8" in caplog.text
    compressed = compress_model(model, QuantConfig(k=16, d=2), "m")
    assert compressed.layers["small"].k == 8 and compressed.layers["small"].codebook.shape == (8, 2)


def test_config_errors():
    with pytest.raises(ConfigError, match="k must be a power of two.*12"):
        QuantConfig(k=12)
    with pytest.raises(ConfigError, match="d must be a positive integer"):
        QuantConfig(d=0)
    with pytest.raises(ConfigError, match="method"):
        QuantConfig(method="pq")
    with pytest.raises(ConfigError, match="layer rule 'x'.*k must be"):
        QuantConfig(rules=(LayerRule("x", k=3),))
    with pytest.raises(ConfigError, match="no Conv2d or Linear"):
        plan_layers(nn.Sequential(nn.ReLU()), QuantConfig())


def test_hessian_without_importance(tiny_convnet):
    with pytest.raises(ConfigError, match="importance"):
        compress_model(tiny_convnet(), QuantConfig(k=4, d=4, hessian=True), "tiny")
    with pytest.raises(ConfigError, match="importance"):
        compress_model(tiny_convnet(), QuantConfig(k=4, d=4, hessian=True), "tiny", importance={})
    model = tiny_convnet()
    partial = {n: torch.ones_like(m.weight) for n, m in model.named_modules() if n in ("0", "2")}
    partial["2"] = torch.ones(3)
    with pytest.raises(ConfigError) as info:
        compress_model(model, QuantConfig(k=4, d=4, hessian=True), "tiny", importance=partial)
    msg = str(info.value)
    assert "2: importance [3] != weight [16, 1, 3, 3]" in msg
    assert all(f"{n}: no importance estimate" in msg for n in ("4", "6", "9")) and "0:" not in msg


def test_fisher_diagonal_matches_closed_form():
    torch.manual_seed(0)
    lin = nn.Linear(6, 4)
    x = torch.randn(5, 6)
    fisher = fisher_diagonal(lin, x)
    assert set(fisher) == {""} and fisher[""].shape == (4, 6)
    # per sample: dCE/dW = (softmax(Wx+b) - onehot(argmax)) x^T
    expect = torch.zeros(4, 6)
    with torch.no_grad():
        for xi in x:
            logits = lin(xi)
            g = torch.softmax(logits, -1)
            g[logits.argmax()] -= 1
            expect += torch.outer(g, xi) ** 2
    torch.testing.assert_close(fisher[""], expect / 5, rtol=1e-5, atol=1e-9)


def test_fisher_diagonal_shapes(tiny_convnet):
    model = tiny_convnet()
    fisher = fisher_diagonal(model, torch.randn(3, 3, 8, 8))
    mods = dict(model.named_modules())
    assert list(fisher) == LAYERS
    for name, f in fisher.items():
        assert f.shape == mods[name].weight.shape and (f >= 0).all() and f.sum() > 0


@pytest.mark.parametrize("method", ["ssvq", "vq"])
def test_hessian_weighting_reduces_weighted_error(method):
    torch.manual_seed(0)
    lin = nn.Linear(64, 32)
    importance = torch.full_like(lin.weight, 1e-3)
    importance[torch.rand_like(lin.weight) < 0.05] = 100.0  # a few weights matter a lot
    imp = {"": importance}
    w = lin.weight.detach().double().numpy()
    h = importance.double().numpy()
    err = {}
    for hessian in (False, True):
        cm = compress_model(lin, QuantConfig(method=method, k=16, d=4, iters=25, hessian=hessian), "lin", importance=imp)
        err[hessian] = float((h * (w - cm.layers[""].decode()) ** 2).sum())
    assert err[True] < 0.5 * err[False], err


def test_random_projection_objective_is_the_gauss_newton_diagonal():
    # f = Wx + b: d<f, r>/dW = r x^T, so each sample adds (r_i x_j)^2 with the generator's r
    torch.manual_seed(0)
    lin = nn.Linear(5, 3)
    x = torch.randn(4, 5)
    fisher = fisher_diagonal(lin, [(xi[None],) for xi in x], random_projection, seed=7)
    gen = torch.Generator().manual_seed(7)
    expect = sum(torch.outer(torch.randn((1, 3), generator=gen)[0], xi) ** 2 for xi in x) / 4
    torch.testing.assert_close(fisher[""], expect, rtol=1e-5, atol=1e-9)
