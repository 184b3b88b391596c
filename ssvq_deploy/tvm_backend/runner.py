"""The C++ runner (``runner/ssvq_tvm_runner.cc``): build it against the TVM runtime shipped in the pip wheel, bundle
it with ``libtvm_runtime.so`` and ``libtvm_ffi.so`` (rpath ``$ORIGIN``), and run an exported model with it.

The bundle is what a device without Python needs: the runner, the two runtime libraries and the model library.
Only the tvm-ffi headers are used (the wheel's ``tvm/runtime`` headers are incomplete).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import SSVQError

RUNNER_SOURCE = "ssvq_tvm_runner.cc"
RUNNER_NAME = "ssvq_tvm_runner"


class RunnerError(SSVQError):
    """The runner cannot be built (no compiler, no runtime library) or failed to run a model."""


def runtime_paths() -> dict[str, Path]:
    """Include folder and runtime libraries of the installed wheels (apache-tvm, apache-tvm-ffi)."""
    import tvm
    import tvm_ffi
    tvm_lib, ffi_root = Path(tvm.__file__).parent / "lib", Path(tvm_ffi.__file__).parent
    paths = {"include": ffi_root / "include", "libtvm_runtime": tvm_lib / "libtvm_runtime.so",
             "libtvm_ffi": ffi_root / "lib" / "libtvm_ffi.so"}
    missing = [f"{k} ({p})" for k, p in paths.items() if not p.exists()]
    if missing:
        raise RunnerError(f"TVM runtime files not found: {', '.join(missing)}")
    return paths


def source_path() -> Path:
    return Path(str(resources.files(__package__) / "runner" / RUNNER_SOURCE))


def build_runner(bundle: str | Path, compiler: str = "g++") -> Path:
    """Compile the runner into ``bundle``/ and copy the runtime libraries beside it; returns the executable."""
    if shutil.which(compiler) is None:
        raise RunnerError(f"C++ compiler {compiler!r} not found; install g++ or pass another compiler")
    bundle = Path(bundle)
    bundle.mkdir(parents=True, exist_ok=True)
    paths = runtime_paths()
    for key in ("libtvm_runtime", "libtvm_ffi"):
        shutil.copy2(paths[key], bundle / paths[key].name)
    exe = bundle / RUNNER_NAME
    command = [compiler, "-std=c++17", "-O2", str(source_path()), f"-I{paths['include']}", f"-L{bundle}",
               "-Wl,--no-as-needed", "-ltvm_runtime", "-ltvm_ffi", "-Wl,--disable-new-dtags,-rpath,$ORIGIN",
               "-o", str(exe)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RunnerError(f"building the runner failed ({' '.join(command)}):\n{done.stderr[-4000:]}")
    return exe


def run_runner(exe: str | Path, model: str | Path, x: np.ndarray, runs: int = 0,
               threads: int = 1) -> tuple[np.ndarray, dict]:
    """Run ``model`` on ``x`` with the runner in a clean environment (no Python paths); returns the output
    (flat float32, reshaped by the caller) and the runner's JSON summary."""
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "input.bin", Path(tmp) / "output.bin"
        np.ascontiguousarray(x, dtype=np.float32).tofile(inp)
        command = [str(exe), str(model), str(inp), ",".join(str(s) for s in x.shape), str(out), str(runs),
                   str(threads)]
        done = subprocess.run(command, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
        if done.returncode != 0:
            raise RunnerError(f"runner failed ({' '.join(command)}): {done.stderr.strip()[-2000:]}")
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        output = np.fromfile(out, dtype=np.float32).reshape(summary["output_shape"])
    return output, summary
