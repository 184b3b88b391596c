#!/usr/bin/env python
"""Compress (or load), export to ONNX with SSVQDecode, verify against PyTorch, and compare size and latency with
fp32 and int8 builds of the same weights. Example: python tools/export.py --model mobilenetv2_ssvq"""
import sys

from ssvq_deploy.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
