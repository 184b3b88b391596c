"""The standalone kernel tests (custom_ops/tests/) cross-built for aarch64 and run under qemu-user: every NEON kernel
set (decode `neon`, fused `neon_dotprod` and `neon`) against the scalar `_ref` kernels, bit-exact where the contract
says so (decode, int8) and to the float tolerance elsewhere, the way the x86-64 build checks its AVX sets.

Needs `bash custom_ops/build_edge.sh` (or `make edge-check`) first; skipped with that hint otherwise.
"""
from __future__ import annotations

import re
import subprocess

import pytest

from ssvq_deploy.runtime.native_runner import AARCH64_SYSROOT, EDGE_BUILD, QEMU_AARCH64

KERNEL_TESTS = EDGE_BUILD / "aarch64" / "ssvq_kernel_tests"

if not KERNEL_TESTS.is_file() or not QEMU_AARCH64.is_file():
    pytest.skip(f"no aarch64 kernel tests in {KERNEL_TESTS.parent} (run `bash custom_ops/build_edge.sh` or "
                "`make edge-check`)", allow_module_level=True)


def _run(cpu: str) -> str:
    """ssvq_kernel_tests under qemu emulating `cpu`; returns stdout, asserting the run is clean."""
    done = subprocess.run([str(QEMU_AARCH64), "-cpu", cpu, "-L", AARCH64_SYSROOT, str(KERNEL_TESTS)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"ssvq_kernel_tests ({cpu}) failed:\n{done.stdout[-4000:]}\n{done.stderr[-8000:]}"
    checks = re.search(r"(\d+) checks, (\d+) failures", done.stdout)
    assert checks and int(checks.group(2)) == 0 and int(checks.group(1)) > 10000, done.stdout
    return done.stdout


def _sets(stdout: str, label: str) -> list[str]:
    """The set names of a "<label>: a b(unsupported) ..." line; the tests check exactly the supported ones."""
    line = re.search(rf"^{label}:([^;\n]*)", stdout, re.M)
    assert line, stdout
    return line.group(1).split()


def test_neon_sets_match_ref_with_dotprod():
    """qemu's `max` CPU has the ARMv8.2 dot product: both fused NEON sets run and are checked."""
    out = _run("max")
    assert _sets(out, "kernel sets") == ["neon", "ref"] and "best: neon" in out
    assert _sets(out, "fused kernel sets") == ["neon_dotprod", "neon", "ref"]


def test_dotprod_set_is_skipped_without_asimddp():
    """Cortex-A72 (ARMv8.0) lacks SDOT: HWCAP_ASIMDDP is clear, so `neon_dotprod` is unsupported and `neon` runs."""
    out = _run("cortex-a72")
    assert _sets(out, "kernel sets") == ["neon", "ref"]
    assert _sets(out, "fused kernel sets") == ["neon_dotprod(unsupported)", "neon", "ref"]
