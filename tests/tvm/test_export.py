"""Exports: the host shared library, the aarch64 cross-build (linked .so, or objects when no cross linker), and
the C++ runner running an exported model with the TVM runtime only."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from tvm_helpers import conv_model, random_layer
from ssvq_deploy.tvm_backend.build import aarch64_target, build_onnx, run_executable, x86_target
from ssvq_deploy.tvm_backend.export import AARCH64_CXX, elf_header, export_aarch64, export_host
from ssvq_deploy.tvm_backend.runner import build_runner, run_runner


@pytest.fixture(scope="module")
def model():
    layer = random_layer(np.random.default_rng(2), 16, 8, (16, 8, 3, 3), edges=False)
    return conv_model(layer, (1, 8, 12, 12), (1, 16, 12, 12), pads=(1, 1, 1, 1), relu=True)


@pytest.fixture(scope="module")
def aarch64_build(model):
    executable, lowered = build_onnx(model, {}, aarch64_target(1))
    assert len(lowered.fusion.fused) == 1
    return executable


@pytest.mark.skipif(shutil.which(AARCH64_CXX) is None, reason=f"{AARCH64_CXX} not installed")
def test_aarch64_shared_library_is_aarch64_elf(aarch64_build, tmp_path):
    info = export_aarch64(aarch64_build, tmp_path / "model_aarch64.so")
    header = elf_header(info["path"])
    assert (header["machine"], header["type"], header["class"]) == ("aarch64", "shared object", "ELF64")


def test_aarch64_objects_without_cross_linker(aarch64_build, tmp_path):
    info = export_aarch64(aarch64_build, tmp_path / "model_aarch64.so", compiler="no-such-cross-g++")
    assert info["path"].endswith(".tar") and info["objects"]
    assert all(o["machine"] == "aarch64" and o["type"] == "relocatable" for o in info["objects"])


def test_elf_header_rejects_non_elf(tmp_path):
    (tmp_path / "x").write_bytes(b"not an elf file at all")
    with pytest.raises(Exception, match="not an ELF"):
        elf_header(tmp_path / "x")


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_runner_matches_python_vm(model, tmp_path):
    executable, _ = build_onnx(model, {}, x86_target(1))
    info = export_host(executable, tmp_path / "model.so")
    assert info["machine"] == "x86-64" and info["type"] == "shared object"
    exe = build_runner(tmp_path / "bundle")
    assert {p.name for p in (tmp_path / "bundle").iterdir()} >= {"ssvq_tvm_runner", "libtvm_runtime.so",
                                                                  "libtvm_ffi.so"}
    x = np.random.default_rng(3).uniform(-1, 1, (1, 8, 12, 12)).astype(np.float32)
    got, summary = run_runner(exe, info["path"], x, runs=3)
    assert summary["output_shape"] == [1, 16, 12, 12] and summary["runs"] == 3 and summary["median_ms"] > 0
    assert np.array_equal(got, run_executable(executable, x)[0])
