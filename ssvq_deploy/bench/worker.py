"""One benchmark configuration in a fresh process, so that its peak RSS is its own:
``python -m ssvq_deploy.bench.worker SPEC.json`` prints one JSON result on stdout.

Imports only numpy, onnx and onnxruntime (and the golden decoder for decode-at-load), never torch. The spec:
``{"model": path, "library": bool, "decode_at_load": bool, "threads": int, "input": name, "shape": [...],
"dtype": "float32" | "int64", "feed": .npz path or null, "runs": int, "warmup": int, "report": path or null}``; a
``feed`` (named arrays, e.g. input_ids and attention_mask) replaces the random ``input``.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """VmHWM: this process's high-water mark (ru_maxrss would include the parent's, inherited through fork)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _options(spec: dict, profile_prefix: str | None = None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(spec["threads"])
    options.inter_op_num_threads = 1
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    if spec["library"]:
        from ..runtime.ort_library import library_path
        if spec.get("report"):
            options.add_session_config_entry("ssvq.kernel_report", spec["report"])  # read at registration
        options.register_custom_ops_library(str(library_path()))
    return options


def _node_kernels(spec: dict, model_bytes: bytes, feed: dict) -> list[dict]:
    """Per node: op type and provider as ORT ran it (one profiled run in a separate session)."""
    with tempfile.TemporaryDirectory() as tmp:
        session = ort.InferenceSession(model_bytes, _options({**spec, "report": None}, os.path.join(tmp, "p")),
                                       providers=["CPUExecutionProvider"])
        session.run(None, feed)
        with open(session.end_profiling()) as f:
            events = json.load(f)
    nodes = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            args = e.get("args", {})
            nodes[args.get("node_name", e["name"][: -len("_kernel_time")])] = {
                "op": args.get("op_name", "?"), "provider": args.get("provider", "?")}
    return [{"node": k, **v} for k, v in nodes.items()]


def run(spec: dict) -> dict:
    rss_start = rss_bytes()
    model = onnx.load(spec["model"])
    if spec.get("decode_at_load"):
        from ..runtime.decode_at_load import decode_at_load
        model = decode_at_load(model)
    weight_bytes = sum(int(np.prod(t.dims)) * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
                       for t in model.graph.initializer)
    model_bytes = model.SerializeToString()
    del model
    if spec.get("feed"):
        with np.load(spec["feed"]) as arrays:
            feed = {name: arrays[name] for name in arrays.files}
    else:
        rng = np.random.default_rng(0)
        shape = spec["shape"]
        x = (rng.integers(1000, 2000, shape) if spec["dtype"] == "int64" else rng.standard_normal(shape)).astype(
            spec["dtype"])
        feed = {spec["input"]: x}
    rss_before = rss_bytes()
    t0 = time.perf_counter()
    session = ort.InferenceSession(model_bytes, _options(spec), providers=["CPUExecutionProvider"])
    create_s = time.perf_counter() - t0
    for _ in range(int(spec["warmup"])):
        session.run(None, feed)
    rss_after = rss_bytes()
    times = np.empty(int(spec["runs"]))
    for i in range(len(times)):
        start = time.perf_counter()
        session.run(None, feed)
        times[i] = time.perf_counter() - start
    result = {
        "median_ms": float(np.median(times) * 1e3), "p90_ms": float(np.percentile(times, 90) * 1e3),
        "min_ms": float(times.min() * 1e3), "runs": len(times), "threads": int(spec["threads"]),
        "session_create_s": create_s,
        "graph_weight_bytes": int(weight_bytes),
        "rss_start_mb": rss_start / 2**20,
        "rss_session_delta_mb": (rss_after - rss_before) / 2**20,
        "peak_rss_mb": peak_rss_bytes() / 2**20,
    }
    del session
    result["nodes"] = _node_kernels(spec, model_bytes, feed)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as f:
        spec = json.load(f)
    json.dump(run(spec), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
