"""Engine == independent integer reference, bit for bit, on randomized single layers: pointwise, depthwise (with
channel multiplier), strided, padded (asymmetric too), grouped, large-kernel, first-layer convs and linear layers;
SSVQ, VQ and int8 weights; negative BatchNorm scales; both requant conventions; PE arrays that do not divide the
layer; several seeds."""
import numpy as np
import pytest
from layers import CASES, Case, compiled_layer

from ssvq_deploy.emulator import AcceleratorConfig, AccumulatorOverflow, run_engine, run_reference

PE_ARRAYS = [AcceleratorConfig(pe_rows=32, pe_cols=32), AcceleratorConfig(pe_rows=5, pe_cols=3)]


def _assert_exact(network, x, config):
    engine = run_engine(network, x, config)[network.output]
    reference = run_reference(network, x)[network.output]
    assert engine.dtype == reference.dtype == np.int8
    assert engine.shape == reference.shape
    assert np.array_equal(engine, reference), f"{int((engine != reference).sum())} of {engine.size} differ"
    return engine


@pytest.mark.parametrize("case", list(CASES), ids=str)
@pytest.mark.parametrize("method", ["ssvq", "int8"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_engine_equals_reference(case, method, seed):
    mode = ("gemmlowp", "fp32")[seed % 2]
    network, x = compiled_layer(CASES[case], seed, method, mode, clip=seed == 2)
    y = _assert_exact(network, x, PE_ARRAYS[seed % 2])
    assert len(np.unique(y)) > 8  # a meaningful output, not a saturated constant


@pytest.mark.parametrize("case", ["depthwise", "grouped", "linear"])
def test_vq_layers(case):
    for mode in ("gemmlowp", "fp32"):
        network, x = compiled_layer(CASES[case], 7, "vq", mode)
        _assert_exact(network, x, PE_ARRAYS[1])


def test_without_batchnorm_and_odd_batch():
    network, x = compiled_layer(Case(9, 5, 3, 1, (1, 1, 1, 1), hw=(6, 7)), 3, "ssvq", bn=False, batch=3)
    _assert_exact(network, x, PE_ARRAYS[1])


def test_negative_batchnorm_scales_are_folded_into_sign_bits():
    network, _ = compiled_layer(CASES["pointwise"], 0, "ssvq")
    op = network.ops[0]
    assert op.weights.negate.any() and not op.weights.negate.all()
    assert (op.weight_scale > 0).all() and (op.requant.multiplier > 0).all()


def test_accumulator_overflow_is_detected():
    network, x = compiled_layer(CASES["linear"], 0, "int8")
    op = network.ops[0]
    big = type(op)(**{**vars(op), "bias": np.full_like(op.bias, 2 ** 31 - 10)})
    with pytest.raises(AccumulatorOverflow, match="layer"):
        run_engine(type(network)(**{**vars(network), "ops": (big,)}), np.full_like(x, 127), PE_ARRAYS[0])
