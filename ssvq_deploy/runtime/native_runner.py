"""Drive the C++ runner ``ssvq_run`` (custom_ops/runner/) for x86-64 or, under qemu-user, for aarch64: the path an
embedded engineer takes on a board without Python. Built by custom_ops/build_edge.sh into build/edge/<arch>/."""
from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SSVQError

_REPO_ROOT = Path(__file__).resolve().parents[2]
EDGE_BUILD = _REPO_ROOT / "build" / "edge"
AARCH64_SYSROOT = "/usr/aarch64-linux-gnu"  # Debian's cross libc, from g++-aarch64-linux-gnu
QEMU_AARCH64 = EDGE_BUILD / "qemu" / "root" / "usr" / "bin" / "qemu-aarch64"  # unpacked by build_edge.sh


class RunnerError(SSVQError):
    """The native runner is missing or failed."""


@dataclass
class NativeRun:
    output: np.ndarray
    latency_ms: float
    stdout: str


def runner_dir(arch: str) -> Path:
    """build/edge/<arch> holding ssvq_run and libssvq_ort.so; raises if not built."""
    path = EDGE_BUILD / arch
    if not (path / "ssvq_run").is_file() or not (path / "libssvq_ort.so").is_file():
        raise RunnerError(f"no {arch} runner in {path}; build it with `bash custom_ops/build_edge.sh`")
    return path


def run_native(arch: str, model: str | Path, x: np.ndarray, runs: int = 3, threads: int = 1,
               config: dict[str, str] | None = None) -> NativeRun:
    """Run ``model`` on ``x`` (float32) with the ``arch`` runner ("x86_64" natively, "aarch64" under qemu-aarch64).
    ``config``: session config entries for the op library, e.g. {"ssvq.kernels": "neon", "ssvq.kernel_report": path}."""
    folder = runner_dir(arch)
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "input.npy", Path(tmp) / "output.npy"
        np.save(inp, np.ascontiguousarray(x, dtype=np.float32))
        cmd = [str(folder / "ssvq_run"), str(model), str(inp), "--library", str(folder / "libssvq_ort.so"),
               "--output", str(out), "--runs", str(runs), "--threads", str(threads)]
        for key, value in (config or {}).items():
            cmd += ["--config", f"{key}={value}"]
        if arch == "aarch64":
            cmd = [str(QEMU_AARCH64), "-L", AARCH64_SYSROOT, *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RunnerError(f"{arch} runner failed ({done.returncode}): {done.stderr.strip()}")
        latency = float(re.search(r"latency median ([0-9.]+) ms", done.stdout).group(1))
        return NativeRun(np.load(out), latency, done.stdout)
