"""Locating libssvq_ort.so: a missing library is a typed error that says how to build it."""
from __future__ import annotations

import pytest

from ssvq_deploy.errors import SSVQError
from ssvq_deploy.runtime import LibraryNotFoundError, create_session, library_path, session_options


def test_library_missing(monkeypatch, tmp_path):
    missing = tmp_path / "libssvq_ort.so"
    monkeypatch.setenv("SSVQ_ORT_LIBRARY", str(missing))
    for call in (library_path, session_options, lambda: create_session(b"")):
        with pytest.raises(LibraryNotFoundError, match="make build") as info:
            call()
        assert isinstance(info.value, SSVQError)
        assert str(missing) in str(info.value) and "cmake" in str(info.value)


def test_library_env_override(monkeypatch):
    try:
        built = library_path()
    except LibraryNotFoundError as e:
        pytest.skip(f"libssvq_ort.so is not built: {e}")
    monkeypatch.setenv("SSVQ_ORT_LIBRARY", str(built))
    assert library_path() == built
    assert session_options(threads=2).intra_op_num_threads == 2
