"""The main job: compress (or load) -> export ONNX with SSVQDecode -> verify against PyTorch -> build fp32 and int8
from the same weights -> measure size and latency side by side -> report.json. The model's task (tasks.py) picks the
verification data (photos / held-out text passages), the int8 baseline (static QDQ / dynamic) and the agreement
metrics (top-1 / embedding cosine and nearest-neighbour)."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from .atomic import ensure_writable_dir, write_text
from .bench import time_session
from .errors import ConfigError, VerificationError
from .export.fused import FusedConfig, fuse
from .export.onnx_export import check, compressed_onnx, float_onnx, save_onnx
from .export.static_activations import quantize_activations
from .format import save
from .models import model_spec
from .pipeline import COMPRESSED_FILE, compressed_for, decoded_model
from .quant.report import compression_report
from .recipe import load_recipe
from .runtime import create_session, library_path
from .runtime.decode_at_load import decode_at_load
from .tasks import task_for

log = logging.getLogger(__name__)
MAX_ABS_ERR = 1e-4  # ORT vs PyTorch on the same decoded weights


@dataclass(frozen=True)
class ExportConfig:
    """Options of ``tools/export.py`` / ``ssvq export``."""

    model: str = "mobilenetv2_ssvq"  # recipe name
    weights: str | None = None  # checkpoint (torch or safetensors); default: the model's packaged weights
    k: int | None = None
    d: int | None = None
    method: str | None = None
    hessian: bool | None = None  # Fisher-weighted k-means; default from the recipe
    compressed: str | None = None  # reuse a compressed / fine-tuned file instead of running k-means
    portable: bool = False  # decode with an ONNX function of standard ops instead of our library
    fused: str | None = None  # also build SSVQConv/SSVQGemm ("float" or "int8" numerics, docs/ssvq_op.md)
    out: str | None = None  # default out/<model>
    threads: int = 1
    runs: int = 100

    def out_dir(self) -> Path:
        return Path(self.out or Path("out") / self.model)


def _session(model, threads: int, library: bool) -> ort.InferenceSession:
    """Every timed session gets the same options: CPU provider, ``threads`` intra-op threads, default optimisations."""
    if library:
        return create_session(model, threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _feed(names: tuple[str, ...], inputs: tuple[torch.Tensor, ...]) -> dict[str, np.ndarray]:
    return {name: t.numpy() for name, t in zip(names, inputs, strict=True)}


def _step(message: str) -> float:
    log.info("[export] %s", message)
    return time.perf_counter()


def run_export(config: ExportConfig) -> dict:
    """Run the whole job; returns the report (also written to ``<out>/report.json``)."""
    t0 = _step(f"{config.model}: preparing")
    recipe = load_recipe(config.model).with_quant(k=config.k, d=config.d, method=config.method,
                                                  hessian=config.hessian)
    if config.runs < 1 or config.threads < 1:
        raise ConfigError(f"runs and threads must be >= 1, got {config.runs}, {config.threads}")
    use_library = not config.portable
    if config.fused is not None and (config.portable or config.fused not in ("float", "int8")):
        raise ConfigError(f"--fused takes float or int8 and needs the library (not --portable), got {config.fused!r}")
    if use_library:
        library_path()  # fail now, with build instructions, rather than after minutes of work
    out = ensure_writable_dir(config.out_dir())
    if not config.compressed:
        _step(f"k-means: {recipe.quant.method} k={recipe.quant.k} d={recipe.quant.d}")
    original, compressed = compressed_for(recipe, config.weights, config.compressed, progress=True)
    save(compressed, out / COMPRESSED_FILE)
    accounting = compression_report(original, compressed)
    reference = decoded_model(compressed)
    model_io = model_spec(recipe.model).model_io()
    task = task_for(recipe.model)

    _step("exporting fp32, ssvq" + (" (portable)" if config.portable else "") + " and int8 ONNX")
    fp32_model = float_onnx(original, model_io)
    ssvq_model = compressed_onnx(compressed, reference, model_io, portable=config.portable)
    samples = task.verify_samples()
    feeds = [_feed(model_io.input_names, task.sample(samples, i)) for i in range(len(samples))]
    sizes = {"fp32": save_onnx(fp32_model, out / "fp32.onnx"), "ssvq": save_onnx(ssvq_model, out / "ssvq.onnx"),
             "int8": task.int8(fp32_model, samples, out / "int8.onnx")}
    fusion, activations = None, None
    if config.fused:
        fusion = fuse(ssvq_model, FusedConfig(numerics=config.fused))
        check(fusion.model)
        activations = "fp32 between fused ops"
        if config.fused == "int8":  # conv models: static uint8 activations, calibrated like the int8 baseline
            static = quantize_activations(fusion.model, feeds)
            fusion.model, activations = static.model, static.describe(task.unit)
        sizes["ssvq_fused"] = save_onnx(fusion.model, out / "ssvq_fused.onnx")

    _step(f"verifying on {len(samples)} {task.unit}")
    sessions = {"fp32": _session(str(out / "fp32.onnx"), config.threads, False),
                "int8": _session(str(out / "int8.onnx"), config.threads, False),
                "ssvq": _session(str(out / "ssvq.onnx"), config.threads, use_library),
                "ssvq_decode_at_load": _session(decode_at_load(ssvq_model).SerializeToString(), config.threads,
                                                False)}
    if fusion is not None:
        sessions["ssvq_fused"] = _session(str(out / "ssvq_fused.onnx"), config.threads, True)
    outputs = {name: np.concatenate([s.run(None, feed)[0] for feed in feeds]) for name, s in sessions.items()}
    torch_ssvq, torch_fp32 = task.forward(reference, samples).numpy(), task.forward(original, samples).numpy()
    max_err = float(np.abs(outputs["ssvq"] - torch_ssvq).max())
    if not max_err < MAX_ABS_ERR:
        raise VerificationError(f"verification failed: ORT vs PyTorch max abs error {max_err:.3g} >= {MAX_ABS_ERR}")
    fused_err = float(np.abs(outputs["ssvq_fused"] - torch_ssvq).max()) if fusion is not None else None
    if config.fused == "float" and not fused_err < MAX_ABS_ERR:  # int8 numerics: reported, see docs/ssvq_op.md
        raise VerificationError(f"verification failed: fused (float) vs PyTorch max abs error {fused_err:.3g} >= "
                                f"{MAX_ABS_ERR}")
    # against fp32 (what compression costs) and against the golden-decoded SSVQ model (what deployment costs)
    agreement = {**task.export_agreement(outputs, torch_fp32),
                 **task.export_agreement(outputs, torch_ssvq, "ssvq_torch")}

    feed = _feed(model_io.input_names, task.timing_input(samples))
    _step(f"timing batch 1, input {[list(v.shape) for v in feed.values()]}, {config.threads} thread(s), "
          f"{config.runs} runs each")
    latency = {name: time_session(s, feed, config.runs) for name, s in sessions.items()}
    report = {
        "model": config.model, "method": compressed.meta.get("method"),
        "compression_ratio": accounting["compression_ratio"], "bits_per_weight": accounting["bits_per_weight"],
        "onnx_bytes": sizes,
        "latency_ms": {name: s.median_ms for name, s in latency.items()},
        "latency_p90_ms": {name: s.p90_ms for name, s in latency.items()},
        "latency_runs": config.runs, "threads": config.threads, "batch": 1,
        "timing_input": {name: list(v.shape) for name, v in feed.items()},
        "max_abs_err_vs_torch": max_err,
        "fused": None if fusion is None else {"numerics": config.fused, "activations": activations,
                                              "max_abs_err_vs_torch": fused_err,
                                              "fused_layers": len(fusion.fused), "unfused": fusion.unfused},
        **{metric: by_build["ssvq"] for metric, by_build in agreement.items()},
        **{f"{metric}_by_build": by_build for metric, by_build in agreement.items()},
        "agreement_metrics": list(agreement),
        task.verify_key: samples.names,
        "int8_baseline": task.int8_baseline,
        "decode": "ONNX function of standard ops (portable)" if config.portable else f"library {library_path()}",
        "onnxruntime_version": ort.__version__,
        "seconds": round(time.perf_counter() - t0, 1),
        "config": asdict(config),
        "layers": accounting["layers"],
    }
    write_text(out / "report.json", json.dumps(report, indent=2))
    return report
