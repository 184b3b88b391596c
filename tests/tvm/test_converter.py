"""SSVQDecode -> Relax converter: TVM's decode is bit-exact with the golden decoder on random k, d and shapes, for
constant and run-time inputs; bad nodes are rejected naming the node; TVM's own files are untouched."""
from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
import tvm
from onnx import helper, numpy_helper
from tvm.relax.frontend.onnx import from_onnx, onnx_frontend

from tvm_helpers import assert_bit_exact, random_layer
from ssvq_deploy.export.decode_node import OP_TYPE, single_decode_model
from ssvq_deploy.tvm_backend.build import build_onnx, run_executable
from ssvq_deploy.tvm_backend.converter import ConversionError, import_onnx, ssvq_converters

NODE = "w.decode"


def _shape(rng, d, kind):
    if kind == "conv":
        shape = [int(rng.integers(1, 20)), int(rng.integers(1, 10)), *([int(rng.choice([1, 3]))] * 2)]
    elif kind == "linear":
        shape = [int(rng.integers(1, 48)), int(rng.integers(1, 80))]
    else:  # odd 1-D..3-D sizes, so N is rarely a multiple of 8 and codes straddle bytes
        shape = [int(rng.integers(0, 7)) * 2 + 1 for _ in range(int(rng.integers(1, 4)))]
    shape[0] *= d // math.gcd(math.prod(shape), d)
    return tuple(shape)


# Every bit width 1..16 once, d 1..16 spread over them, each (method, codebook dtype, constant) combination.
_COMBOS = [("ssvq", np.float16, True), ("vq", np.float32, False), ("ssvq", np.float32, False), ("vq", np.float16, True)]
_CASES = [(bits, 1 + (5 * bits + 3) % 16, ["conv", "linear", "odd"][bits % 3], *_COMBOS[bits % 4])
          for bits in range(1, 17)]


@pytest.mark.parametrize("bits,d,kind,method,codebook_dtype,constant", _CASES,
                         ids=[f"k{1 << b}-d{d}-{kind}-{m}-{np.dtype(t).name}-{'const' if c else 'feed'}"
                              for b, d, kind, m, t, c in _CASES])
def test_decode_bit_exact_vs_golden(bits, d, kind, method, codebook_dtype, constant):
    rng = np.random.default_rng(100 * bits + d)
    layer = random_layer(rng, 1 << bits, d, _shape(rng, d, kind), method == "ssvq")
    model = single_decode_model(layer, codebook_dtype, constant_inputs=constant)
    feeds = [] if constant else [layer.codebook.astype(codebook_dtype), layer.indices] + (
        [layer.signs] if layer.signs is not None else [])
    shapes = {} if constant else {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim]
                                  for i in model.graph.input}
    executable, lowered = build_onnx(model, shapes, require_fused=False)
    assert lowered.fusion.fused == []  # nothing to fuse into: the stand-alone decode runs
    assert_bit_exact(run_executable(executable, *feeds)[0], layer)


def test_converter_emits_call_tir_of_tagged_decode_function():
    layer = random_layer(np.random.default_rng(0), 16, 8, (8, 16, 1, 1))
    mod = import_onnx(single_decode_model(layer))
    decodes = [f for _, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)
               and f.attrs is not None and "ssvq_decode" in f.attrs]
    assert len(decodes) == 1
    info = decodes[0].attrs["ssvq_decode"]
    assert (int(info["k"]), int(info["d"]), [int(s) for s in info["shape"]]) == (16, 8, [8, 16, 1, 1])
    assert "R.call_tir" in mod["main"].script()


def test_registration_is_scoped_and_tvm_is_untouched():
    model = single_decode_model(random_layer(np.random.default_rng(1), 4, 2, (6, 4)))
    original = onnx_frontend._get_convert_map
    with pytest.raises(tvm.error.OpNotImplemented, match=OP_TYPE):
        from_onnx(model)
    with ssvq_converters():
        assert OP_TYPE in onnx_frontend._get_convert_map()
        from_onnx(model)
    assert onnx_frontend._get_convert_map is original and OP_TYPE not in original()


def _set_attr(model: onnx.ModelProto, name: str, value, node: int = 0) -> onnx.ModelProto:
    target = model.graph.node[node]
    kept = [a for a in target.attribute if a.name != name]
    del target.attribute[:]
    target.attribute.extend(kept + [helper.make_attribute(name, value)])
    return model


def _replace(model: onnx.ModelProto, suffix: str, array: np.ndarray) -> onnx.ModelProto:
    for i, init in enumerate(model.graph.initializer):
        if init.name.endswith(suffix):
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(array, init.name))
    return model


def _bad_layer():
    return random_layer(np.random.default_rng(3), 16, 5, (6, 5, 3, 3))  # 27 index bytes, 34 sign bytes


@pytest.mark.parametrize("edit,message", [
    (lambda m: _set_attr(m, "k", 12), "expected k a power of two in 2..65536, got k=12"),
    (lambda m: _set_attr(m, "d", 7), "expected d dividing the N=270 weights, got d=7"),
    (lambda m: _set_attr(m, "format_version", 2), "expected format_version=1, got 2"),
    (lambda m: _set_attr(m, "layout", "blocked"), 'expected layout="flat", got "blocked"'),
    (lambda m: _replace(m, "indices", _bad_layer().indices[:-1]),
     "expected indices of 27 bytes (54 x 4-bit values), got 26"),
    (lambda m: _replace(m, "signs", np.append(_bad_layer().signs, np.uint8(0))), "expected signs of 34 bytes"),
    (lambda m: _replace(m, "codebook", np.zeros((8, 5), np.float16)), "expected codebook of shape [16, 5], got [8, 5]"),
    (lambda m: _replace(m, "signs", _bad_layer().signs | np.eye(1, 34, 33, dtype=np.uint8)[0] * 0x80),
     "expected zero padding bits in the last byte of signs"),
], ids=["k", "d", "format_version", "layout", "short indices", "long signs", "codebook shape", "padding bits"])
def test_bad_nodes_rejected_naming_node(edit, message):
    model = edit(single_decode_model(_bad_layer()))
    with pytest.raises(ConversionError) as info:
        import_onnx(model)
    assert f"[{OP_TYPE}] node {NODE}:" in str(info.value) and message in str(info.value), str(info.value)


def test_all_bad_nodes_listed_at_once():
    model = single_decode_model(_bad_layer())
    second = onnx.NodeProto()
    second.CopyFrom(model.graph.node[0])
    second.name, second.output[0] = "v.decode", "weight2"
    model.graph.node.append(second)
    _set_attr(model, "k", 3, node=0)
    _set_attr(model, "d", 0, node=1)
    with pytest.raises(ConversionError) as info:
        import_onnx(model)
    text = str(info.value)
    assert f"node {NODE}: expected k a power of two" in text and "node v.decode: expected d >= 1" in text
