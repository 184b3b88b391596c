"""The compressed-model file: bit-exact round trip, and every kind of damage rejected with a FormatError."""
import json
import struct

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from ssvq_deploy.errors import FormatError
from ssvq_deploy.format import CompressedModel, PackedLayer, load, save
from ssvq_deploy.format import container


def _model() -> CompressedModel:
    rng = np.random.default_rng(0)
    ssvq = PackedLayer.pack("features.0", (8, 3, 3, 3), np.abs(rng.normal(size=(16, 9))), rng.integers(0, 16, 24),
                            rng.random(216) < 0.5)
    vq = PackedLayer.pack("head", (10, 12), rng.normal(size=(4, 4)), rng.integers(0, 4, 30), None)
    dense = {"features.1.weight": rng.normal(size=8).astype(np.float32),
             "features.1.running_var": rng.random(8).astype(np.float32),
             "features.1.num_batches_tracked": np.array(12345678901, np.int64),  # 0-d, like BatchNorm's
             "features.1.counts": np.arange(-3, 4, dtype=np.int64),
             "head.bias": rng.normal(size=10).astype(np.float32)}
    return CompressedModel("tiny", {"features.0": ssvq, "head": vq}, dense, {"method": "mixed", "k": 16})


def _read_header(path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _write_header(path, header, data):
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def test_round_trip_bit_exact(tmp_path):
    model = _model()
    path = tmp_path / "m.ssvq.safetensors"
    save(model, path)
    back = load(path)
    assert back.model == "tiny" and back.meta == model.meta
    assert list(back.layers) == ["features.0", "head"]
    for name, layer in model.layers.items():
        got = back.layers[name]
        assert (got.shape, got.k, got.d, got.method) == (layer.shape, layer.k, layer.d, layer.method)
        for attr in ("codebook", "indices"):
            a, b = getattr(layer, attr), getattr(got, attr)
            assert a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8))
        assert (layer.signs is None and got.signs is None) or np.array_equal(layer.signs, got.signs)
        assert np.array_equal(layer.decode().view(np.uint32), got.decode().view(np.uint32))
    assert set(back.dense) == set(model.dense)
    for key, value in model.dense.items():
        assert back.dense[key].dtype == value.dtype and back.dense[key].shape == value.shape
        np.testing.assert_array_equal(back.dense[key], value)
    assert int(back.dense["features.1.num_batches_tracked"]) == 12345678901
    state = back.state_dict()
    assert set(state) == set(model.dense) | {"features.0.weight", "head.weight"}
    assert state["features.0.weight"].shape == (8, 3, 3, 3)


def test_missing_file(tmp_path):
    with pytest.raises(FormatError, match="no such"):
        load(tmp_path / "nope.safetensors")


def test_not_a_safetensors_file(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_text("this is not a safetensors file at all")
    with pytest.raises(FormatError, match="not a readable compressed file"):
        load(path)


def test_safetensors_without_ssvq_header(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"a": np.zeros(3, np.float32)}, str(path))
    with pytest.raises(FormatError, match="not an ssvq-deploy file"):
        load(path)


@pytest.mark.parametrize("keep", [lambda n: n - 1, lambda n: n - 100, lambda n: n // 2, lambda n: 20, lambda n: 4],
                         ids=["last-byte", "100-bytes", "half", "inside-header", "inside-length"])
def test_truncated_file(tmp_path, keep):
    path = tmp_path / "m.safetensors"
    save(_model(), path)
    raw = path.read_bytes()
    path.write_bytes(raw[:keep(len(raw))])
    with pytest.raises(FormatError, match="truncated or corrupt"):
        load(path)


@pytest.mark.parametrize("tensor", ["q/features.0/codebook", "q/features.0/indices", "q/features.0/signs",
                                    "q/head/indices", "dense/head.bias", "dense/features.1.num_batches_tracked"])
def test_flipped_byte_fails_checksum(tmp_path, tensor):
    path = tmp_path / "m.safetensors"
    save(_model(), path)
    header, data = _read_header(path)
    start, end = header[tensor]["data_offsets"]
    data = bytearray(data)
    data[(start + end) // 2] ^= 0x04
    _write_header(path, header, bytes(data))
    with pytest.raises(FormatError, match=f"checksum mismatch in tensor '{tensor}'"):
        load(path)


def test_header_rewrite_helper_is_faithful(tmp_path):
    """Guards the two tests around it: rewriting an unchanged header gives a loadable file."""
    path = tmp_path / "m.safetensors"
    save(_model(), path)
    _write_header(path, *_read_header(path))
    assert load(path).model == "tiny"


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_wrong_format_version(tmp_path, version):
    path = tmp_path / "m.safetensors"
    save(_model(), path)
    header, data = _read_header(path)
    ssvq = json.loads(header["__metadata__"]["ssvq"])
    ssvq["format_version"] = version
    header["__metadata__"]["ssvq"] = json.dumps(ssvq)
    _write_header(path, header, data)
    with pytest.raises(FormatError, match="format version .* is not supported"):
        load(path)


def test_missing_tensor(tmp_path):
    path = tmp_path / "m.safetensors"
    save(_model(), path)
    with safe_open(str(path), "np") as f:
        metadata = f.metadata()
    tensors = load_file(str(path))
    del tensors["q/head/indices"]
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(FormatError, match=r"q/head/indices.*do not match the header"):
        load(path)


def test_failed_save_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "out" / "m.safetensors"

    def half_write(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(container, "save_file", half_write)
    with pytest.raises(OSError, match="disk full"):
        save(_model(), path)
    assert list(path.parent.iterdir()) == []


def test_failed_save_keeps_previous_file(tmp_path):
    path = tmp_path / "m.safetensors"
    save(_model(), path)
    before = path.read_bytes()
    bad = _model()
    bad.dense["weird"] = np.array(["not", "a", "tensor"])  # safetensors cannot store strings
    with pytest.raises(FormatError, match="weird|dtype"):
        save(bad, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
    fresh = tmp_path / "fresh.safetensors"
    with pytest.raises(FormatError):
        save(bad, fresh)
    assert not fresh.exists() and not list(tmp_path.glob("*.part"))
