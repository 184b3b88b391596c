#!/usr/bin/env python
"""Emulate the SSVQ accelerator (docs/accelerator.md): bit-exact integer execution checked against an independent
reference, and cycles / DRAM bytes per layer against int8 on the same machine.
Example: python tools/emulate.py --model mobilenetv2_ssvq --preset lpddr4_soc"""
import sys

from ssvq_deploy.cli import main

if __name__ == "__main__":
    sys.exit(main(["emulate", *sys.argv[1:]]))
