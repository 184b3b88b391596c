"""The no-full-weight check passes on fused, scheduled kernels and fails on every unfused form: an unscheduled
fused function, a stand-alone decode at run time, and a decode folded into a constant at build time."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from tvm_helpers import conv_model, random_layer
from ssvq_deploy.export.decode_node import single_decode_model
from ssvq_deploy.tvm_backend.build import BuildError, prepare, x86_target
from ssvq_deploy.tvm_backend.check import MaterialisedWeightError, allocations, check_no_full_weight, lower_tir

TARGET = x86_target(1)
SHAPE = (32, 16, 1, 1)


@pytest.fixture(scope="module")
def layer():
    return random_layer(np.random.default_rng(5), 16, 8, SHAPE, edges=False)


def _model(layer):
    return conv_model(layer, (1, 16, 14, 14), (1, 32, 14, 14))


def test_passes_on_fused_scheduled_kernel_and_quotes_buffers(layer):
    lowered = prepare(_model(layer), {}, TARGET)
    result = check_no_full_weight(lowered.mod, TARGET, lowered.fusion.weight_shapes)
    (kernel,) = result.kernels
    assert result.ok and kernel.weight_shape == SHAPE and kernel.weight_numel == 512
    (decode,) = kernel.decode_buffers
    assert decode.shape == (128,) and decode.scope == "local"  # a tile of 8 output channels x 16 inputs
    assert max(a.numel for a in kernel.allocations) < 512


def test_fails_on_unscheduled_fused_function(layer):
    lowered = prepare(_model(layer), {}, TARGET, schedule=False)
    assert len(lowered.fusion.fused) == 1  # fused, but the decode block is not placed inside the channel loop
    full = r"buffer ssvq_decode\[512\] .*full weight \[32, 16, 1, 1\] has 512"
    with pytest.raises(MaterialisedWeightError, match=full):
        check_no_full_weight(lowered.mod, TARGET, lowered.fusion.weight_shapes)
    result = check_no_full_weight(lowered.mod, TARGET, lowered.fusion.weight_shapes, raise_error=False)
    assert not result.ok and result.to_dict()["kernels"][0]["max_buffer_numel"] == 512


def test_fails_on_standalone_decode_at_run_time(layer):
    model = single_decode_model(layer, constant_inputs=False)
    shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    lowered = prepare(model, shapes, TARGET, require_fused=False)
    with pytest.raises(MaterialisedWeightError, match="stand-alone decode remains"):
        check_no_full_weight(lowered.mod, TARGET, {SHAPE})


def test_fails_on_decode_folded_into_constant(layer):
    lowered = prepare(single_decode_model(layer), {}, TARGET, require_fused=False)
    with pytest.raises(MaterialisedWeightError, match=r"float32 constant of a packed weight's shape \[32, 16, 1, 1\]"):
        check_no_full_weight(lowered.mod, TARGET, {SHAPE})


def test_unfusable_consumer_is_a_build_error(layer):
    model = _model(layer)
    model.graph.node.append(helper.make_node("Relu", ["w.weight"], ["w_relu"]))  # a second, unfusable use
    model.graph.output.append(helper.make_tensor_value_info("w_relu", 1, list(SHAPE)))
    with pytest.raises(BuildError, match="feed ops the fusion pass does not handle"):
        prepare(model, {}, TARGET)


def test_allocations_reads_lowered_vector_buffers(layer):
    lowered = prepare(_model(layer), {}, TARGET)
    func = next(f for g, f in lowered.mod.functions_items() if g.name_hint in lowered.schedules)
    found = {a.name: a for f in lower_tir(func, TARGET) for a in allocations(f)}
    acc = found["ssvq_conv_local"]  # the accumulator tile: 8 channels x 2 rows, 14-lane vectors
    assert (acc.shape, acc.dtype, acc.numel) == ((16,), "float32x14", 224)
