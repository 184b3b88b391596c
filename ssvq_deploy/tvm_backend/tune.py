"""A small tile tuner: for each kernel, time a handful of register tiles of its schedule template and keep the
fastest in a JSON cache in the repo (``tuned/<mcpu>-t<threads>.json``), so later builds are reproducible without
tuning. Builds without a cache entry use :func:`schedule.default_tiles`.

Kernels are keyed by what the schedule depends on (kind, template, weight source, shapes, strides), so the fp32 and
the SSVQ build are tuned separately, each for itself. Timing is the minimum over repeats of the kernel alone: the
fastest run is the least disturbed one on a shared machine.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Callable

import numpy as np
import tvm
from tvm.s_tir import Schedule

from ..atomic import write_text
from .decode import DECODE_BLOCK
from .kernels import STRIDE_ATTR
from .schedule import Tiles, channel_lanes, default_tiles, divisors, kernel_info, main_block, schedule_function

log = logging.getLogger(__name__)
CACHE_DIR = Path(__file__).resolve().parent / "tuned"


def cache_path(mcpu: str, threads: int) -> Path:
    return CACHE_DIR / f"{mcpu}-t{threads}.json"


def kernel_key(func: tvm.tirx.PrimFunc) -> str | None:
    """kind/template/weight source/input, weight and output shapes/strides of the kernel in ``func``, or None."""
    info = kernel_info(func)
    if info is None:
        return None
    kind, template, out_shape = info
    sch = Schedule(func)
    main = main_block(sch)[0]
    stmt = sch.get(main)
    reads = [[int(s) for s in r.source.shape] for r in stmt.reads]
    decode = next((b for b in sch.get_child_blocks(sch.get_sblock("root"))
                   if DECODE_BLOCK in sch.get(b).annotations), None)
    source = f"ssvq-d{int(sch.get(decode).annotations[DECODE_BLOCK])}" if decode is not None else "fp32"
    strides = [int(s) for s in stmt.annotations[STRIDE_ATTR]] if STRIDE_ATTR in stmt.annotations else []
    return f"{kind}/{template}/{source}/reads{reads}/out{out_shape}/s{strides}"


def candidates(template: str, kind: str, out_shape: list[int], limit: int = 8) -> list[Tiles]:
    """The default tile first, then register-budget variations (no tail, never every output channel)."""
    out_channels, *spatial = out_shape[1:]
    h, w = (spatial + [1, 1])[:2]
    most = max(1, out_channels // 2)
    found = [default_tiles(template, kind, out_channels, h, w)]
    if template == "dense":
        options = [Tiles(ot) for ot in divisors(out_channels) if 4 <= ot <= min(32, most)]
    elif template == "channels":
        lanes = channel_lanes(out_channels)
        options = [Tiles(ot, yr, xw) for ot in (lanes, 2 * lanes, 3 * lanes) if out_channels % ot == 0 and ot <= most
                   for xw in divisors(w) if xw <= 8 for yr in divisors(h)
                   if 8 <= ot // lanes * yr * xw <= 24]
    elif kind == "depthwise":
        options = [Tiles(1, yr, xw) for xw in divisors(w) if 7 <= xw <= 16 for yr in divisors(h) if 2 <= yr <= 16]
    else:
        options = [Tiles(ot, yr, xw) for ot in divisors(out_channels) if 4 <= ot <= min(16, most)
                   for xw in divisors(w) if 7 <= xw <= 16 for yr in divisors(h)
                   if 8 <= ot * yr * math.ceil(xw / 16) <= 24]
    # Spread the sample over the options instead of taking the first few (they differ in one dimension only).
    step = max(1, len(options) // max(1, limit - 1))
    for tiles in options[::step]:
        if tiles not in found and len(found) < limit:
            found.append(tiles)
    return found


def _random_args(func: tvm.tirx.PrimFunc) -> list:
    rng = np.random.default_rng(0)
    args = []
    for param in func.params:
        shape, dtype = [int(s) for s in param.shape], str(param.dtype)
        array = rng.uniform(-1, 1, shape) if dtype.startswith("float") else rng.integers(0, 256, shape)
        args.append(tvm.runtime.tensor(np.abs(array).astype(dtype) if dtype == "float16" else array.astype(dtype)))
    return args


def time_kernel(func: tvm.tirx.PrimFunc, target: tvm.target.Target, args: list, repeat: int = 7) -> float:
    """Minimum over ``repeat`` repeats of the mean of 10 runs, in ms, of ``func`` compiled alone."""
    lib = tvm.compile(func.with_attr("global_symbol", "kernel"), target)
    return min(lib.mod.time_evaluator("kernel", tvm.cpu(), number=10, repeat=repeat)(*args).results) * 1e3


def tune_module(mod: tvm.IRModule, target: tvm.target.Target, threads: int = 1, limit: int = 8,
                progress: Callable[[str], None] | None = None) -> dict[str, dict]:
    """Time up to ``limit`` tiles for every distinct kernel of ``mod`` (fused, not yet scheduled)."""
    results: dict[str, dict] = {}
    for gvar, func in mod.functions_items():
        key = kernel_key(func) if isinstance(func, tvm.tirx.PrimFunc) else None
        if key is None or key in results:
            continue
        kind, template, out_shape = kernel_info(func)
        args = _random_args(func)
        timings = {}
        for tiles in candidates(template, kind, out_shape, limit):
            try:
                timings[tiles.key()] = time_kernel(schedule_function(func, threads, tiles), target, args)
            except (tvm.error.TVMError, tvm.s_tir.ScheduleError) as exc:  # a tile the template cannot take
                log.debug("%s %s: %s", key, tiles.key(), exc)
        best = min(timings, key=timings.get)
        default = default_tiles(template, kind, *out_shape[1:]).key()
        results[key] = {"tiles": best, "ms": round(timings[best], 5), "default": default,
                        "default_ms": round(timings.get(default, float("nan")), 5), "tried": len(timings)}
        if progress:
            progress(f"{gvar.name_hint}: {best} {timings[best]:.4f} ms (default {default} "
                     f"{timings.get(default, float('nan')):.4f} ms, {len(timings)} tried)")
    return results


def save_cache(path: str | Path, entries: dict[str, dict], target_config: dict) -> None:
    """Merge ``entries`` into the cache file at ``path``."""
    path = Path(path)
    data = load_cache(path)
    data.setdefault("entries", {}).update(entries)
    data.update({"tvm_version": tvm.__version__, "target": target_config,
                 "note": "tile tuner cache (ssvq_deploy/tvm_backend/tune.py); min-of-repeats kernel timings, ms"})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def load_cache(path: str | Path) -> dict:
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else {}


def tiles_from_cache(path: str | Path) -> Callable[[tvm.tirx.PrimFunc], Tiles | None]:
    """A ``tiles_for`` hook for ``build.prepare``: the cached tiles of a kernel, or None (default tiles)."""
    entries = load_cache(path).get("entries", {})

    def tiles_for(func: tvm.tirx.PrimFunc) -> Tiles | None:
        entry = entries.get(kernel_key(func) or "")
        return Tiles.parse(entry["tiles"]) if entry else None
    return tiles_for
