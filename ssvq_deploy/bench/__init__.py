"""Side-by-side measurements: latency of ONNX Runtime sessions on the same machine, same threads."""
from .latency import LatencyStats, time_session

__all__ = ["LatencyStats", "time_session"]
