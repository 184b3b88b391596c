"""ONNX Runtime backend: sessions with the SSVQDecode custom-op library (custom_ops/, libssvq_ort.so)."""
from .ort_library import LibraryNotFoundError, create_session, library_path, session_options

__all__ = ["LibraryNotFoundError", "create_session", "library_path", "session_options"]
