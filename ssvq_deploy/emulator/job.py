"""The emulate job: compress (or load the compressed file / exported ONNX) -> SSVQ ONNX, and the float ONNX of the
original weights for the int8 baseline -> compile both for the accelerator (calibrated on the bundled photos) ->
run engine and reference on photos (bit_exact) -> cycles and DRAM traffic per layer -> report.json + plot."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx

from ..atomic import ensure_writable_dir, write_text
from ..data import PHOTOS, photo_batch
from ..errors import ConfigError
from ..export.onnx_export import compressed_onnx, float_onnx
from ..models import load_model, model_spec
from ..pipeline import compress, decoded_model, load_compressed
from ..recipe import load_recipe
from .compiler import calibrate, compile_network
from .config import preset
from .engine import run_engine
from .fixedpoint import REQUANT_MODES
from .graph import Graph, read_onnx, run_float
from .network import CodebookWeights, QuantizedNetwork
from .reference import run_reference
from .report import layer_rows, plot, speedup_breakdown
from .timing import estimate

log = logging.getLogger(__name__)
BUILDS = ("int8", "ssvq")


@dataclass(frozen=True)
class EmulateConfig:
    """Options of ``ssvq emulate`` / ``tools/emulate.py``."""

    model: str = "mobilenetv2_ssvq"  # recipe name
    preset: str = "paper_edge"  # accelerator preset (config.PRESETS)
    weights: str | None = None  # torchvision-format checkpoint: the int8 baseline's weights and k-means input
    k: int | None = None
    d: int | None = None
    method: str | None = None
    hessian: bool | None = None
    compressed: str | None = None  # a compressed file instead of running k-means
    onnx: str | None = None  # an exported SSVQ ONNX model (ssvq export's ssvq.onnx) instead of compressing
    images: int = 4  # bundled photos run through engine and reference (the bit_exact check)
    size: int | None = None  # input resolution; default: the model's (224 for MobileNetV2)
    requant: str = "gemmlowp"  # output-stage convention: gemmlowp (fixed point) or fp32 (ONNX Runtime's)
    out: str | None = None  # default out/<model>/emulate_<preset>

    def out_dir(self) -> Path:
        return Path(self.out or Path("out") / self.model / f"emulate_{self.preset}")

    def check(self) -> None:
        if self.compressed and self.onnx:
            raise ConfigError("give --compressed or --onnx, not both")
        if not 1 <= self.images <= len(PHOTOS):
            raise ConfigError(f"images must be in 1..{len(PHOTOS)} (the bundled photos), got {self.images}")
        if self.size is not None and self.size < 32:
            raise ConfigError(f"size must be >= 32, got {self.size}")
        if self.requant not in REQUANT_MODES:
            raise ConfigError(f"requant must be one of {REQUANT_MODES}, got {self.requant!r}")
        preset(self.preset)


def _ssvq_onnx(config: EmulateConfig, recipe, input_shape) -> onnx.ModelProto:
    if config.onnx:
        try:
            return onnx.load(config.onnx)
        except Exception as exc:  # onnx raises OSError, protobuf DecodeError, ...
            raise ConfigError(f"cannot read ONNX model {config.onnx}: {exc}") from exc
    if config.compressed:
        compressed = load_compressed(config.compressed)
        if compressed.model != recipe.model:
            raise ConfigError(f"{config.compressed} holds a {compressed.model}, recipe {recipe.name} a {recipe.model}")
    else:
        log.info("[emulate] k-means: %s k=%d d=%d", recipe.quant.method, recipe.quant.k, recipe.quant.d)
        compressed = compress(recipe, config.weights).compressed
    return compressed_onnx(compressed, decoded_model(compressed), input_shape)


def codebook_error(network: QuantizedNetwork) -> float:
    """||W(int8 codebook) - W(fp16 codebook)|| / ||W(fp16)|| over every codebook layer: the cost of int8 codewords."""
    err_sq = norm_sq = 0.0
    for op in network.conv_ops():
        if isinstance(op.weights, CodebookWeights):
            w = op.weights
            counts = np.bincount(w.layer.assignments(), minlength=w.layer.k)
            exact = w.layer.codebook.astype(np.float64)
            diff = w.codebook.astype(np.float64) * w.codebook_scale - exact
            err_sq += float(counts @ (diff ** 2).sum(axis=1))
            norm_sq += float(counts @ (exact ** 2).sum(axis=1))
    return (err_sq / norm_sq) ** 0.5 if norm_sq else 0.0


def _check(graphs: dict[str, Graph], networks: dict[str, QuantizedNetwork], photos: np.ndarray, accel) -> dict:
    """Engine vs reference on ``photos`` for each build, and top-1 agreement with the fp32 original."""
    fp32 = run_float(graphs["int8"], photos)[graphs["int8"].output].argmax(1)
    result = {"bit_exact_by_build": {}, "top1_agreement_vs_fp32": {}, "mismatched_outputs": {}}
    for build, network in networks.items():
        x = network.quantize_input(photos)
        engine = run_engine(network, x, accel)[network.output]
        reference = run_reference(network, x)[network.output]
        result["bit_exact_by_build"][build] = bool(np.array_equal(engine, reference))
        result["mismatched_outputs"][build] = int((engine != reference).sum())
        result["top1_agreement_vs_fp32"][build] = float((network.dequantize_output(engine).argmax(1) == fp32).mean())
    ssvq_float = run_float(graphs["ssvq"], photos)[graphs["ssvq"].output].argmax(1)
    result["top1_agreement_vs_fp32"]["ssvq_float"] = float((ssvq_float == fp32).mean())
    return result


def run_emulation(config: EmulateConfig) -> dict:
    """Run the whole job; returns the report (also written to ``<out>/report.json``, plot in ``<out>/layers.png``)."""
    t0 = time.perf_counter()
    config.check()
    accel = preset(config.preset)
    recipe = load_recipe(config.model).with_quant(k=config.k, d=config.d, method=config.method,
                                                  hessian=config.hessian)
    spec = model_spec(recipe.model)
    size = config.size or spec.input_shape[-1]
    input_shape = (1, spec.input_shape[1], size, size)
    out = ensure_writable_dir(config.out_dir())

    log.info("[emulate] %s: exporting the SSVQ and float ONNX graphs", config.model)
    graphs = {"int8": read_onnx(float_onnx(load_model(recipe.model, config.weights), input_shape)),
              "ssvq": read_onnx(_ssvq_onnx(config, recipe, input_shape))}
    if not any(not isinstance(op.weight, np.ndarray) for op in graphs["ssvq"].conv_ops()):
        raise ConfigError(f"{config.onnx}: the model holds no SSVQDecode nodes (is it the float export?)")
    names_int8 = [op.name for op in graphs["int8"].conv_ops()]
    if names_int8 != [op.name for op in graphs["ssvq"].conv_ops()]:
        raise ConfigError("the SSVQ model's layers do not match the int8 baseline's (another architecture?)")

    names, photos = photo_batch(size=size)
    photos = photos.numpy()
    log.info("[emulate] calibrating on %d photos, compiling for %s (%s requant)", len(names), accel.name,
             config.requant)
    networks = {b: compile_network(g, calibrate(g, photos), config.requant) for b, g in graphs.items()}

    log.info("[emulate] engine vs integer reference on %d photo(s) at %dx%d", config.images, size, size)
    checked = _check(graphs, networks, photos[:config.images], accel)

    timings = {b: estimate(n, accel) for b, n in networks.items()}
    rows = layer_rows(timings["int8"], timings["ssvq"], accel)
    out_shapes = [networks["int8"].shapes[op.output] for op in networks["int8"].ops]
    plot(rows, accel, out / "layers.png")
    t8, ts = timings["int8"], timings["ssvq"]
    report = {
        "model": config.model, "preset": accel.name, "accelerator": asdict(accel),
        "ridge_macs_per_byte": accel.ridge_macs_per_byte,
        "input_shape": list(input_shape), "batch": 1, "requant": config.requant, "codewords": "int8",
        "speedup_vs_int8": t8.cycles / ts.cycles,
        "bit_exact": all(checked["bit_exact_by_build"].values()),
        **checked,
        "verify_images": names[:config.images], "calibration_images": len(names),
        "cycles": {"int8": t8.cycles, "ssvq": ts.cycles},
        "latency_ms": {"int8": t8.latency_ms, "ssvq": ts.latency_ms},
        "dram_bytes": {"int8": t8.dram_bytes, "ssvq": ts.dram_bytes},
        "dram_bytes_by_kind": {"int8": t8.bytes_by_kind(), "ssvq": ts.bytes_by_kind()},
        "macs": sum(r["macs"] for r in rows),
        "codebook_int8_rel_error": codebook_error(networks["ssvq"]),
        "stages": speedup_breakdown(rows, out_shapes),
        "plot": str(out / "layers.png"),
        "seconds": round(time.perf_counter() - t0, 1),
        "config": asdict(config),
        "layers": rows,
    }
    write_text(out / "report.json", json.dumps(report, indent=2))
    return report
