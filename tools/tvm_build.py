#!/usr/bin/env python
"""TVM: import the SSVQ ONNX model with our converter, fuse every decode into its conv/dense kernel, build with hand
schedules for x86 AVX-512 and cross-build for aarch64, verify against PyTorch, export the shared libraries and the
C++ runner, and time TVM fp32 / TVM SSVQ-fused / ONNX Runtime side by side (docs/tvm.md).
Example: python tools/tvm_build.py --model mobilenetv2_ssvq"""
import sys

from ssvq_deploy.cli import main

if __name__ == "__main__":
    sys.exit(main(["tvm", *sys.argv[1:]]))
