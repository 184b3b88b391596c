"""The accelerator the emulator models (docs/accelerator.md), as one validated frozen config, and named presets.

Weight path: DRAM -> weight SRAM (int8 weights, or packed indices + sign bits) -> [SSVQ: decode unit with the
layer's int8 codebook] -> PE array of ``pe_rows x pe_cols`` int8 x int8 -> int32 MACs (weight-stationary: rows
take the reduction axis, columns the output channels) -> requantisation -> activation SRAM or DRAM.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class AcceleratorConfig:
    """One accelerator. Every size is validated on construction; a bad value is named in the error."""

    name: str = "custom"
    pe_rows: int = 32  # reduction lanes: input channels (x kernel taps) consumed per cycle
    pe_cols: int = 32  # output channels produced per cycle
    clock_mhz: float = 1000.0
    dram_gbps: float = 4.0  # sustained DRAM bandwidth the accelerator gets, 1e9 bytes/s
    dram_burst_bytes: int = 64  # every DRAM transfer is a whole number of bursts
    dram_latency_ns: float = 100.0  # first-data latency, exposed once per layer
    weight_sram_kib: int = 256  # holds a layer's weights as stored (int8, or packed indices + signs)
    act_sram_kib: int = 2048  # activations that fit stay on chip between layers
    codebook_sram_bytes: int = 4096  # int8 codebooks, k*d bytes per layer (two banks when double buffering)
    decode_weights_per_cycle: int = 64  # SSVQ decode unit throughput: int8 weights out per cycle
    vector_lanes: int = 32  # elementwise unit (residual Add, global pooling), int8 elements per cycle
    double_buffering: bool = True  # overlap DRAM transfer, decode and compute tile by tile
    description: str = ""

    def __post_init__(self):
        for field in ("pe_rows", "pe_cols", "dram_burst_bytes", "weight_sram_kib", "act_sram_kib",
                      "codebook_sram_bytes", "decode_weights_per_cycle", "vector_lanes"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"accelerator {self.name}: {field} must be a positive integer, got {value!r}")
        for field in ("clock_mhz", "dram_gbps"):
            value = getattr(self, field)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ConfigError(f"accelerator {self.name}: {field} must be > 0, got {value!r}")
        if not isinstance(self.dram_latency_ns, (int, float)) or self.dram_latency_ns < 0:
            raise ConfigError(f"accelerator {self.name}: dram_latency_ns must be >= 0, got {self.dram_latency_ns!r}")

    @property
    def macs_per_cycle(self) -> int:
        return self.pe_rows * self.pe_cols

    @property
    def dram_bytes_per_cycle(self) -> float:
        return self.dram_gbps * 1e9 / (self.clock_mhz * 1e6)

    @property
    def dram_latency_cycles(self) -> float:
        return self.dram_latency_ns * self.clock_mhz / 1e3

    @property
    def ridge_macs_per_byte(self) -> float:
        """Arithmetic intensity (MACs per DRAM byte) above which a layer is compute-bound."""
        return self.macs_per_cycle / self.dram_bytes_per_cycle

    def replace(self, **changes) -> "AcceleratorConfig":
        """A copy with fields replaced (validated again)."""
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, AcceleratorConfig] = {
    "paper_edge": AcceleratorConfig(
        name="paper_edge", pe_rows=32, pe_cols=32, clock_mhz=1000.0, dram_gbps=4.0, dram_burst_bytes=64,
        dram_latency_ns=100.0, weight_sram_kib=256, act_sram_kib=2048, codebook_sram_bytes=4096,
        decode_weights_per_cycle=64, vector_lanes=32, double_buffering=True,
        description="paper-like edge NPU: 1024 int8 MACs at 1 GHz (2 TOPS) behind a 4 GB/s DRAM port; 2 MiB of "
                    "activation SRAM keeps MobileNetV2's 224x224 activations on chip, so DRAM carries weights "
                    "only: the memory-access regime the paper's 3x claim is about"),
    "lpddr4_soc": AcceleratorConfig(
        name="lpddr4_soc", pe_rows=32, pe_cols=32, clock_mhz=800.0, dram_gbps=7.7, dram_burst_bytes=64,
        dram_latency_ns=150.0, weight_sram_kib=256, act_sram_kib=512, codebook_sram_bytes=4096,
        decode_weights_per_cycle=64, vector_lanes=32, double_buffering=True,
        description="NPU in an LPDDR4 edge SoC: 1024 int8 MACs at 800 MHz; LPDDR4-3200 x32 (12.8 GB/s peak) of "
                    "which the NPU sustains 60% (7.7 GB/s) next to the CPU and display; 512 KiB activation "
                    "SRAM, so the early high-resolution activations spill to DRAM"),
}


def preset(name: str) -> AcceleratorConfig:
    """The preset ``name``; raises ConfigError listing the available ones."""
    if name not in PRESETS:
        raise ConfigError(f"unknown accelerator preset {name!r}; available: {', '.join(PRESETS)}")
    return PRESETS[name]
