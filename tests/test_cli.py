"""Recipes and the `ssvq compress` command: the shipped recipe holds the paper's values, malformed recipes are
rejected by name, and `ssvq compress` runs end to end on MobileNetV2 with clean error paths (exit 2, no output)."""
import contextlib
import io
import json

import numpy as np
import pytest
import torch

from ssvq_deploy import cli
from ssvq_deploy.errors import ConfigError
from ssvq_deploy.format import compression_ratio, load, quantized_bits
from ssvq_deploy.models import load_model
from ssvq_deploy.pipeline import COMPRESSED_FILE, decoded_model, load_compressed
from ssvq_deploy.quant.config import LayerRule
from ssvq_deploy.recipe import available_recipes, load_recipe, parse_recipe


GOOD = """
model = "mobilenetv2"
[quant]
method = "vq"
k = 64
d = 4
layers = [{ pattern = "features.0.*", k = 32 }, { pattern = "classifier.*", skip = true }]
[finetune]
lr = 1e-3
theta = 4
"""


def test_shipped_recipe_matches_paper():
    assert "mobilenetv2_ssvq" in available_recipes()
    r = load_recipe("mobilenetv2_ssvq")
    assert r.model == "mobilenetv2" and r.name == "mobilenetv2_ssvq"
    assert (r.quant.method, r.quant.k, r.quant.d) == ("ssvq", 16, 8)
    assert r.finetune.lr == 2e-3 and r.finetune.lr_mask == 2e-4 and r.finetune.theta == 1
    assert r.quant.rules == ()


def test_parse_and_override():
    r = parse_recipe("x", GOOD)
    assert (r.quant.method, r.quant.k, r.quant.d) == ("vq", 64, 4)
    assert r.quant.rules == (LayerRule("features.0.*", k=32), LayerRule("classifier.*", skip=True))
    assert r.quant.for_layer("features.0.0") == (32, 4) and r.quant.for_layer("classifier.1") is None
    assert r.quant.for_layer("features.3.conv.1.0") == (64, 4)
    assert r.finetune.lr == 1e-3 and r.finetune.theta == 4 and r.finetune.lr_mask == 2e-4
    r2 = r.with_quant(k=8, d=None, method="ssvq")
    assert (r2.quant.k, r2.quant.d, r2.quant.method) == (8, 4, "ssvq") and r.quant.k == 64
    with pytest.raises(ConfigError, match="k must be a power of two.*12"):
        r.with_quant(k=12)


@pytest.mark.parametrize("text, match", [
    ('model = "m"\n[quant]\nkk = 4\n', r"unknown \[quant\] keys \['kk'\]"),
    ('model = "m"\n[finetune]\nlr_masks = 1.0\n', r"lr_masks"),
    ('model = "m"\nmodle = "x"\n', r"modle"),
    ('model = "m"\n[finetuen]\nlr = 1.0\n', r"finetuen"),
    ('model = "m"\n[quant]\nlayers = [{ pattern = "a", kk = 4 }]\n', r"kk"),
    ('[quant]\nk = 4\n', r"model"),
    ('model = "m"\n[quant]\nk = 12\n', r"k must be a power of two"),
    ('model = "m"\n[quant]\nk = 16\nlayers = [{ pattern = "a", k = 5 }]\n', r"layer rule 'a'"),
    ('model = "m"\n[finetune]\ntheta = 0\n', r"theta"),
    ('model = "m"\n[quant\nk = 4\n', r"invalid TOML"),
    ('model = = "m"\n', r"invalid TOML"),
])
def test_bad_recipes(text, match):
    with pytest.raises(ConfigError, match=match) as info:
        parse_recipe("bad", text)
    assert "recipe bad" in str(info.value) or "k must be" in str(info.value) or "theta" in str(info.value)


def test_unknown_recipe():
    with pytest.raises(ConfigError, match="unknown model 'nope'.*mobilenetv2_ssvq"):
        load_recipe("nope")


def _main(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def compressed_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "out"
    rc, stdout, stderr = _main(["compress", "--model", "mobilenetv2_ssvq", "--k", "8", "--out", str(out)])
    assert rc == 0, stderr
    return out, stdout


def test_compress_report(compressed_run):
    out, stdout = compressed_run
    report = json.loads((out / "report.json").read_text())
    original = dict(load_model("mobilenetv2").named_modules())
    layers = report["layers"]
    assert len(layers) == 53 and report["model"] == "mobilenetv2" and report["method"] == "ssvq"
    numels = [int(np.prod(l["shape"])) for l in layers]
    assert report["n_weights"] == sum(numels) == 3_469_760
    expect_cr = compression_ratio([quantized_bits(n, 8, 8, True) for n in numels])
    assert report["compression_ratio"] == pytest.approx(expect_cr) and round(expect_cr, 2) == 23.01
    assert report["bits_per_weight"] == pytest.approx(32 / expect_cr)
    # whole-model relative error from the per-layer ones, weighted by each layer's squared norm
    norms = {l["name"]: float(original[l["name"]].weight.detach().double().square().sum()) for l in layers}
    total = sum(l["rel_error"] ** 2 * norms[l["name"]] for l in layers) / sum(norms.values())
    assert report["rel_error"] == pytest.approx(total ** 0.5)
    for l, n in zip(layers, numels):
        assert {"name", "shape", "k", "d", "bits_per_weight", "rel_error"} <= set(l)
        assert list(original[l["name"]].weight.shape) == l["shape"]
        assert (l["k"], l["d"], l["method"]) == (8, 8, "ssvq")
        assert l["bits_per_weight"] == pytest.approx(3 / 8 + 1 + 8 * 8 * 16 / n)
        assert 0 < l["rel_error"] < 1
    assert report["file_bytes"] == (out / COMPRESSED_FILE).stat().st_size
    # the printed table: header, one row per layer, summary line
    lines = stdout.splitlines()
    assert lines[0].split() == cli.LAYER_COLUMNS
    for l in layers:
        assert any(line.split()[:1] == [l["name"]] for line in lines), l["name"]
    assert f"compression ratio {expect_cr:.2f}x" in lines[-1] and "3469760 weights" in lines[-1]


def test_compressed_file_matches_report(compressed_run):
    out, _ = compressed_run
    report = json.loads((out / "report.json").read_text())
    cm = load(out / COMPRESSED_FILE)
    assert cm.model == "mobilenetv2" and cm.meta["recipe"] == "mobilenetv2_ssvq" and cm.meta["k"] == 8
    original = dict(load_model("mobilenetv2").named_modules())
    assert list(cm.layers) == [l["name"] for l in report["layers"]]
    for l in report["layers"]:
        w = cm.layers[l["name"]].decode()
        assert list(w.shape) == l["shape"]
        ref = original[l["name"]].weight.detach().numpy()
        assert np.linalg.norm(ref - w) / np.linalg.norm(ref) == pytest.approx(l["rel_error"], rel=1e-6)
    # the file rebuilds the architecture (BN counters and all) and the decoded net still runs
    model = decoded_model(load_compressed(out / COMPRESSED_FILE))
    assert np.isfinite(model(torch.randn(1, 3, 64, 64)).detach().numpy()).all()


def test_bad_k(tmp_path):
    out = tmp_path / "out"
    rc, stdout, stderr = _main(["compress", "--model", "mobilenetv2_ssvq", "--k", "12", "--out", str(out)])
    assert rc == 2
    assert "k must be a power of two" in stderr and "12" in stderr
    assert not out.exists()


def test_unknown_model(tmp_path):
    out = tmp_path / "out"
    rc, _, stderr = _main(["compress", "--model", "resnet_ssvq", "--out", str(out)])
    assert rc == 2 and "unknown model 'resnet_ssvq'" in stderr
    assert not out.exists()


def test_d_that_does_not_fit_lists_layers(tmp_path):
    out = tmp_path / "out"
    rc, _, stderr = _main(["compress", "--model", "mobilenetv2_ssvq", "--d", "7", "--out", str(out)])
    assert rc == 2
    # every layer whose weight count 7 does not divide is listed in one message
    assert "features.0.0: d=7 does not divide its 864 weights [32, 3, 3, 3]" in stderr
    assert "classifier.1: d=7 does not divide its 1280000 weights" in stderr
    assert not out.exists()
