#!/usr/bin/env python
"""fp32 vs int8 vs SSVQ (decode-at-load, fused) latency and memory, side by side. Example: python tools/bench.py
--workloads mobilenetv2_b1 linear_4x4096 --threads 1 2   (= ssvq bench)"""
import sys

from ssvq_deploy.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
