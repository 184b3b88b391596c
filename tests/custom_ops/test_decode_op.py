"""SSVQDecode through a real onnxruntime session with libssvq_ort.so: bit-exact against the numpy golden decoder
(PackedLayer.decode) and rejecting every malformed input with an error that names the node and the problem."""
from __future__ import annotations

import itertools
import math

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from ssvq_deploy.export.decode_node import single_decode_model
from ssvq_deploy.format import PackedLayer
from ssvq_deploy.runtime import LibraryNotFoundError, create_session, library_path

NODE = "w.decode"


@pytest.fixture(scope="module", autouse=True)
def _library():
    try:
        library_path()
    except LibraryNotFoundError as e:
        pytest.skip(f"libssvq_ort.so is not built: {e}")


def random_shape(rng: np.random.Generator, d: int, kind: str) -> tuple[int, ...]:
    """A weight shape of the given kind whose element count d divides."""
    if kind == "conv":
        shape = [int(rng.integers(1, 24)), int(rng.integers(1, 12)), *([int(rng.choice([1, 3, 5]))] * 2)]
    elif kind == "linear":
        shape = [int(rng.integers(1, 64)), int(rng.integers(1, 96))]
    else:  # odd sizes: 1-D to 3-D of odd dims, so N is rarely a multiple of 8
        shape = [int(rng.integers(0, 9)) * 2 + 1 for _ in range(int(rng.integers(1, 4)))]
    shape[0] *= d // math.gcd(math.prod(shape), d)
    return tuple(shape)


def random_layer(rng: np.random.Generator, k: int, d: int, shape, ssvq: bool) -> PackedLayer:
    n = math.prod(shape)
    codebook = rng.standard_normal((k, d)).astype(np.float16)
    # fp16 edge values: widening must be exact for zeros, subnormals and the extremes too.
    edges = np.array([0.0, -0.0, 6e-8, -6e-8, 3.05e-5, 6.1e-5, 65504.0, -65504.0, 1.0, -2.5], np.float16)
    flat = codebook.reshape(-1)
    flat[: min(flat.size, edges.size)] = edges[: flat.size]
    negative = rng.random(n) < 0.5 if ssvq else None
    return PackedLayer.pack("w", shape, codebook, rng.integers(0, k, n // d), negative)


def feeds_for(layer: PackedLayer, codebook_dtype) -> dict[str, np.ndarray]:
    feeds = {"codebook": layer.codebook.astype(codebook_dtype), "indices": layer.indices}
    if layer.signs is not None:
        feeds["signs"] = layer.signs
    return feeds


def run_decode(model: onnx.ModelProto, feeds: dict[str, np.ndarray] | None = None) -> np.ndarray:
    session = create_session(model)
    return session.run(None, feeds or {})[0]


def assert_bit_exact(got: np.ndarray, layer: PackedLayer) -> None:
    """The one parity check: same dtype, shape and bit patterns as the golden decoder."""
    want = layer.decode()
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), (
        f"{np.count_nonzero(got.view(np.uint32) != want.view(np.uint32))} of {want.size} weights differ")


# Every k, every d 1..16 and every shape kind, under each (method, codebook dtype, constant inputs) combination.
_COMBOS = list(itertools.product(["ssvq", "vq"], [np.float16, np.float32], [True, False]))
_CASES = [(bits, 1 + (3 * bits + 5 * c) % 16, ["conv", "linear", "odd"][(bits + c) % 3], *combo)
          for c, combo in enumerate(_COMBOS) for bits in range(1, 17)]


@pytest.mark.parametrize("bits,d,kind,method,codebook_dtype,constant", _CASES,
                         ids=[f"k{1 << b}-d{d}-{kind}-{m}-{np.dtype(t).name}-{'const' if c else 'feed'}"
                              for b, d, kind, m, t, c in _CASES])
def test_bit_exact_vs_golden(bits, d, kind, method, codebook_dtype, constant):
    rng = np.random.default_rng(1000 * bits + d)
    layer = random_layer(rng, 1 << bits, d, random_shape(rng, d, kind), method == "ssvq")
    model = single_decode_model(layer, codebook_dtype, constant_inputs=constant)
    got = run_decode(model, None if constant else feeds_for(layer, codebook_dtype))
    assert_bit_exact(got, layer)


@pytest.mark.parametrize("d", range(1, 17))
@pytest.mark.parametrize("k", [2, 16, 256, 65536])
def test_all_d_with_tails(k, d):
    # n_vec around the kernels' group sizes (8 and 16 vectors) so every tail length is exercised somewhere.
    rng = np.random.default_rng(k + d)
    for n_vec in (1, 7, 9, 15, 17, 8 * 13 + 5):
        layer = random_layer(rng, k, d, (n_vec, d), ssvq=bool(n_vec % 2))
        session = create_session(single_decode_model(layer, np.float16, constant_inputs=False))
        assert_bit_exact(session.run(None, feeds_for(layer, np.float16))[0], layer)


def test_large_conv_layer_runtime_inputs_repeated():
    rng = np.random.default_rng(7)
    layer = random_layer(rng, 16, 8, (256, 128, 3, 3), ssvq=True)
    session = create_session(single_decode_model(layer, np.float16, constant_inputs=False), threads=1)
    for _ in range(3):  # a kernel keeps no per-run state
        assert_bit_exact(session.run(None, feeds_for(layer, np.float16))[0], layer)


def test_constant_inputs_repeated_runs_and_model_path(tmp_path):
    rng = np.random.default_rng(8)
    layer = random_layer(rng, 256, 4, (64, 32, 1, 1), ssvq=True)
    path = tmp_path / "decode.onnx"
    onnx.save(single_decode_model(layer), path)
    session = create_session(path)
    for _ in range(3):  # the cached decode is copied, never handed out
        out = session.run(None, {})[0]
        assert_bit_exact(out, layer)
        out[...] = 0


def test_empty_signs_name_means_vq():
    rng = np.random.default_rng(9)
    layer = random_layer(rng, 32, 3, (12, 9), ssvq=False)
    model = single_decode_model(layer)
    model.graph.node[0].input.append("")
    assert_bit_exact(run_decode(model), layer)


# ---- errors -----------------------------------------------------------------------------------------------------

def _layer(ssvq: bool = True, shape=(6, 5, 3, 3), k=16, d=5) -> PackedLayer:
    return random_layer(np.random.default_rng(3), k, d, shape, ssvq)


def _replace_initializer(model: onnx.ModelProto, suffix: str, array: np.ndarray) -> onnx.ModelProto:
    for i, init in enumerate(model.graph.initializer):
        if init.name.endswith(suffix):
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(array, init.name))
            return model
    raise KeyError(suffix)


def _set_attribute(model: onnx.ModelProto, name: str, value) -> onnx.ModelProto:
    node = model.graph.node[0]
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(kept + [helper.make_attribute(name, value)])
    return model


def _padded_corrupt(stream: np.ndarray) -> np.ndarray:
    out = stream.copy()
    out[-1] |= 0x80
    return out


def _constant_error_cases():
    L = _layer()  # N = 270, d = 5: 54 codes x 4 bits = 27 bytes of indices, 34 bytes of signs (2 padding bits)
    assert L.indices.size == 27 and L.signs.size == 34
    return {
        "short indices": (lambda m: _replace_initializer(m, "indices", L.indices[:-1]),
                          "expected indices of 27 bytes (54 x 4-bit values), got 26 bytes"),
        "long indices": (lambda m: _replace_initializer(m, "indices", np.append(L.indices, np.uint8(0))),
                         "expected indices of 27 bytes (54 x 4-bit values), got 28 bytes"),
        "short signs": (lambda m: _replace_initializer(m, "signs", L.signs[:-1]),
                        "expected signs of 34 bytes (270 x 1-bit values), got 33 bytes"),
        "long signs": (lambda m: _replace_initializer(m, "signs", np.append(L.signs, np.uint8(0))),
                       "expected signs of 34 bytes (270 x 1-bit values), got 35 bytes"),
        "signs padding": (lambda m: _replace_initializer(m, "signs", _padded_corrupt(L.signs)),
                          "expected zero padding bits in the last byte of signs"),
        "codebook rows": (lambda m: _replace_initializer(m, "codebook", np.zeros((8, 5), np.float16)),
                          "expected codebook of shape [16, 5], got [8, 5]"),
        "codebook 1-D": (lambda m: _replace_initializer(m, "codebook", np.zeros(80, np.float16)),
                         "expected codebook of shape [16, 5], got [80]"),
        "codebook dtype": (lambda m: _replace_initializer(m, "codebook", np.zeros((16, 5), np.float64)),
                           "expected codebook of type float16 or float32, got float64"),
        "indices dtype": (lambda m: _replace_initializer(m, "indices", L.indices.astype(np.int8)),
                          "expected indices as a 1-D uint8 tensor, got int8 of shape [27]"),
        "indices 2-D": (lambda m: _replace_initializer(m, "indices", L.indices.reshape(3, 9)),
                        "expected indices as a 1-D uint8 tensor, got uint8 of shape [3, 9]"),
        "k not a power of two": (lambda m: _set_attribute(m, "k", 12), "expected k a power of two in 2..65536, got k=12"),
        "k too large": (lambda m: _set_attribute(m, "k", 1 << 17), "got k=131072"),
        "k too small": (lambda m: _set_attribute(m, "k", 1), "got k=1"),
        "d not dividing": (lambda m: _set_attribute(m, "d", 7), "expected d dividing the N=270 weights"),
        "d zero": (lambda m: _set_attribute(m, "d", 0), "expected d >= 1, got d=0"),
        "empty shape": (lambda m: _set_attribute(m, "shape", [6, 0, 3, 3]), "expected a non-empty weight"),
        "format_version": (lambda m: _set_attribute(m, "format_version", 2), "expected format_version=1, got 2"),
        "layout": (lambda m: _set_attribute(m, "layout", "blocked"), 'expected layout="flat", got "blocked"'),
    }


_CONSTANT_ERRORS = _constant_error_cases()


@pytest.mark.parametrize("case", list(_CONSTANT_ERRORS))
def test_constant_inputs_rejected_at_session_creation(case):
    edit, message = _CONSTANT_ERRORS[case]
    model = edit(single_decode_model(_layer()))
    with pytest.raises(Exception) as info:  # constant inputs are validated (and decoded) when the kernel is created
        create_session(model)
    text = str(info.value)
    assert f"[SSVQDecode] node {NODE}:" in text and message in text, text


def test_padding_in_indices_rejected():
    L = _layer(shape=(3, 5), k=8, d=5)  # 3 codes x 3 bits = 9 bits: 7 padding bits
    model = _replace_initializer(single_decode_model(L), "indices", _padded_corrupt(L.indices))
    with pytest.raises(Exception, match=r"\[SSVQDecode\] node w\.decode: expected zero padding bits in the last "
                                        r"byte of indices"):
        create_session(model)


def _dynamic_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Graph inputs of unknown shape, so onnxruntime hands wrongly shaped feeds to the kernel instead of
    rejecting them itself."""
    for graph_input in model.graph.input:
        graph_input.type.tensor_type.ClearField("shape")
    return model


@pytest.mark.parametrize("case,edit,message", [
    ("short indices", lambda f: {**f, "indices": f["indices"][:-1]}, "expected indices of 27 bytes"),
    ("long indices", lambda f: {**f, "indices": np.append(f["indices"], np.uint8(0))}, "got 28 bytes"),
    ("short signs", lambda f: {**f, "signs": f["signs"][:-2]}, "expected signs of 34 bytes (270 x 1-bit values), got 32"),
    ("long signs", lambda f: {**f, "signs": np.zeros(40, np.uint8)}, "expected signs of 34 bytes"),
    ("signs padding", lambda f: {**f, "signs": _padded_corrupt(f["signs"])}, "zero padding bits in the last byte of signs"),
    ("codebook shape", lambda f: {**f, "codebook": np.zeros((16, 4), np.float16)},
     "expected codebook of shape [16, 5], got [16, 4]"),
    ("codebook rank", lambda f: {**f, "codebook": np.zeros((2, 8, 5), np.float16)}, "got [2, 8, 5]"),
])
def test_runtime_inputs_rejected_at_run(case, edit, message):
    layer = _layer()
    session = create_session(_dynamic_inputs(single_decode_model(layer, constant_inputs=False)))
    good = feeds_for(layer, np.float16)
    assert_bit_exact(session.run(None, good)[0], layer)
    with pytest.raises(Exception) as info:
        session.run(None, edit(good))
    text = str(info.value)
    assert f"[SSVQDecode] node {NODE}:" in text and message in text, text
    assert_bit_exact(session.run(None, good)[0], layer)  # an error leaves the session usable


def test_runtime_attribute_errors_rejected_at_session_creation():
    model = _set_attribute(single_decode_model(_layer(), constant_inputs=False), "d", 4)
    with pytest.raises(Exception, match=r"\[SSVQDecode\] node w\.decode: expected d dividing the N=270 weights"):
        create_session(model)
