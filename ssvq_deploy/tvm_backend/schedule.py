"""Hand schedules (TensorIR) for the functions that FuseOps/FuseTIR make of our kernels; x86 AVX-512 first.

A fused function holds, in order: an optional ``ssvq_pad`` block, the weight's producer (``ssvq_decode`` in SSVQ
builds, a layout view ``ssvq_weight_view`` of a constant in fp32 builds, or nothing), the main block (annotations
``ssvq_kind`` and ``ssvq_template``, see kernels.py) and elementwise epilogue blocks (bias, BatchNorm as
multiply-add, ReLU6, residual add). Every template does the same things, for the fp32 and the SSVQ build alike:

1. inline the epilogue chain into its last block and compute it per register tile, so the conv result lives in a
   "local" accumulator tile and the output is written once;
2. tile the main block for registers (``Tiles``): ``rows`` = ``ot`` channels x ``yr`` rows x ``xw``-lane row
   vectors, the weight broadcast (pointwise on wide maps, depthwise); ``channels`` = ``ot`` channels as vectors x
   ``yr`` x ``xw`` pixels, inputs broadcast, weight tile read as [c, r, s, o] (first conv, 7x7 maps);
   ``dense`` = ``ot`` outputs x 16 partial sums over the reduction (rfactor);
3. SSVQ: ``compute_at`` the decode block under the output-channel tile loop, outside every spatial loop: each
   weight is decoded once per inference into a tile of ``ot`` output channels, and lowering sizes the decode buffer
   to that tile (``check.py`` proves that no buffer of the full weight remains);
4. parallelise the channel-tile loop when more than one thread is asked for.

Tiles come from :func:`default_tiles` (register budget of 32 zmm registers, divisors of the extents so no tile has a
tail) unless the caller passes tuned ones (``tune.py`` and its cache ``tuned/``).
"""
from __future__ import annotations

from dataclasses import dataclass

import tvm
from tvm import tirx
from tvm.s_tir import Schedule

from .decode import DECODE_BLOCK
from .kernels import KIND_ATTR, PAD_BLOCK, SPLIT_BLOCK, TEMPLATE_ATTR, WEIGHT_VIEW

SCHEDULED_ATTR = "ssvq_scheduled"  # PrimFunc attribute "<kind>/<template>:<tiles>", for reports


@dataclass(frozen=True)
class Tiles:
    """Register tile: ``ot`` output channels x ``yr`` output rows x ``xw`` output columns (dense: ``ot`` outputs)."""

    ot: int
    yr: int = 1
    xw: int = 1

    def key(self) -> str:
        return f"ot{self.ot}_yr{self.yr}_xw{self.xw}"

    @classmethod
    def parse(cls, key: str) -> "Tiles":
        parts = dict((p[:2], int(p[2:])) for p in key.split("_"))
        return cls(parts["ot"], parts["yr"], parts["xw"])


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in divisors(n) if d <= max(1, at_most))


def row_lanes(width: int) -> int:
    """Lanes of a row vector: a divisor of ``width`` of at most 16 (one zmm), wide ones first. Wider vectors
    (28 lanes) measured 10-30x slower: LLVM stops keeping the accumulators in registers."""
    for lanes in (16, 14, 12, 8, 7):
        if width % lanes == 0:
            return lanes
    return _largest_divisor(width, 16)


def channel_lanes(channels: int) -> int:
    return 16 if channels % 16 == 0 else 8 if channels % 8 == 0 else _largest_divisor(channels, 16)


def default_tiles(template: str, kind: str, out_channels: int, out_h: int = 1, out_w: int = 1) -> Tiles:
    """Heuristic register tiles (about 14-24 accumulator registers). A tile never spans every output channel
    (when there are at least two), so no decode buffer can hold the full weight."""
    most = max(1, out_channels // 2)
    if template == "dense":
        return Tiles(_largest_divisor(out_channels, min(16, most)))
    if template == "channels":
        lanes = _largest_divisor(out_channels, min(channel_lanes(out_channels), most))
        ot = lanes * _largest_divisor(out_channels // lanes, 2)
        ot = ot if ot <= most else lanes
        xw = _largest_divisor(out_w, 8)
        yr = _largest_divisor(out_h, 16 // (ot // lanes * xw))
        return Tiles(ot, yr, xw)
    xw = row_lanes(out_w)
    if kind == "depthwise":
        return Tiles(1, _largest_divisor(out_h, 8), xw)
    ot = _largest_divisor(out_channels, min(8, most))
    return Tiles(ot, _largest_divisor(out_h, 16 // ot if xw >= 14 else 24 // ot), xw)


def _root_blocks(sch: Schedule):
    return list(sch.get_child_blocks(sch.get_sblock("root")))


def _name(sch: Schedule, block) -> str:
    return sch.get(block).name_hint


def _by_name(sch: Schedule, name: str):
    return next((b for b in _root_blocks(sch) if _name(sch, b) == name), None)


def main_block(sch: Schedule):
    for block in _root_blocks(sch):
        annotations = sch.get(block).annotations
        if KIND_ATTR in annotations:
            return block, str(annotations[KIND_ATTR]), str(annotations[TEMPLATE_ATTR])
    return None, None, None


def _epilogue(sch: Schedule, main):
    """Inline every block after ``main`` into the last one and return it, with the accumulator buffer made "local"
    (a cache_write block takes the last block's place when ``main`` writes the function's output itself)."""
    blocks = _root_blocks(sch)
    names = [_name(sch, b) for b in blocks]
    after = blocks[names.index(_name(sch, main)) + 1:]
    for block in after[:-1]:
        sch.compute_inline(block)
    if not after:
        return sch.cache_write(main, 0, "local")
    sch.set_scope(main, 0, "local")
    return after[-1]


def _extent(sch: Schedule, loop) -> int:
    return int(sch.get(loop).extent)


def _finish_tile(sch: Schedule, out_block, at_loop, depth: int, lanes_last: bool = True) -> None:
    """Compute the output block per tile at ``at_loop`` (the ``depth``-th loop): unrolled, one loop vectorised."""
    sch.reverse_compute_at(out_block, at_loop, preserve_unit_loops=True)
    inner = sch.get_loops(out_block)[depth:]
    if not lanes_last:  # channels template: the tile's channel loop (split to register width) is the vector
        lanes = channel_lanes(_extent(sch, inner[1]))
        outer, vector = sch.split(inner[1], [None, lanes])
        sch.reorder(inner[0], outer, *inner[2:], vector)
        inner = sch.get_loops(out_block)[depth:]
    for loop in inner[:-1]:
        if _extent(sch, loop) > 1:
            sch.unroll(loop)
    if _extent(sch, inner[-1]) > 1:
        sch.vectorize(inner[-1])


def _producer_at(sch: Schedule, name: str, loop, depth: int, lanes: int = 16) -> None:
    """``compute_at`` the block ``name`` (pad or decode) at ``loop``, its buffer "local", inner loop vectorised."""
    block = _by_name(sch, name)
    if block is None:
        return
    sch.compute_at(block, loop, preserve_unit_loops=True)
    sch.set_scope(block, 0, "local")
    own = sch.get_loops(block)[depth:]
    fused = sch.fuse(*own) if name == DECODE_BLOCK else own[-1]
    extent = _extent(sch, fused)
    width = lanes if extent % lanes == 0 else _largest_divisor(extent, lanes)
    if width > 1:
        if width != extent:
            fused = sch.split(fused, [None, width])[1]
        sch.vectorize(fused)


def _pad_at(sch: Schedule, loop, depth: int) -> None:
    """The padded input tile at ``loop`` (the ``depth``-th loop): border zeros and interior copy as two blocks (no
    per-element branch, so both vectorise). Stride-2 depthwise kernels also get their column split here (even and
    odd columns apart, kernels.py), so every tap of the conv reads contiguous lanes."""
    split = _by_name(sch, SPLIT_BLOCK)
    if split is not None:
        sch.compute_at(split, loop, preserve_unit_loops=True)
        sch.set_scope(split, 0, "local")  # left scalar: LLVM vectorises the stride-2 gather better than TIR lanes
    pad = _by_name(sch, PAD_BLOCK)
    if pad is None:
        return
    sch.compute_at(pad, loop, preserve_unit_loops=True)
    sch.set_scope(pad, 0, "local")
    try:
        fill = sch.decompose_padding(pad, sch.get_loops(pad)[depth])
    except tvm.s_tir.ScheduleError:  # not a recognised padding pattern: keep one block
        fill = None
    for block in (fill, pad):
        if block is not None:
            _vectorize_inner(sch, block)


def _vectorize_inner(sch: Schedule, block) -> None:
    loop = sch.get_loops(block)[-1]
    extent = _extent(sch, loop)
    lanes = extent if extent <= 16 else row_lanes(extent)
    if lanes > 1:
        if lanes != extent:
            loop = sch.split(loop, [None, lanes])[1]
        sch.vectorize(loop)


def _decode_lanes(sch: Schedule) -> int:
    """One code's ``d`` weights per vector when d is a vector width (codebook row load + sign bits), else 16."""
    block = _by_name(sch, DECODE_BLOCK)
    d = int(sch.get(block).annotations[DECODE_BLOCK]) if block is not None else 16
    return d if d in (4, 8, 16) else 16


def _schedule_rows(sch: Schedule, main, kind: str, tiles: Tiles, threads: int) -> None:
    """Loops (n, o, y, x, red...) -> (oo, n, yo, xo, red..., oi, yi, xi) with xi the vector; depthwise keeps its
    taps inside the channel so each tap is one broadcast FMA per row vector."""
    out = _epilogue(sch, main)
    n, o, y, x, *red = sch.get_loops(main)
    oo, oi = sch.split(o, [None, tiles.ot])
    yo, yi = sch.split(y, [None, tiles.yr])
    xo, xi = sch.split(x, [None, tiles.xw])
    if kind == "depthwise":
        sch.reorder(oo, n, yo, xo, oi, *red, yi, xi)
        unrolled = red
    else:
        sch.reorder(oo, n, yo, xo, *red, oi, yi, xi)
        unrolled = red[1:]
    for loop in [*unrolled, oi, yi]:
        sch.unroll(loop)
    sch.vectorize(xi)
    _finish_tile(sch, out, xo, 4)
    _pad_at(sch, yo, 3)
    _producer_at(sch, DECODE_BLOCK, oo, 1, _decode_lanes(sch))
    if threads > 1:
        sch.parallel(oo)
    sch.decompose_reduction(main, red[0])


def _schedule_channels(sch: Schedule, main, tiles: Tiles, threads: int) -> None:
    """Loops (n, o, y, x, red...) -> (oo, n, yo, xo, red..., oj, yi, xi, ov) with ov the vector of channels."""
    view = _by_name(sch, WEIGHT_VIEW)
    if view is not None:  # fp32: the constant already is [c, r, s, o]
        sch.compute_inline(view)
    else:  # SSVQ: decode straight into a [c, r, s, o] tile
        sch.transform_layout(_by_name(sch, DECODE_BLOCK), ("write", 0), lambda o, c, r, s: (c, r, s, o))
    out = _epilogue(sch, main)
    # Accumulators with the channel vector innermost, so each one is a register, not a strided stack slot.
    sch.transform_layout(main, ("write", 0), lambda b, o, y, x: (b, y, x, o))
    n, o, y, x, *red = sch.get_loops(main)
    lanes = channel_lanes(tiles.ot)
    oo, oj, ov = sch.split(o, [None, tiles.ot // lanes, lanes])
    yo, yi = sch.split(y, [None, tiles.yr])
    xo, xi = sch.split(x, [None, tiles.xw])
    sch.reorder(oo, n, yo, xo, *red, oj, yi, xi, ov)
    for loop in [*red[1:], oj, yi, xi]:
        sch.unroll(loop)
    sch.vectorize(ov)
    _finish_tile(sch, out, xo, 4, lanes_last=False)
    _pad_at(sch, yo, 3)
    _producer_at(sch, DECODE_BLOCK, oo, 1, _decode_lanes(sch))
    if threads > 1:
        sch.parallel(oo)
    sch.decompose_reduction(main, red[0])


def _schedule_dense(sch: Schedule, main, tiles: Tiles, threads: int) -> None:
    """out[n, o] = sum_i x[n, i] w[o, i]: ``ot`` outputs per tile, 16 partial sums per output (rfactor)."""
    out = _epilogue(sch, main)
    n, o, i = sch.get_loops(main)
    lanes = 16 if _extent(sch, i) % 16 == 0 else 8 if _extent(sch, i) % 8 == 0 else 1
    oo, oi = sch.split(o, [None, tiles.ot])
    sch.reorder(oo, n, oi, i)
    partial = None
    if lanes > 1:
        _, ii = sch.split(i, [None, lanes])
        partial = sch.rfactor(ii, 2)  # partial[n, o, lane] over chunks of 16, then a 16-lane sum in ``main``
        oo, _, p_oi, p_io, p_ii = sch.get_loops(partial)
        sch.reorder(p_io, p_oi, p_ii)
        sch.unroll(p_oi)
        sch.vectorize(p_ii)
        sch.reverse_compute_at(main, sch.get_loops(partial)[1], preserve_unit_loops=True)
        sch.set_scope(partial, 0, "local")
    sch.reverse_compute_at(out, sch.get_loops(main)[1], preserve_unit_loops=True)
    _producer_at(sch, DECODE_BLOCK, oo, 1, _decode_lanes(sch))
    if threads > 1:
        sch.parallel(oo)
    if partial is not None:
        sch.decompose_reduction(partial, sch.get_loops(partial)[2])


def kernel_info(func: tirx.PrimFunc) -> tuple[str, str, list[int]] | None:
    """(kind, template, output shape [n, o, h, w] or [n, o]) of a function holding one of our kernels, else None."""
    if not isinstance(func, tirx.PrimFunc):
        return None
    sch = Schedule(func)
    main, kind, template = main_block(sch)
    if main is None:
        return None
    return kind, template, [int(s) for s in sch.get(main).writes[0].source.shape]


def schedule_function(func: tirx.PrimFunc, threads: int = 1, tiles: Tiles | None = None) -> tirx.PrimFunc:
    """Schedule one function holding one of our kernels (others are returned unchanged)."""
    info = kernel_info(func)
    if info is None:
        return func
    kind, template, shape = info
    tiles = tiles or default_tiles(template, kind, *shape[1:])
    sch = Schedule(func)
    main = main_block(sch)[0]
    if template == "dense":
        _schedule_dense(sch, main, tiles, threads)
    elif template == "channels":
        _schedule_channels(sch, main, tiles, threads)
    else:
        _schedule_rows(sch, main, kind, tiles, threads)
    return sch.mod["main"].with_attr(SCHEDULED_ATTR, f"{kind}/{template}:{tiles.key()}")


def schedule_module(mod: tvm.IRModule, threads: int = 1, tiles_for=None) -> tuple[tvm.IRModule, dict[str, str]]:
    """Schedule every kernel function of ``mod``; ``tiles_for(func)`` may return tuned tiles (or None).
    Returns the module and {function name: "<kind>/<template>:<tiles>"}."""
    updates, done = {}, {}
    for gvar, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc) and kernel_info(func) is not None:
            new = schedule_function(func, threads, tiles_for(func) if tiles_for else None)
            updates[gvar] = new
            done[gvar.name_hint] = str(new.attrs[SCHEDULED_ATTR])
    for gvar, func in updates.items():
        mod[gvar] = func
    return mod, done
