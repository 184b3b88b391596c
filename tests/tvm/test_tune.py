"""The tile tuner: default tiles first among the candidates, a cache round trip, cached tiles used by the build."""
from __future__ import annotations

import numpy as np

from tvm_helpers import conv_model, random_layer
from ssvq_deploy.tvm_backend.build import build_onnx, prepare, run_executable, x86_config, x86_target
from ssvq_deploy.tvm_backend.schedule import Tiles, default_tiles
from ssvq_deploy.tvm_backend.tune import candidates, kernel_key, load_cache, save_cache, tiles_from_cache, tune_module


def _model():
    layer = random_layer(np.random.default_rng(4), 16, 8, (32, 24, 1, 1), edges=False)
    return layer, conv_model(layer, (1, 24, 14, 14), (1, 32, 14, 14))


def test_candidates_start_with_default_and_never_span_all_channels():
    for template, kind, shape in [("rows", "pointwise", [1, 96, 56, 56]), ("rows", "depthwise", [1, 144, 28, 28]),
                                  ("channels", "pointwise", [1, 960, 7, 7]), ("channels", "conv", [1, 32, 112, 112]),
                                  ("dense", "dense", [1, 1000])]:
        found = candidates(template, kind, shape)
        assert found[0] == default_tiles(template, kind, *shape[1:]) and len(set(found)) == len(found) <= 8
        assert all(t.ot < shape[1] for t in found)


def test_tune_cache_round_trip_and_build_uses_cached_tiles(tmp_path):
    layer, model = _model()
    target = x86_target(1)
    unscheduled = prepare(model, {}, target, schedule=False)
    entries = tune_module(unscheduled.mod, target, limit=2)
    (key, entry), = entries.items()
    assert key.startswith("pointwise/rows/ssvq-d8/") and entry["tried"] == 2
    path = tmp_path / "cache.json"
    save_cache(path, {key: {**entry, "tiles": Tiles(4, 7, 14).key()}}, x86_config(1))
    assert load_cache(path)["entries"][key]["tiles"] == "ot4_yr7_xw14"
    executable, lowered = build_onnx(model, {}, target, tiles_for=tiles_from_cache(path))
    assert list(lowered.schedules.values()) == ["pointwise/rows:ot4_yr7_xw14"]
    x = np.random.default_rng(0).uniform(-1, 1, (1, 24, 14, 14)).astype(np.float32)
    want = np.einsum("oc,nchw->nohw", layer.decode()[:, :, 0, 0].astype(np.float64), x)
    assert np.abs(run_executable(executable, x)[0] - want).max() < 1e-5
    fused = next(f for g, f in unscheduled.mod.functions_items() if kernel_key(f) == key)
    assert tiles_from_cache(tmp_path / "missing.json")(fused) is None
