"""ssvq bench on a tiny workload: every configuration runs in its own process and the report holds every field
(no timing assertions: timing lives in benchmarks, never in tests)."""
import json

import pytest

from ssvq_deploy.bench.harness import BenchConfig, run_bench
from ssvq_deploy.errors import ConfigError
from ssvq_deploy.runtime import LibraryNotFoundError, library_path


def test_bench_smoke(tmp_path):
    try:
        library_path()
    except LibraryNotFoundError as e:
        pytest.skip(f"libssvq_ort.so is not built: {e}")
    report = run_bench(BenchConfig(workloads=("linear_2x128",), threads=(1, 2), runs=3, warmup=1, out=str(tmp_path)))
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert (tmp_path / "bench.md").read_text().startswith("# ssvq bench")
    assert (tmp_path / "bench.png").stat().st_size > 0
    rows = saved["rows"]
    configs = {r["config"] for r in rows}
    assert configs == {"fp32", "int8_qdq", "int8_dynamic", "ssvq_decode_at_load", "ssvq_fused_int8",
                       "ssvq_fused_float"}
    assert {r["threads"] for r in rows} == {1, 2}
    for r in rows:
        for key in ("median_ms", "p90_ms", "weight_bytes", "peak_rss_mb", "x_faster_than_int8_qdq",
                    "x_faster_than_int8_dynamic"):
            assert r[key] > 0, (r["config"], key)
        assert r["kernels"]
    fused = [r for r in rows if r["config"].startswith("ssvq_fused")]
    assert all("SSVQGemm" in r["kernels"] and not r["fallbacks"] for r in fused)
    assert saved["kernel_reports"] and report["paths"]["png"].endswith("bench.png")
    assert set(saved["workloads"][0]["accuracy"]) == configs


def test_bench_config_rejects_bad_values():
    with pytest.raises(ConfigError):
        BenchConfig(runs=0)
    with pytest.raises(ConfigError, match="unknown configurations"):
        BenchConfig(configs=("fp64",))
