"""Wall-clock latency of an ONNX Runtime session: warm-up, then median and p90 over many runs."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort


@dataclass(frozen=True)
class LatencyStats:
    median_ms: float
    p90_ms: float
    runs: int


def time_session(session: ort.InferenceSession, feed: dict[str, np.ndarray], runs: int = 100,
                 warmup: int = 10) -> LatencyStats:
    """Time ``session.run`` on ``feed``: ``warmup`` untimed runs, then ``runs`` timed ones."""
    for _ in range(warmup):
        session.run(None, feed)
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        times[i] = time.perf_counter() - start
    return LatencyStats(float(np.median(times) * 1e3), float(np.percentile(times, 90) * 1e3), runs)
