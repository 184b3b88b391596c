"""Bit-accurate emulator of an SSVQ accelerator (docs/accelerator.md): compile an exported ONNX model into an int8
network, execute it as the hardware would (engine) and independently (reference), and model cycles and DRAM
traffic per layer against an int8 baseline on the same machine."""
from .compiler import Calibration, calibrate, compile_network
from .config import PRESETS, AcceleratorConfig, preset
from .engine import AccumulatorOverflow, run_engine
from .fixedpoint import REQUANT_MODES
from .graph import Graph, GraphError, read_onnx, run_float
from .network import QuantizedNetwork
from .reference import run_reference
from .timing import LayerTiming, NetworkTiming, estimate

__all__ = ["PRESETS", "REQUANT_MODES", "AcceleratorConfig", "AccumulatorOverflow", "Calibration", "Graph",
           "GraphError", "LayerTiming", "NetworkTiming", "QuantizedNetwork", "calibrate", "compile_network",
           "estimate", "preset", "read_onnx", "run_engine", "run_float", "run_reference"]
