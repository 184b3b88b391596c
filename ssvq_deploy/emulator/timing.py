"""Cycles and DRAM traffic of a QuantizedNetwork on an AcceleratorConfig, layer by layer (docs/accelerator.md).

Per conv/linear layer:
  compute  = tiles * max(pixels, tile load) + pipeline fill: a tile is pe_rows reduction elements x pe_cols output
             channels, streamed over the output pixels; loading a tile's weights takes one cycle per PE row and
             hides behind the previous tile's stream when double buffering.
  decode   = weights / decode_weights_per_cycle (SSVQ/VQ only): the decode unit between weight SRAM and PE array.
  dram     = bytes / (bytes per cycle), every stream rounded up to whole bursts: weights as stored (int8, or packed
             indices + sign bits + int8 codebook), per-channel parameters, and activations that do not stay on chip.
  cycles   = prologue + max(compute, dram, decode) with double buffering (the prologue is the exposed DRAM latency
             plus the first tile's transfer and decode), else latency + dram + decode + compute.
Activations: a tensor stays in activation SRAM if it fits beside everything still live on chip; otherwise it is
written to DRAM and read back by its consumers (once, or once per weight block when the layer's weights do not fit
the weight SRAM and re-reading the input is cheaper than re-reading the weights).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError
from .config import AcceleratorConfig
from .network import PARAM_BYTES_PER_CHANNEL, CodebookWeights, QAdd, QConv, QuantizedNetwork


@dataclass(frozen=True)
class LayerTiming:
    """One op's cost. Bytes are DRAM bytes (burst-rounded); cycles are accelerator clock cycles."""

    name: str
    kind: str  # conv, dwconv, linear, add, pool
    weights: str | None  # int8, ssvq, vq; None for add / pool
    macs: int
    weight_bytes: int  # weights as stored (indices + signs + codebook for SSVQ/VQ)
    param_bytes: int  # bias, requant multiplier and shift per output channel
    act_read_bytes: int
    act_write_bytes: int
    weight_blocks: int  # passes over the weight SRAM
    compute_cycles: int
    decode_cycles: int
    dram_cycles: int
    prologue_cycles: int  # exposed before the steady state: DRAM latency (+ first tile when double buffering)
    overlap_cycles: int  # cycles saved by overlapping DRAM, decode and compute (serial sum minus cycles)
    cycles: int
    input_on_chip: bool
    output_on_chip: bool

    @property
    def dram_bytes(self) -> int:
        return self.weight_bytes + self.param_bytes + self.act_read_bytes + self.act_write_bytes

    @property
    def bound(self) -> str:
        """What sets the layer's steady state: compute, dram or decode."""
        parts = {"compute": self.compute_cycles, "dram": self.dram_cycles, "decode": self.decode_cycles}
        return max(parts, key=parts.get)


@dataclass(frozen=True)
class NetworkTiming:
    layers: tuple[LayerTiming, ...]
    clock_mhz: float

    @property
    def cycles(self) -> int:
        return sum(l.cycles for l in self.layers)

    @property
    def latency_ms(self) -> float:
        return self.cycles / (self.clock_mhz * 1e3)

    @property
    def dram_bytes(self) -> int:
        return sum(l.dram_bytes for l in self.layers)

    def bytes_by_kind(self) -> dict[str, int]:
        return {"weights": sum(l.weight_bytes for l in self.layers),
                "params": sum(l.param_bytes for l in self.layers),
                "activations": sum(l.act_read_bytes + l.act_write_bytes for l in self.layers)}


def _bursts(nbytes: int, burst: int) -> int:
    return -(-nbytes // burst) * burst if nbytes > 0 else 0


def _elements(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


class _ActivationPlan:
    """Which tensors stay in activation SRAM: greedy, in execution order, freeing a tensor after its last use."""

    def __init__(self, network: QuantizedNetwork, capacity: int):
        self.sizes = {name: _elements(shape) for name, shape in network.shapes.items()}
        self.last_use: dict[str, int] = {}
        for i, op in enumerate(network.ops):
            for name in _inputs(op):
                self.last_use[name] = i
        self.output = network.output  # always written to DRAM, for the host
        self.capacity = capacity
        self.on_chip: set[str] = set()  # the network input arrives in DRAM

    def place(self, i: int, op) -> tuple[dict[str, bool], bool]:
        """({input: on chip}, output kept on chip) for op ``i``; then frees the tensors op ``i`` read last."""
        inputs = {name: name in self.on_chip for name in _inputs(op)}
        live = sum(self.sizes[n] for n in self.on_chip)  # includes this op's on-chip inputs, still being read
        keep = op.output != self.output and op.output in self.last_use \
            and live + self.sizes[op.output] <= self.capacity
        if keep:
            self.on_chip.add(op.output)
        self.on_chip = {n for n in self.on_chip if self.last_use[n] > i}
        return inputs, keep


def _inputs(op) -> tuple[str, ...]:
    return op.inputs if isinstance(op, QAdd) else (op.input,)


def _conv_shape(op: QConv, network: QuantizedNetwork) -> tuple[int, int]:
    """(output pixels at batch 1, reduction length per output)."""
    out = network.shapes[op.output]
    pixels = 1 if op.linear else out[2] * out[3]
    return pixels, op.numel // op.out_channels


def _conv_timing(op: QConv, network: QuantizedNetwork, cfg: AcceleratorConfig, input_on_chip: bool,
                 output_on_chip: bool) -> LayerTiming:
    burst, bw = cfg.dram_burst_bytes, cfg.dram_bytes_per_cycle
    rows, cols = cfg.pe_rows, cfg.pe_cols
    pixels, reduction = _conv_shape(op, network)
    kh, kw = op.kernel
    if op.depthwise:
        tile_rows, tile_cols = min(kh * kw, rows), min(op.out_channels, cols)
        tiles = math.ceil(op.out_channels / cols) * math.ceil(kh * kw / rows)
        kind = "dwconv"
    else:
        per_group = op.out_channels // op.group
        tile_rows, tile_cols = min(reduction, rows), min(per_group, cols)
        tiles = op.group * math.ceil(per_group / cols) * math.ceil(reduction / rows)
        kind = "linear" if op.linear else "conv"
    per_tile = max(pixels, tile_rows) if cfg.double_buffering else pixels + tile_rows
    compute = tiles * per_tile + rows + cols

    w = op.weights
    if isinstance(w, CodebookWeights):
        if w.codebook_bytes * (2 if cfg.double_buffering else 1) > cfg.codebook_sram_bytes:
            raise ConfigError(f"{op.name}: the {w.codebook_bytes}-byte codebook does not fit codebook_sram_bytes="
                              f"{cfg.codebook_sram_bytes}" + (" (two banks)" if cfg.double_buffering else ""))
        weight_bytes = sum(_bursts(b, burst) for b in (w.index_bytes, w.sign_bytes, w.codebook_bytes))
        decode = math.ceil(op.numel / cfg.decode_weights_per_cycle)
    else:
        weight_bytes = _bursts(w.stored_bytes, burst)
        decode = 0
    param_bytes = _bursts(op.out_channels * PARAM_BYTES_PER_CHANNEL, burst)

    usable_sram = cfg.weight_sram_kib * 1024 // (2 if cfg.double_buffering else 1)
    blocks = max(1, math.ceil(w.stored_bytes / usable_sram))
    in_bytes = _elements(network.shapes[op.input])
    act_read = 0 if input_on_chip else _bursts(in_bytes, burst)
    if not input_on_chip and blocks > 1:
        # weights outer (re-read the input per weight block) or pixels outer (re-read the weights per input chunk)
        chunks = math.ceil(in_bytes / (cfg.act_sram_kib * 1024 // 2))
        reread_input, reread_weights = (blocks - 1) * act_read, (chunks - 1) * weight_bytes
        if reread_input <= reread_weights:
            act_read += reread_input
        else:
            weight_bytes += reread_weights
    act_write = 0 if output_on_chip else _bursts(_elements(network.shapes[op.output]), burst)
    dram_bytes = weight_bytes + param_bytes + act_read + act_write
    dram = math.ceil(dram_bytes / bw)

    tile_weights = min(op.numel, tile_rows * tile_cols)
    first_tile_dram = math.ceil((w.stored_bytes * tile_weights / op.numel + param_bytes
                                 + (w.codebook_bytes if isinstance(w, CodebookWeights) else 0)) / bw)
    first_tile_decode = math.ceil(tile_weights / cfg.decode_weights_per_cycle) if decode else 0
    latency = math.ceil(cfg.dram_latency_cycles)
    serial = latency + dram + decode + compute
    if cfg.double_buffering:
        prologue = latency + first_tile_dram + first_tile_decode
        cycles = prologue + max(compute, dram - first_tile_dram, decode - first_tile_decode)
    else:
        prologue, cycles = latency, serial
    macs = pixels * op.out_channels * reduction
    return LayerTiming(op.name, kind, w.kind, macs, weight_bytes, param_bytes, act_read, act_write, blocks,
                       compute, decode, dram, prologue, serial - cycles, cycles, input_on_chip, output_on_chip)


def _vector_timing(op, network: QuantizedNetwork, cfg: AcceleratorConfig, inputs_on_chip: dict[str, bool],
                   output_on_chip: bool) -> LayerTiming:
    burst, bw = cfg.dram_burst_bytes, cfg.dram_bytes_per_cycle
    reads = {n: _elements(network.shapes[n]) for n in _inputs(op)}
    elements = max(reads.values())
    act_read = sum(_bursts(b, burst) for n, b in reads.items() if not inputs_on_chip[n])
    act_write = 0 if output_on_chip else _bursts(_elements(network.shapes[op.output]), burst)
    compute = math.ceil(elements / cfg.vector_lanes)
    dram = math.ceil((act_read + act_write) / bw)
    latency = math.ceil(cfg.dram_latency_cycles) if dram else 0
    cycles = latency + (max(compute, dram) if cfg.double_buffering else compute + dram)
    return LayerTiming(op.name, "add" if isinstance(op, QAdd) else "pool", None, 0, 0, 0, act_read, act_write, 0,
                       compute, 0, dram, latency, latency + compute + dram - cycles, cycles,
                       all(inputs_on_chip.values()), output_on_chip)


def estimate(network: QuantizedNetwork, cfg: AcceleratorConfig) -> NetworkTiming:
    """Per-op cycles and DRAM bytes of one inference at batch 1."""
    plan = _ActivationPlan(network, cfg.act_sram_kib * 1024)
    layers = []
    for i, op in enumerate(network.ops):
        inputs_on_chip, output_on_chip = plan.place(i, op)
        if isinstance(op, QConv):
            layers.append(_conv_timing(op, network, cfg, inputs_on_chip[op.input], output_on_chip))
        else:
            layers.append(_vector_timing(op, network, cfg, inputs_on_chip, output_on_chip))
    return NetworkTiming(tuple(layers), cfg.clock_mhz)
