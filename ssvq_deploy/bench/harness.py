"""``ssvq bench``: fp32, int8 (static QDQ per-channel; dynamic for Linear models), SSVQ decode-at-load and SSVQ
fused (int8 and float numerics) built from the same weights, each timed in a fresh process (same threads, warm-up,
median / p90 over N runs, peak RSS, resident weight bytes), with the kernel each node ran and every fallback named.
Writes bench.json, bench.md and bench.png."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import onnxruntime as ort

from ..atomic import ensure_writable_dir, write_text
from ..errors import ConfigError, SSVQError
from .workloads import CONFIGS, WORKLOADS, BuiltWorkload, build_all

log = logging.getLogger(__name__)
FUSED_OPS = ("SSVQConv", "SSVQGemm")


class BenchError(SSVQError):
    """A benchmark worker failed."""


@dataclass(frozen=True)
class BenchConfig:
    """Options of ``ssvq bench``."""

    workloads: tuple[str, ...] = WORKLOADS
    threads: tuple[int, ...] = (1, os.cpu_count() or 1)
    runs: int = 100
    warmup: int = 10
    out: str = "out/bench"
    compressed: str | None = None  # compressed file for its model's workloads; default: compress (k-means) first
    configs: tuple[str, ...] = tuple(CONFIGS)

    def __post_init__(self):
        if self.runs < 1 or self.warmup < 0 or not self.threads or min(self.threads) < 1:
            raise ConfigError(f"runs >= 1, warmup >= 0 and threads >= 1 needed, got {self.runs}, {self.warmup}, "
                              f"{self.threads}")
        unknown = [c for c in self.configs if c not in CONFIGS]
        if unknown:
            raise ConfigError(f"unknown configurations {unknown}; available: {', '.join(CONFIGS)}")


@dataclass
class Measurement:
    workload: str
    config: str
    threads: int
    batch: int
    median_ms: float
    p90_ms: float
    min_ms: float
    runs: int
    weight_bytes: int  # resident weights: initializers as the session holds them + our kernels' own buffers
    rss_session_delta_mb: float
    peak_rss_mb: float
    kernels: str  # summary of what ran
    fallbacks: list[str] = field(default_factory=list)
    report: list[dict] = field(default_factory=list)  # the fused kernels' report lines


def _run_worker(spec: dict) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
        path = f.name
    try:
        done = subprocess.run([sys.executable, "-m", "ssvq_deploy.bench.worker", path], capture_output=True,
                              text=True, timeout=1800)
    finally:
        os.unlink(path)
    if done.returncode != 0:
        raise BenchError(f"worker failed for {spec['model']} ({spec['threads']} threads):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def _kernels(config: str, nodes: list[dict], report: list[dict]) -> tuple[str, list[str]]:
    """A one-line summary of the kernels that ran, and the fallbacks (generic paths) by node."""
    ops: dict[str, int] = {}
    for n in nodes:
        ops[n["op"]] = ops.get(n["op"], 0) + 1
    fallbacks = [f"{n['node']}: SSVQDecode (weight decoded, generic op)" for n in nodes if n["op"] == "SSVQDecode"
                 and config.startswith("ssvq_fused")]
    fallbacks += [f"{r['node']}: {r['path']} on {r['kernels']} kernels{' - ' + r['notes'] if r['notes'] else ''}"
                  for r in report if r["fallback"]]
    paths: dict[str, int] = {}
    for r in report:
        key = f"{r['path']}/{r['kernels']}"
        paths[key] = paths.get(key, 0) + 1
    main = sorted(ops.items(), key=lambda kv: -kv[1])[:4]
    summary = ", ".join(f"{count} {op}" for op, count in main)
    if paths:
        summary += " | " + ", ".join(f"{count} {p}" for p, count in sorted(paths.items()))
    return summary, fallbacks


def measure(built: BuiltWorkload, config: str, threads: int, bench: BenchConfig) -> Measurement:
    library, decode = CONFIGS[config]
    with tempfile.TemporaryDirectory() as tmp:
        report_path = os.path.join(tmp, "kernels.jsonl")
        spec = {"model": str(built.models[config]), "library": library, "decode_at_load": decode,
                "threads": threads, "input": "input", "shape": built.input_shape, "dtype": "float32",
                "feed": str(built.feed) if built.feed else None,
                "runs": bench.runs, "warmup": bench.warmup, "report": report_path if library else None}
        result = _run_worker(spec)
        report = []
        if os.path.exists(report_path):
            with open(report_path) as f:
                report = [json.loads(line) for line in f if line.strip()]
    extra = sum({r["node"]: r["extra_bytes"] for r in report}.values())
    summary, fallbacks = _kernels(config, result["nodes"], report)
    return Measurement(built.name, config, threads, built.batch, result["median_ms"], result["p90_ms"],
                       result["min_ms"], result["runs"], result["graph_weight_bytes"] + extra,
                       result["rss_session_delta_mb"], result["peak_rss_mb"], summary, fallbacks, report)


def _ratios(rows: list[Measurement]) -> list[dict]:
    out = []
    for m in rows:
        same = {r.config: r for r in rows if r.workload == m.workload and r.threads == m.threads}
        row = {k: v for k, v in asdict(m).items() if k != "report"}
        for base in ("int8_qdq", "int8_dynamic"):
            if base in same:
                row[f"x_faster_than_{base}"] = same[base].median_ms / m.median_ms
                row[f"weight_vs_{base}"] = m.weight_bytes / same[base].weight_bytes
        out.append(row)
    return out


TABLE_COLUMNS = ["config", "threads", "median_ms", "p90_ms", "x_faster_than_int8_qdq", "x_faster_than_int8_dynamic",
                 "weight_MB", "weight_vs_int8_qdq", "peak_rss_MB", "rss_delta_MB"]


def table_rows(rows: list[dict], workload: str) -> list[dict]:
    return [{"config": r["config"], "threads": r["threads"], "median_ms": r["median_ms"], "p90_ms": r["p90_ms"],
             "x_faster_than_int8_qdq": r.get("x_faster_than_int8_qdq"),
             "x_faster_than_int8_dynamic": r.get("x_faster_than_int8_dynamic"),
             "weight_MB": r["weight_bytes"] / 2**20, "weight_vs_int8_qdq": r.get("weight_vs_int8_qdq"),
             "peak_rss_MB": r["peak_rss_mb"], "rss_delta_MB": r["rss_session_delta_mb"]}
            for r in rows if r["workload"] == workload]


def markdown(report: dict) -> str:
    def cell(v):
        return "-" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)
    lines = [f"# ssvq bench", "", f"onnxruntime {report['onnxruntime']}, {report['cpu']}, runs {report['runs']} "
             f"(warm-up {report['warmup']}), median / p90 of wall time per session.run; each configuration in a "
             f"fresh process.", ""]
    for w in report["workloads"]:
        lines += [f"## {w['name']} (batch {w['batch']})", "", "| " + " | ".join(TABLE_COLUMNS) + " |",
                  "|" + "---|" * len(TABLE_COLUMNS)]
        lines += ["| " + " | ".join(cell(r[c]) for c in TABLE_COLUMNS) + " |" for r in table_rows(report["rows"], w["name"])]
        lines += ["", "Kernels:"]
        lines += [f"- {r['config']} ({r['threads']}t): {r['kernels']}" for r in report["rows"] if r["workload"] == w["name"]]
        fallbacks = sorted({f for r in report["rows"] if r["workload"] == w["name"] for f in r["fallbacks"]})
        lines += ["", f"**FALLBACK** ({len(fallbacks)}):" if fallbacks else "No fallback: every fused node ran a "
                  "specialised kernel."] + [f"- {f}" for f in fallbacks]
        if w["accuracy"]:
            lines += ["", "Accuracy (not timed): " + "; ".join(
                f"{c}: " + ", ".join(f"{k} {cell(v)}" for k, v in a.items() if k != "reference") + f" vs {a['reference']}"
                for c, a in w["accuracy"].items())]
        if w["notes"]:
            lines += ["", w["notes"]]
        lines.append("")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    workloads = [w["name"] for w in report["workloads"]]
    fig, axes = plt.subplots(2, len(workloads), figsize=(4.5 * len(workloads), 7), squeeze=False)
    for i, name in enumerate(workloads):
        rows = [r for r in report["rows"] if r["workload"] == name]
        configs = list(dict.fromkeys(r["config"] for r in rows))
        threads = sorted({r["threads"] for r in rows})
        width = 0.8 / len(threads)
        for j, t in enumerate(threads):
            ms = [next((r["median_ms"] for r in rows if r["config"] == c and r["threads"] == t), 0) for c in configs]
            axes[0][i].bar([x + j * width for x in range(len(configs))], ms, width, label=f"{t} thread(s)")
        axes[0][i].set_title(f"{name}: median latency")
        axes[0][i].set_ylabel("ms")
        axes[0][i].set_xticks([x + width * (len(threads) - 1) / 2 for x in range(len(configs))], configs,
                              rotation=35, ha="right", fontsize=8)
        axes[0][i].legend(fontsize=8)
        mb = [next(r["weight_bytes"] for r in rows if r["config"] == c) / 2**20 for c in configs]
        axes[1][i].bar(range(len(configs)), mb, color="tab:gray")
        axes[1][i].set_title("resident weight MiB")
        axes[1][i].set_xticks(range(len(configs)), configs, rotation=35, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    except OSError:
        name = "?"
    return f"{name}, {os.cpu_count()} cores"


def run_bench(config: BenchConfig, progress=None) -> dict:
    """Build every workload's models, time every (configuration, thread count) in its own process, write
    ``<out>/bench.json``, ``bench.md``, ``bench.png``; returns the report."""
    out = ensure_writable_dir(config.out)
    say = progress or (lambda message: log.info("[bench] %s", message))
    say(f"building models for {', '.join(config.workloads)}")
    built = build_all(list(config.workloads), out / "models", config.compressed)
    rows = []
    for w in built:
        for threads in dict.fromkeys(config.threads):
            for name in config.configs:
                if name not in w.models:
                    continue
                say(f"{w.name}: {name}, {threads} thread(s)")
                rows.append(measure(w, name, threads, config))
    report = {
        "onnxruntime": ort.__version__, "cpu": _cpu(), "runs": config.runs, "warmup": config.warmup,
        "config": asdict(config),
        "workloads": [{"name": w.name, "batch": w.batch, "input_shape": w.input_shape, "accuracy": w.accuracy,
                       "unfused": w.unfused, "notes": w.notes,
                       "models": {k: str(v) for k, v in w.models.items()}} for w in built],
        "rows": _ratios(rows),
        "kernel_reports": {f"{m.workload}/{m.config}/{m.threads}": m.report for m in rows if m.report},
    }
    write_text(out / "bench.json", json.dumps(report, indent=2))
    write_text(out / "bench.md", markdown(report))
    plot(report, out / "bench.png")
    report["paths"] = {k: str(out / f"bench.{k}") for k in ("json", "md", "png")}
    return report
