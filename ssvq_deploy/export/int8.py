"""The int8 baselines users compare against: ONNX Runtime static QDQ quantization (per-channel, calibrated; CNNs) and
dynamic quantization (transformers)."""
from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                      quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

from ..atomic import atomic_path

log = logging.getLogger(__name__)


class _Batches(CalibrationDataReader):
    def __init__(self, input_name: str, samples: np.ndarray):
        self._feeds = iter([{input_name: s[None]} for s in samples])

    def get_next(self):
        return next(self._feeds, None)


def int8_qdq(float_model: onnx.ModelProto, calibration: np.ndarray, path: str | Path) -> int:
    """Write the static QDQ int8 model (uint8 activations, int8 per-channel weights, MinMax calibration on
    ``calibration`` [n, ...] one sample at a time) to ``path``; returns its size in bytes."""
    input_name = float_model.graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        raw, prepared = Path(tmp) / "float.onnx", Path(tmp) / "prepared.onnx"
        onnx.save(float_model, str(raw))
        quant_pre_process(str(raw), str(prepared), skip_symbolic_shape=True)
        with atomic_path(path) as out:
            quantize_static(str(prepared), str(out), _Batches(input_name, calibration), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return Path(path).stat().st_size


def int8_dynamic(float_model: onnx.ModelProto, path: str | Path, op_types: tuple[str, ...] | None = None,
                 per_channel: bool = False) -> int:
    """Write the dynamic int8 model (int8 weights, per-tensor or ``per_channel``; activations quantized at run time:
    MatMulInteger / ConvInteger), the usual int8 for transformers, to ``path``; returns its size in bytes.
    ``op_types`` limits the quantized ops (None: every op ONNX Runtime quantizes dynamically). ORT's pre-processing
    runs first: it folds the weight Transposes of Linear layers on 3-D inputs, without which MatMul weights are not
    constants and stay fp32."""
    with tempfile.TemporaryDirectory() as tmp:
        raw, prepared = Path(tmp) / "float.onnx", Path(tmp) / "prepared.onnx"
        onnx.save(float_model, str(raw))
        quant_pre_process(str(raw), str(prepared), skip_symbolic_shape=True)
        with atomic_path(path) as out, _quiet_root_logger():
            quantize_dynamic(str(prepared), str(out), weight_type=QuantType.QInt8, per_channel=per_channel,
                             op_types_to_quantize=list(op_types) if op_types else None)
    return Path(path).stat().st_size


@contextlib.contextmanager
def _quiet_root_logger():
    """ORT's quantizer logs one INFO line per skipped node on the root logger: keep it to warnings."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)
