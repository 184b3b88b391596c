"""TVM backend (Relax + TensorIR, target llvm): SSVQDecode converter, decode fused into conv/dense kernels, hand
schedules for x86 AVX-512, aarch64 cross-builds, the no-full-weight check and a C++ runner (docs/tvm.md).

Named ``tvm_backend`` so that ``import tvm`` inside it always means Apache TVM.
"""
from .build import (BuildError, Lowered, aarch64_config, aarch64_target, build_onnx, compile_module, prepare,
                    run_executable, x86_config, x86_target)
from .check import MaterialisedWeightError, WeightCheck, check_no_full_weight
from .converter import ConversionError, import_onnx, ssvq_converters
from .fuse import FusionReport, fuse_decode

__all__ = ["BuildError", "ConversionError", "FusionReport", "Lowered", "MaterialisedWeightError", "WeightCheck",
           "aarch64_config", "aarch64_target", "build_onnx", "check_no_full_weight", "compile_module", "fuse_decode",
           "import_onnx", "prepare", "run_executable", "ssvq_converters", "x86_config", "x86_target"]
