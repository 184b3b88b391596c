"""Side-by-side int8 vs SSVQ timing: per-layer roofline-style rows, where the speedup comes from, and a PNG plot."""
from __future__ import annotations

from pathlib import Path

from ..atomic import atomic_path
from .config import AcceleratorConfig
from .timing import LayerTiming, NetworkTiming

LAYER_COLUMNS = ["layer", "kind", "macs", "w_bytes_int8", "w_bytes_ssvq", "act_bytes", "compute", "dram_int8",
                 "dram_ssvq", "decode", "cycles_int8", "cycles_ssvq", "bound_int8", "bound_ssvq", "speedup"]
STAGE_COLUMNS = ["stage", "layers", "cycles_int8", "cycles_ssvq", "dram_bound_int8", "dram_bound_ssvq", "speedup",
                 "share_of_saved_cycles"]


def _intensity(layer: LayerTiming) -> float | None:
    return layer.macs / layer.dram_bytes if layer.macs and layer.dram_bytes else None


def layer_rows(int8: NetworkTiming, ssvq: NetworkTiming, config: AcceleratorConfig) -> list[dict]:
    """One row per op (both networks come from the same graph, so ops pair up in order)."""
    rows = []
    for a, b in zip(int8.layers, ssvq.layers, strict=True):
        rows.append({
            "layer": a.name, "kind": a.kind, "macs": a.macs,
            "w_bytes_int8": a.weight_bytes, "w_bytes_ssvq": b.weight_bytes,
            "param_bytes": a.param_bytes, "act_bytes": a.act_read_bytes + a.act_write_bytes,
            "dram_bytes_int8": a.dram_bytes, "dram_bytes_ssvq": b.dram_bytes,
            "intensity_int8": _intensity(a), "intensity_ssvq": _intensity(b),
            "compute": a.compute_cycles, "dram_int8": a.dram_cycles, "dram_ssvq": b.dram_cycles,
            "decode": b.decode_cycles, "overlap_int8": a.overlap_cycles, "overlap_ssvq": b.overlap_cycles,
            "cycles_int8": a.cycles, "cycles_ssvq": b.cycles, "bound_int8": a.bound, "bound_ssvq": b.bound,
            "pe_utilization_ssvq": a.macs / (b.cycles * config.macs_per_cycle) if a.macs else None,
            "speedup": a.cycles / b.cycles,
        })
    return rows


def _resolution(kind: str, shape: tuple[int, ...]) -> str:
    return "classifier" if kind == "linear" else f"{shape[2]}x{shape[3]}" if len(shape) == 4 else "-"


def speedup_breakdown(rows: list[dict], out_shapes: list[tuple[int, ...]]) -> list[dict]:
    """Cycles by stage (output resolution; the classifier apart) and each stage's share of the cycles saved."""
    saved_total = sum(r["cycles_int8"] - r["cycles_ssvq"] for r in rows)
    stages: dict[str, dict] = {}
    for r, shape in zip(rows, out_shapes, strict=True):
        s = stages.setdefault(_resolution(r["kind"], shape), {"cycles_int8": 0, "cycles_ssvq": 0, "layers": 0,
                                                              "dram_bound_int8": 0, "dram_bound_ssvq": 0})
        s["cycles_int8"] += r["cycles_int8"]
        s["cycles_ssvq"] += r["cycles_ssvq"]
        s["layers"] += 1
        s["dram_bound_int8"] += r["bound_int8"] == "dram"
        s["dram_bound_ssvq"] += r["bound_ssvq"] == "dram"
    return [{"stage": name, **s, "speedup": s["cycles_int8"] / s["cycles_ssvq"],
             "share_of_saved_cycles": (s["cycles_int8"] - s["cycles_ssvq"]) / saved_total if saved_total else 0.0}
            for name, s in stages.items()]


def plot(rows: list[dict], config: AcceleratorConfig, path: str | Path) -> None:
    """Two panels: per-layer cycles (int8, SSVQ, compute floor) and the roofline of the conv/linear layers."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(14, 10))
    x = list(range(len(rows)))
    top.bar([i - 0.2 for i in x], [r["cycles_int8"] for r in rows], width=0.4, label="int8", color="tab:gray")
    top.bar([i + 0.2 for i in x], [r["cycles_ssvq"] for r in rows], width=0.4, label="SSVQ", color="tab:blue")
    top.plot(x, [r["compute"] for r in rows], "k_", markersize=8, label="compute floor")
    top.set_yscale("log")
    top.set_xticks(x, [r["layer"] for r in rows], rotation=90, fontsize=6)
    top.set_ylabel("cycles")
    top.set_title(f"{config.name}: cycles per layer ({config.pe_rows}x{config.pe_cols} PEs, {config.clock_mhz:g} MHz, "
                  f"{config.dram_gbps:g} GB/s)")
    top.legend()

    peak, bw = config.macs_per_cycle, config.dram_bytes_per_cycle
    conv = [r for r in rows if r["macs"]]
    xs = [v for r in conv for v in (r["intensity_int8"], r["intensity_ssvq"]) if v]
    lo, hi = min(xs) / 2, max(xs) * 2
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    bottom.plot(grid, [min(peak, bw * g) for g in grid], "k-", label=f"roof: {peak} MAC/cycle, {bw:.3g} B/cycle")
    for key, marker, colour in (("int8", "o", "tab:gray"), ("ssvq", "x", "tab:blue")):
        bottom.scatter([r[f"intensity_{key}"] for r in conv], [r["macs"] / r[f"cycles_{key}"] for r in conv],
                       marker=marker, color=colour, label="SSVQ" if key == "ssvq" else key)
    bottom.set_xscale("log")
    bottom.set_yscale("log")
    bottom.set_xlabel("arithmetic intensity (MACs per DRAM byte)")
    bottom.set_ylabel("attained MACs per cycle")
    bottom.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
