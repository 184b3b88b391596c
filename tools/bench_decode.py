"""Decode throughput of libssvq_ort.so's SSVQDecode against the numpy golden decoder.

Times one SSVQ layer (default 4096x4096, k=16, d=8) decoded through an ONNX Runtime session whose inputs are fed
at run time, so every run really decodes (constant inputs would be decoded once and copied). The output is bound
to a preallocated buffer (IOBinding), so the timing is the decode plus ORT's per-run overhead. Reports GB/s of
decoded float32 weight (median over the runs) for the library and for PackedLayer.decode side by side.

    python tools/bench_decode.py [--rows 4096 --cols 4096 --k 16 --d 8 --runs 50 --threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ssvq_deploy.export.decode_node import single_decode_model  # noqa: E402
from ssvq_deploy.format import PackedLayer  # noqa: E402
from ssvq_deploy.runtime import create_session, library_path  # noqa: E402


def median_seconds(fn, runs: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--cols", type=int, default=4096)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--d", type=int, default=8)
    parser.add_argument("--method", choices=["ssvq", "vq"], default="ssvq")
    parser.add_argument("--runs", type=int, default=50, help="timed runs of the library (median reported)")
    parser.add_argument("--numpy-runs", type=int, default=10, help="timed runs of the numpy golden decoder")
    parser.add_argument("--threads", type=int, default=1, help="ORT intra-op threads (the decode is single-threaded)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    shape = (args.rows, args.cols)
    n = args.rows * args.cols
    codebook = rng.standard_normal((args.k, args.d)).astype(np.float16)
    negative = rng.random(n) < 0.5 if args.method == "ssvq" else None
    layer = PackedLayer.pack("bench", shape, codebook, rng.integers(0, args.k, n // args.d), negative)

    session = create_session(single_decode_model(layer, np.float16, constant_inputs=False), threads=args.threads)
    feeds = {"codebook": layer.codebook, "indices": layer.indices}
    if layer.signs is not None:
        feeds["signs"] = layer.signs
    out = np.empty(shape, np.float32)
    binding = session.io_binding()
    for name, array in feeds.items():
        binding.bind_cpu_input(name, array)
    binding.bind_output("weight", "cpu", 0, np.float32, list(shape), out.ctypes.data)

    golden = layer.decode()
    session.run_with_iobinding(binding)
    if not np.array_equal(out.view(np.uint32), golden.view(np.uint32)):
        print("ERROR: library output differs from the golden decoder", file=sys.stderr)
        return 1

    out_bytes = n * 4
    t_ort = median_seconds(lambda: session.run_with_iobinding(binding), args.runs)
    t_run = median_seconds(lambda: session.run(None, feeds), max(5, args.runs // 5))
    t_np = median_seconds(layer.decode, args.numpy_runs, warmup=1)
    in_bytes = layer.indices.nbytes + (layer.signs.nbytes if layer.signs is not None else 0) + layer.codebook.nbytes
    print(f"layer {list(shape)} k={args.k} d={args.d} {args.method}: {n} weights, {in_bytes} packed bytes -> "
          f"{out_bytes / 1e6:.1f} MB float32; library {library_path()}")
    print(f"{'decoder':<44} {'median ms':>10} {'GB/s out':>10}")
    for label, t, runs in ((f"libssvq_ort (ORT, IOBinding, {args.runs} runs)", t_ort, args.runs),
                           (f"libssvq_ort (ORT session.run, {max(5, args.runs // 5)} runs)", t_run, 0),
                           (f"numpy golden PackedLayer.decode ({args.numpy_runs} runs)", t_np, 0)):
        print(f"{label:<44} {t * 1e3:>10.2f} {out_bytes / t / 1e9:>10.2f}")
    print(f"speed-up over numpy: {t_np / t_ort:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
