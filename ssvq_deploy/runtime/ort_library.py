"""Locate ``libssvq_ort.so`` (the SSVQDecode custom-op library, docs/ssvq_op.md) and open ONNX Runtime sessions
that have it registered."""
from __future__ import annotations

import os
from pathlib import Path

import onnxruntime as ort

from ..errors import SSVQError

LIBRARY_ENV = "SSVQ_ORT_LIBRARY"
_REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LIBRARY = _REPO_ROOT / "build" / "custom_ops" / "libssvq_ort.so"
BUILD_HINT = ("build it with `make build`, or `bash custom_ops/build.sh` (which runs custom_ops/fetch_ort_headers.sh, "
              "then `cmake -S custom_ops -B build/custom_ops -DSSVQ_ORT_INCLUDE_DIR=<headers>` and "
              "`cmake --build build/custom_ops`), or point $SSVQ_ORT_LIBRARY at a built libssvq_ort.so")


class LibraryNotFoundError(SSVQError, FileNotFoundError):
    """The SSVQDecode ONNX Runtime library is not built (or $SSVQ_ORT_LIBRARY names a missing file)."""


def library_path() -> Path:
    """Path of libssvq_ort.so: ``$SSVQ_ORT_LIBRARY`` if set, else ``<repo>/build/custom_ops/libssvq_ort.so``."""
    override = os.environ.get(LIBRARY_ENV)
    path = Path(override) if override else DEFAULT_LIBRARY
    if not path.is_file():
        source = f"${LIBRARY_ENV}={override}" if override else "the default location"
        raise LibraryNotFoundError(f"SSVQ ONNX Runtime library not found at {path} ({source}); {BUILD_HINT}")
    return path


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """Session options with the SSVQDecode library registered; ``threads`` sets the intra-op thread count."""
    options = ort.SessionOptions()
    options.register_custom_ops_library(str(library_path()))
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    return options


def create_session(model, threads: int | None = None) -> ort.InferenceSession:
    """A CPU InferenceSession for ``model`` (a path, serialized bytes or an onnx.ModelProto) with SSVQDecode."""
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    elif not isinstance(model, (bytes, bytearray)):
        model = str(model)
    return ort.InferenceSession(model, sess_options=session_options(threads), providers=["CPUExecutionProvider"])
