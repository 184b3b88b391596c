"""`ssvq emulate` end to end on MobileNetV2 (small input to keep it quick): printed table, report.json fields, plot;
the exported ONNX and the compressed file give the same figures; bad options fail cleanly (exit 2)."""
import contextlib
import io
import json

import pytest

from ssvq_deploy import cli
from ssvq_deploy.data import PHOTOS
from ssvq_deploy.emulator.report import LAYER_COLUMNS
from ssvq_deploy.export.onnx_export import compressed_onnx, float_onnx, save_onnx
from ssvq_deploy.format import save
from ssvq_deploy.pipeline import decoded_model

SIZE = "64"


def _main(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def compressed_file(mobilenet, tmp_path_factory):
    path = tmp_path_factory.mktemp("emulate") / "model.ssvq.safetensors"
    save(mobilenet[1], path)
    return path


@pytest.fixture(scope="module")
def emulated(compressed_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("emulate") / "out"
    rc, stdout, stderr = _main(["emulate", "--model", "mobilenetv2_ssvq", "--compressed", str(compressed_file),
                                "--size", SIZE, "--images", "2", "--preset", "lpddr4_soc", "--out", str(out)])
    assert rc == 0, stderr
    return out, stdout


def test_report_json(emulated):
    out, _ = emulated
    r = json.loads((out / "report.json").read_text())
    assert r["bit_exact"] is True and r["bit_exact_by_build"] == {"int8": True, "ssvq": True}
    assert set(r["dram_bytes"]) == set(r["cycles"]) == {"int8", "ssvq"}
    assert r["speedup_vs_int8"] == pytest.approx(r["cycles"]["int8"] / r["cycles"]["ssvq"]) and r["speedup_vs_int8"] > 1
    assert r["dram_bytes"]["ssvq"] < r["dram_bytes"]["int8"]
    assert r["dram_bytes"]["int8"] == sum(l["dram_bytes_int8"] for l in r["layers"])
    assert r["cycles"]["ssvq"] == sum(l["cycles_ssvq"] for l in r["layers"])
    assert r["preset"] == "lpddr4_soc" and r["accelerator"]["dram_gbps"] == 7.7
    assert r["input_shape"] == [1, 3, 64, 64] and r["requant"] == "gemmlowp" and r["codewords"] == "int8"
    assert len(r["verify_images"]) == 2 and r["calibration_images"] == len(PHOTOS)
    assert len(r["layers"]) == 64 and sum(s["layers"] for s in r["stages"]) == 64
    assert sum(s["share_of_saved_cycles"] for s in r["stages"]) == pytest.approx(1.0)
    assert 0 < r["codebook_int8_rel_error"] < 0.02
    assert (out / "layers.png").stat().st_size > 10_000


def test_printed_table(emulated):
    _, stdout = emulated
    lines = stdout.splitlines()
    assert lines[0].split() == LAYER_COLUMNS
    assert any(line.startswith("classifier.1 ") for line in lines)
    assert "speedup_vs_int8" in stdout and "bit_exact True" in stdout


def test_exported_onnx_gives_the_same_figures(emulated, mobilenet, tmp_path):
    out, _ = emulated
    compressed = mobilenet[1]
    path = tmp_path / "ssvq.onnx"
    save_onnx(compressed_onnx(compressed, decoded_model(compressed), (1, 3, 224, 224)), path)
    rc, _, stderr = _main(["emulate", "--model", "mobilenetv2_ssvq", "--onnx", str(path), "--size", SIZE,
                           "--images", "1", "--preset", "lpddr4_soc", "--out", str(tmp_path / "out")])
    assert rc == 0, stderr
    a, b = (json.loads(p.read_text()) for p in (out / "report.json", tmp_path / "out" / "report.json"))
    assert a["cycles"] == b["cycles"] and a["dram_bytes"] == b["dram_bytes"] and b["bit_exact"]


@pytest.mark.parametrize("extra, message", [
    (["--preset", "tpu"], "unknown accelerator preset 'tpu'"),
    (["--compressed", "a", "--onnx", "b"], "give --compressed or --onnx, not both"),
    (["--images", "0"], f"images must be in 1..{len(PHOTOS)}"),
    (["--onnx", "/nonexistent.onnx"], "cannot read ONNX model /nonexistent.onnx"),
])
def test_bad_options(extra, message, tmp_path):
    rc, stdout, stderr = _main(["emulate", "--model", "mobilenetv2_ssvq", "--size", SIZE, "--out",
                                str(tmp_path / "out"), *extra])
    assert rc == 2 and message in stderr and not stdout


def test_float_model_is_not_an_ssvq_model(mobilenet, tmp_path):
    path = tmp_path / "fp32.onnx"
    save_onnx(float_onnx(mobilenet[0], (1, 3, 64, 64)), path)
    rc, _, stderr = _main(["emulate", "--model", "mobilenetv2_ssvq", "--onnx", str(path), "--size", SIZE,
                           "--out", str(tmp_path / "out")])
    assert rc == 2 and "holds no SSVQDecode nodes" in stderr
