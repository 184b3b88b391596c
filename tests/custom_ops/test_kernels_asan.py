"""The standalone C++ kernel tests (custom_ops/tests/test_kernels.cc: every SIMD kernel against the scalar _ref
kernel, and the format validators), built with AddressSanitizer so an out-of-bounds read fails the test."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ASAN_BUILD = REPO / "build" / "custom_ops_asan"


def _toolchain_missing() -> str | None:
    if shutil.which("cmake") is None:
        return "cmake not found"
    if not any(shutil.which(cxx) for cxx in (os.environ.get("CXX", "c++"), "c++", "g++", "clang++")):
        return "no C++ compiler found"
    return None


@pytest.mark.skipif(_toolchain_missing() is not None, reason=str(_toolchain_missing()))
def test_kernel_tests_under_asan():
    configure = ["cmake", "-S", str(REPO / "custom_ops"), "-B", str(ASAN_BUILD), "-DSSVQ_ASAN=ON",
                 "-DSSVQ_WITH_ORT=OFF", "-DCMAKE_BUILD_TYPE=Release"]
    for cmd in (configure, ["cmake", "--build", str(ASAN_BUILD), "--target", "ssvq_kernel_tests",
                            "-j", str(os.cpu_count() or 2)]):
        done = subprocess.run(cmd, capture_output=True, text=True)
        assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    env = {**os.environ, "ASAN_OPTIONS": "abort_on_error=0:halt_on_error=1:detect_leaks=1"}
    done = subprocess.run([str(ASAN_BUILD / "ssvq_kernel_tests")], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, f"ssvq_kernel_tests failed:\n{done.stdout[-4000:]}\n{done.stderr[-8000:]}"
    assert " 0 failures" in done.stdout
