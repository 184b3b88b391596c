"""The export job end to end on MobileNetV2, and its refusals of bad input (no files left behind)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ssvq_deploy.cli import main
from ssvq_deploy.deploy import ExportConfig, run_export
from ssvq_deploy.errors import ConfigError, FormatError, WeightsError
from ssvq_deploy.models import model_spec
from ssvq_deploy.runtime import LibraryNotFoundError


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    report = run_export(ExportConfig(out=str(out), runs=3, fused="int8"))
    return out, report


def test_report_fields_and_values(exported):
    out, report = exported
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["compression_ratio"] == pytest.approx(report["compression_ratio"])
    assert 20.0 < report["compression_ratio"] < 22.0  # k=16, d=8 on MobileNetV2 (paper: 20.7x)
    assert report["bits_per_weight"] == pytest.approx(32 / report["compression_ratio"])
    sizes = report["onnx_bytes"]
    assert sizes["ssvq"] * 3 < sizes["int8"] and sizes["ssvq"] * 12 < sizes["fp32"]
    assert all((out / f"{name}.onnx").stat().st_size == size for name, size in sizes.items())
    assert report["max_abs_err_vs_torch"] < 1e-4
    assert set(report["latency_ms"]) == {"fp32", "int8", "ssvq", "ssvq_decode_at_load", "ssvq_fused"}
    photos = len(report["verify_images"])
    assert report["fused"]["activations"].startswith("static uint8 NHWC activations")
    assert report["fused"]["activations"].endswith(f"calibration on {photos} photos")
    assert all(v > 0 for v in report["latency_ms"].values()) and report["threads"] == 1
    assert report["top1_agreement_vs_fp32_by_build"]["fp32"] == 1.0
    assert report["onnxruntime_version"]
    assert not list(out.glob("*.part"))


def test_reexport_from_compressed_file_is_identical(exported, tmp_path):
    out, report = exported
    again = run_export(ExportConfig(out=str(tmp_path), compressed=str(out / "model.ssvq.safetensors"), runs=1,
                                    portable=True))
    assert again["compression_ratio"] == report["compression_ratio"]
    assert again["max_abs_err_vs_torch"] < 1e-4
    assert again["decode"].startswith("ONNX function")


def _assert_nothing_written(folder: Path):
    assert not folder.exists() or not any(folder.iterdir())


def test_unknown_model(tmp_path):
    with pytest.raises(ConfigError, match="unknown model 'resnet9000'"):
        run_export(ExportConfig(model="resnet9000", out=str(tmp_path / "o")))
    _assert_nothing_written(tmp_path / "o")


def test_wrong_shaped_checkpoint(tmp_path):
    state = model_spec("mobilenetv2").build().state_dict()
    state["classifier.1.weight"] = torch.zeros(10, 1280)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match=r"classifier.1.weight: shape \[10, 1280\]"):
        run_export(ExportConfig(weights=str(tmp_path / "bad.pth"), out=str(tmp_path / "o")))
    _assert_nothing_written(tmp_path / "o")


def test_corrupt_compressed_file(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}" + bytes(64))
    with pytest.raises(FormatError, match="bad.safetensors"):
        run_export(ExportConfig(compressed=str(bad), out=str(tmp_path / "o")))
    _assert_nothing_written(tmp_path / "o")


def test_missing_library_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("SSVQ_ORT_LIBRARY", str(tmp_path / "nope.so"))
    with pytest.raises(LibraryNotFoundError, match="make build"):
        run_export(ExportConfig(out=str(tmp_path / "o")))
    _assert_nothing_written(tmp_path / "o")


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot create output folder"):
        run_export(ExportConfig(out=str(blocker / "sub")))


def test_cli_reports_errors_with_exit_code_2(tmp_path, capsys):
    assert main(["export", "--model", "nope", "--out", str(tmp_path / "o")]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
