"""Timing and traffic model sanity: bytes per weight format, monotonic in bandwidth, compute-bound layers ignore
bandwidth, decode can bound, serial without double buffering, activation spills, configs validated."""
import dataclasses
import math

import pytest
from layers import CASES, compiled_layer

from ssvq_deploy.emulator import PRESETS, AcceleratorConfig, estimate, preset
from ssvq_deploy.emulator.network import PARAM_BYTES_PER_CHANNEL, CodebookWeights
from ssvq_deploy.errors import ConfigError

BURST = 1  # byte-exact accounting unless a test says otherwise


def test_ssvq_weight_bytes_are_index_and_sign_bits(mobilenet_networks):
    config = AcceleratorConfig(dram_burst_bytes=BURST)
    ssvq = estimate(mobilenet_networks[("ssvq", "gemmlowp")], config)
    int8 = estimate(mobilenet_networks[("int8", "gemmlowp")], config)
    convs = [op for op in mobilenet_networks[("ssvq", "gemmlowp")].ops if hasattr(op, "weights")]
    for op, a, b in zip(convs, [l for l in int8.layers if l.weights], [l for l in ssvq.layers if l.weights]):
        layer = op.weights.layer
        assert isinstance(op.weights, CodebookWeights)
        index_bytes = math.ceil(layer.numel // layer.d * layer.index_bits / 8)
        assert b.weight_bytes == index_bytes + math.ceil(layer.numel / 8) + layer.k * layer.d  # int8 codebook
        assert a.weight_bytes == layer.numel  # int8: one byte per weight
        assert a.param_bytes == b.param_bytes == op.out_channels * PARAM_BYTES_PER_CHANNEL
    n = sum(op.numel for op in convs)
    assert int8.bytes_by_kind()["weights"] == n == 3_469_760
    assert ssvq.bytes_by_kind()["weights"] == n * 1.5 / 8 + 53 * 16 * 8  # 1.5 bits per weight + int8 codebooks


@pytest.mark.parametrize("name", list(PRESETS))
def test_more_bandwidth_never_costs_cycles(mobilenet_networks, name):
    base = preset(name)
    for build in ("int8", "ssvq"):
        network = mobilenet_networks[(build, "gemmlowp")]
        slow, fast = estimate(network, base), estimate(network, base.replace(dram_gbps=2 * base.dram_gbps))
        assert fast.cycles < slow.cycles
        for a, b in zip(slow.layers, fast.layers):
            assert b.cycles <= a.cycles, a.name
            assert b.dram_bytes == a.dram_bytes  # bandwidth changes time, never traffic


def test_compute_bound_layer_ignores_bandwidth(mobilenet_networks):
    network = mobilenet_networks[("ssvq", "gemmlowp")]
    base = preset("paper_edge")
    slow, fast = estimate(network, base), estimate(network, base.replace(dram_gbps=4 * base.dram_gbps))
    compute_bound = [(a, b) for a, b in zip(slow.layers, fast.layers) if a.bound == "compute" and a.macs]
    assert len(compute_bound) > 10
    for a, b in compute_bound:
        assert a.compute_cycles == b.compute_cycles
        assert a.cycles - a.prologue_cycles == b.cycles - b.prologue_cycles == a.compute_cycles, a.name


def test_ssvq_is_faster_only_where_dram_bound(mobilenet_networks):
    config = preset("paper_edge")
    int8 = estimate(mobilenet_networks[("int8", "gemmlowp")], config)
    ssvq = estimate(mobilenet_networks[("ssvq", "gemmlowp")], config)
    assert ssvq.dram_bytes < int8.dram_bytes / 3 and ssvq.cycles < int8.cycles
    for a, b in zip(int8.layers, ssvq.layers):
        assert a.compute_cycles == b.compute_cycles  # same PE array, same tiles
        if a.bound == "compute":
            assert b.cycles <= a.cycles and a.cycles - b.cycles <= a.prologue_cycles


def test_decode_unit_can_be_the_bottleneck():
    network, _ = compiled_layer(CASES["linear_wide"], 0, "ssvq")
    slow_decoder = AcceleratorConfig(decode_weights_per_cycle=1)
    layer = estimate(network, slow_decoder).layers[0]
    assert layer.decode_cycles == 100 * 160 and layer.bound == "decode"
    assert estimate(network, AcceleratorConfig()).layers[0].bound != "decode"
    int8, _ = compiled_layer(CASES["linear_wide"], 0, "int8")
    assert estimate(int8, slow_decoder).layers[0].decode_cycles == 0  # int8 weights bypass the decode unit


def test_double_buffering_overlaps_and_serial_adds_up(mobilenet_networks):
    network = mobilenet_networks[("ssvq", "gemmlowp")]
    overlapped = estimate(network, preset("paper_edge"))
    serial = estimate(network, preset("paper_edge").replace(double_buffering=False))
    assert serial.cycles > overlapped.cycles
    for layer in serial.layers:
        assert layer.overlap_cycles == 0
        assert layer.cycles == layer.prologue_cycles + layer.compute_cycles + layer.dram_cycles + layer.decode_cycles
    assert all(l.overlap_cycles >= 0 for l in overlapped.layers)


def test_activations_spill_only_when_sram_is_small(mobilenet_networks):
    network = mobilenet_networks[("int8", "gemmlowp")]
    big = estimate(network, AcceleratorConfig(act_sram_kib=1 << 16, dram_burst_bytes=BURST))
    tiny = estimate(network, AcceleratorConfig(act_sram_kib=1, weight_sram_kib=1 << 16, dram_burst_bytes=BURST))
    shapes = network.shapes
    # everything on chip: DRAM sees the input image once and the logits once
    assert big.bytes_by_kind()["activations"] == math.prod(shapes[network.input]) + 1000
    # nothing fits: every op reads its inputs from DRAM and writes its output back
    expected = sum(sum(math.prod(shapes[n]) for n in (op.inputs if hasattr(op, "inputs") else (op.input,)))
                   + math.prod(shapes[op.output]) for op in network.ops)
    assert tiny.bytes_by_kind()["activations"] == expected
    assert tiny.cycles > big.cycles


def test_activation_traffic_is_the_same_for_both_builds(mobilenet_networks):
    config = preset("lpddr4_soc")
    int8 = estimate(mobilenet_networks[("int8", "gemmlowp")], config)
    ssvq = estimate(mobilenet_networks[("ssvq", "gemmlowp")], config)
    assert int8.bytes_by_kind()["activations"] == ssvq.bytes_by_kind()["activations"]


def test_weights_larger_than_sram_are_blocked():
    network, _ = compiled_layer(CASES["linear_wide"], 0, "int8")
    layer = estimate(network, AcceleratorConfig(weight_sram_kib=2)).layers[0]
    assert layer.weight_blocks == math.ceil(100 * 160 / 1024)


@pytest.mark.parametrize("field, value, match", [
    ("pe_rows", 0, "pe_rows must be a positive integer, got 0"),
    ("pe_cols", 2.5, "pe_cols must be a positive integer"),
    ("dram_gbps", -1.0, "dram_gbps must be > 0, got -1.0"),
    ("clock_mhz", 0, "clock_mhz must be > 0"),
    ("dram_latency_ns", -5, "dram_latency_ns must be >= 0"),
    ("double_buffering", True, None),
])
def test_config_validation(field, value, match):
    if match is None:
        assert getattr(AcceleratorConfig(**{field: value}), field) == value
        return
    with pytest.raises(ConfigError, match=match):
        AcceleratorConfig(**{field: value})


def test_presets():
    assert set(PRESETS) == {"paper_edge", "lpddr4_soc"}
    for name, config in PRESETS.items():
        assert config.name == name and config.description and dataclasses.is_dataclass(config)
    assert preset("lpddr4_soc").dram_bytes_per_cycle == pytest.approx(7.7 / 0.8)
    with pytest.raises(ConfigError, match="unknown accelerator preset 'tpu'.*paper_edge, lpddr4_soc"):
        preset("tpu")


def test_codebook_must_fit_its_sram():
    network, _ = compiled_layer(CASES["linear_wide"], 0, "ssvq")
    with pytest.raises(ConfigError, match="codebook does not fit codebook_sram_bytes=8"):
        estimate(network, AcceleratorConfig(codebook_sram_bytes=8))
