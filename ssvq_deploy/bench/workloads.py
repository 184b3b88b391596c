"""The benchmark workloads: each writes, from one set of weights, the ONNX model of every configuration
(fp32, int8 static QDQ per-channel, int8 dynamic for Linear models and transformers, SSVQ decode-at-load, SSVQ fused
int8 and float) and says how to feed it. SSVQ fused int8 of a conv model keeps static uint8 NHWC activations between
SSVQConv nodes, calibrated on the int8 QDQ build's calibration inputs. Accuracy of each build against its reference
is measured here too (not timed)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from ..errors import ConfigError
from ..export.fused import FusedConfig, fuse
from ..export.int8 import int8_qdq
from ..export.onnx_export import INPUT, check, compressed_onnx, float_onnx, save_onnx
from ..export.static_activations import StaticActivations, quantize_activations
from ..format import CompressedModel, PackedLayer
from ..runtime import create_session

log = logging.getLogger(__name__)

# Configuration name -> (needs our library, decode the packed weights at load)
CONFIGS = {
    "fp32": (False, False),
    "int8_qdq": (False, False),
    "int8_dynamic": (False, False),
    "ssvq_decode_at_load": (False, True),
    "ssvq_fused_int8": (True, False),
    "ssvq_fused_float": (True, False),
}


@dataclass
class BuiltWorkload:
    name: str
    batch: int
    input_shape: list[int]
    models: dict[str, Path]  # configuration -> ONNX file
    accuracy: dict[str, dict] = field(default_factory=dict)  # configuration -> metrics vs its reference
    unfused: dict[str, str] = field(default_factory=dict)  # fused export: layers left on SSVQDecode
    notes: str = ""
    feed: Path | None = None  # .npz of named inputs to time with; None: one random float32 `input` of input_shape


def _fused_models(out: Path, compressed: CompressedModel, reference: nn.Module, model_io, models: dict,
                  unfused: dict, calibration: list[dict[str, np.ndarray]]) -> StaticActivations:
    """``model_io``: a models.ModelIO or an input shape (see ``float_onnx``). The int8 build gets static
    activations calibrated on ``calibration`` (feeds) where it has SSVQConv nodes; returns that rewrite."""
    base = compressed_onnx(compressed, reference, model_io)
    save_onnx(base, out / "ssvq.onnx")
    models["ssvq_decode_at_load"] = out / "ssvq.onnx"
    for numerics in ("int8", "float"):
        result = fuse(base, FusedConfig(numerics=numerics))
        check(result.model)
        if numerics == "int8":
            static = quantize_activations(result.model, calibration)
            result.model = static.model
        save_onnx(result.model, out / f"ssvq_fused_{numerics}.onnx")
        models[f"ssvq_fused_{numerics}"] = out / f"ssvq_fused_{numerics}.onnx"
        unfused.update(result.unfused)
    return static


def _outputs(path: Path, library: bool, decode: bool, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    import onnx
    from ..runtime.decode_at_load import decode_at_load
    model = onnx.load(str(path))
    if decode:
        model = decode_at_load(model)
    if library:
        session = create_session(model, threads=1)
    else:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, feed)[0] for feed in feeds])


def _single_feeds(x: np.ndarray) -> list[dict[str, np.ndarray]]:
    return [{INPUT: x[i:i + 1]} for i in range(len(x))]


def _compression(model: str, recipe: str, compressed_file: str | None) -> CompressedModel:
    """``compressed_file`` if it holds ``model``, else ``recipe`` compressed with k-means."""
    from ..pipeline import compress, load_compressed
    from ..recipe import load_recipe
    if compressed_file:
        compressed = load_compressed(compressed_file)
        if compressed.model == model:
            return compressed
        log.info("%s holds a %s, not a %s: compressing %s with k-means", compressed_file, compressed.model, model,
                 model)
    return compress(load_recipe(recipe), progress=False).compressed


def _int8_dynamic(fp32_path: Path, path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantize_dynamic(str(fp32_path), str(path), weight_type=QuantType.QInt8)


def mobilenetv2(out: Path, batch: int, compressed_file: str | None) -> BuiltWorkload:
    """torchvision's MobileNetV2 (packaged ImageNet weights) and its SSVQ k=16 d=8 compression."""
    from ..data import photo_batch
    from ..models import load_model
    from ..pipeline import decoded_model
    out.mkdir(parents=True, exist_ok=True)
    original = load_model("mobilenetv2")
    compressed = _compression("mobilenetv2", "mobilenetv2_ssvq", compressed_file)
    reference = decoded_model(compressed)
    shape = [1, 3, 224, 224]
    models: dict[str, Path] = {}
    fp32 = float_onnx(original, tuple(shape))
    save_onnx(fp32, out / "fp32.onnx")
    models["fp32"] = out / "fp32.onnx"
    names, photos = photo_batch()
    x = photos.numpy()
    int8_qdq(fp32, x, out / "int8_qdq.onnx")
    models["int8_qdq"] = out / "int8_qdq.onnx"
    built = BuiltWorkload(f"mobilenetv2_b{batch}", batch, [batch, 3, 224, 224], models)
    static = _fused_models(out, compressed, reference, shape, models, built.unfused, _single_feeds(x))
    if batch == 1:  # accuracy once per model, on the bundled photos
        with torch.no_grad():
            golden, fp32_logits = reference(photos).numpy(), original(photos).numpy()
        for config, path in models.items():
            library, decode = CONFIGS[config]
            y = _outputs(path, library, decode, _single_feeds(x))
            ref = fp32_logits if config in ("fp32", "int8_qdq") else golden
            built.accuracy[config] = {
                "reference": "fp32 torch" if ref is fp32_logits else "golden-decoded SSVQ torch",
                "top1_agreement": float((y.argmax(1) == ref.argmax(1)).mean()),
                "max_abs_err": float(np.abs(y - ref).max()), "photos": len(names)}
        built.notes = (f"{len(names)} photos; SSVQ is k-means only (no fine-tuning): its top-1 agreement with fp32 "
                       f"torch is {float((golden.argmax(1) == fp32_logits.argmax(1)).mean()):.2f}. ssvq_fused_int8: "
                       f"{static.describe('photos')}, the photos int8_qdq is calibrated on and both are scored on")
    return built


class LinearStack(nn.Module):
    def __init__(self, width: int, depth: int):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i + 1 < len(self.layers):
                x = torch.relu(x)
        return x


def linear_stack(out: Path, width: int = 4096, depth: int = 4, k: int = 16, d: int = 8) -> BuiltWorkload:
    """``depth`` x Linear(width, width) (+ReLU), batch 1. Weights: random SSVQ layers (codebook magnitudes
    |N(0, 1/sqrt(width))|, random codes and signs); fp32 and int8 builds use exactly their decoded weights."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    model = LinearStack(width, depth).eval()
    layers = {}
    for i in range(depth):
        name = f"layers.{i}"
        n = width * width
        codebook = np.abs(rng.standard_normal((k, d)) / np.sqrt(width)).astype(np.float16)
        layers[name] = PackedLayer.pack(name, (width, width), codebook, rng.integers(0, k, n // d), rng.random(n) < 0.5)
        with torch.no_grad():
            model.layers[i].weight.copy_(torch.from_numpy(layers[name].decode()))
            model.layers[i].bias.copy_(torch.from_numpy(rng.standard_normal(width).astype(np.float32) * 0.01))
    dense = {key: v.detach().numpy().copy() for key, v in model.state_dict().items() if not key.endswith(".weight")}
    compressed = CompressedModel("linear_stack", layers, dense, {"method": "ssvq", "k": k, "d": d})
    shape = [1, width]
    models: dict[str, Path] = {}
    fp32 = float_onnx(model, tuple(shape))
    save_onnx(fp32, out / "fp32.onnx")
    models["fp32"] = out / "fp32.onnx"
    calibration = rng.standard_normal((8, width)).astype(np.float32)
    int8_qdq(fp32, calibration, out / "int8_qdq.onnx")
    models["int8_qdq"] = out / "int8_qdq.onnx"
    _int8_dynamic(out / "fp32.onnx", out / "int8_dynamic.onnx")
    models["int8_dynamic"] = out / "int8_dynamic.onnx"
    built = BuiltWorkload(f"linear_{depth}x{width}", 1, shape, models)
    _fused_models(out, compressed, model, shape, models, built.unfused, _single_feeds(calibration))  # no SSVQConv
    x = rng.standard_normal((4, width)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    for config, path in models.items():
        library, decode = CONFIGS[config]
        y = _outputs(path, library, decode, _single_feeds(x))
        built.accuracy[config] = {"reference": "fp32 torch on the same (decoded) weights",
                                  "rel_l2_err": float(np.linalg.norm(y - want) / np.linalg.norm(want)),
                                  "max_abs_err": float(np.abs(y - want).max())}
    return built


def minilm(out: Path, batch: int, compressed_file: str | None, seq: int = 128) -> BuiltWorkload:
    """sentence-transformers' all-MiniLM-L6-v2 (packaged weights) and its SSVQ k=16 d=8 compression (the 36 encoder
    Linear layers), ``batch`` x ``seq`` tokens: fp32, int8 dynamic (per-channel weights, MatMulInteger; what
    ``ssvq export`` compares against), SSVQ decode-at-load, SSVQ fused (SSVQGemm) int8 and float. Timed on real
    held-out passages padded to ``seq`` tokens; accuracy on every held-out passage, one at a time."""
    from ..models import load_model, model_spec
    from ..pipeline import decoded_model
    from ..tasks import task_for
    out.mkdir(parents=True, exist_ok=True)
    original = load_model("minilm")
    compressed = _compression("minilm", "minilm_ssvq", compressed_file)
    reference = decoded_model(compressed)
    model_io, task = model_spec("minilm").model_io(), task_for("minilm")
    models: dict[str, Path] = {}
    fp32 = float_onnx(original, model_io)
    save_onnx(fp32, out / "fp32.onnx")
    models["fp32"] = out / "fp32.onnx"
    held_out = task.samples("held_out")
    task.int8(fp32, held_out, out / "int8_dynamic.onnx")
    models["int8_dynamic"] = out / "int8_dynamic.onnx"
    built = BuiltWorkload(f"minilm_b{batch}", batch, [batch, seq], models)
    feeds = [dict(zip(model_io.input_names, (t.numpy() for t in task.sample(held_out, i))))
             for i in range(len(held_out))]
    _fused_models(out, compressed, reference, model_io, models, built.unfused, feeds)  # no SSVQConv: no calibration
    ids, mask = held_out.inputs
    if batch > ids.shape[0] or ids.shape[1] != seq:
        raise ConfigError(f"minilm_b{batch}: needs at most {ids.shape[0]} passages of {ids.shape[1]} tokens")
    built.feed = out / f"feed_b{batch}.npz"
    np.savez(built.feed, **{name: t[:batch].numpy() for name, t in zip(model_io.input_names, (ids, mask))})
    golden, fp32_emb = task.forward(reference, held_out), task.forward(original, held_out)
    for config, path in models.items():
        library, decode = CONFIGS[config]
        y = _outputs(path, library, decode, feeds)
        ref = fp32_emb if config in ("fp32", "int8_dynamic") else golden
        built.accuracy[config] = {
            "reference": "fp32 torch" if ref is fp32_emb else "golden-decoded SSVQ torch",
            **task.fidelity(ref, torch.from_numpy(y)), "max_abs_err": float(np.abs(y - ref.numpy()).max()),
            "texts": len(held_out)}
    origin = "fine-tuned" if "finetune" in compressed.meta else "k-means only (no fine-tuning)"
    built.notes = (f"{len(held_out)} held-out passages; timing input: {batch} of them padded to {seq} tokens. SSVQ "
                   f"weights {origin}: the golden-decoded embeddings' mean cosine with fp32 torch is "
                   f"{task.fidelity(fp32_emb, golden)['cosine']:.3f}")
    return built


WORKLOADS = ("mobilenetv2_b1", "mobilenetv2_b8", "linear_4x4096", "minilm_b1")
_PATTERNS = "mobilenetv2_b<batch>, linear_<depth>x<width>, minilm_b<batch>"


def _batch_of(name: str, prefix: str) -> int | None:
    rest = name[len(prefix):] if name.startswith(prefix) else ""
    return int(rest) if rest.isdigit() and int(rest) > 0 else None


def build_all(names: list[str], out: Path, compressed_file: str | None = None) -> list[BuiltWorkload]:
    """Build the models of every workload under ``out``; the batch sizes of one model share one set of files.
    ``compressed_file`` replaces k-means for the workloads of the model it holds."""
    bad = [n for n in names if _batch_of(n, "mobilenetv2_b") is None and _batch_of(n, "minilm_b") is None
           and not (n.startswith("linear_") and all(p.isdigit() for p in n[len("linear_"):].split("x")))]
    if bad:
        raise ConfigError(f"unknown workloads {bad}; available: {', '.join(WORKLOADS)} ({_PATTERNS})")
    built, mobilenet = [], None
    for name in names:
        if (batch := _batch_of(name, "mobilenetv2_b")) is not None:
            if mobilenet is None:
                mobilenet = mobilenetv2(out / "mobilenetv2", 1, compressed_file)
            built.append(BuiltWorkload(name, batch, [batch, 3, 224, 224], mobilenet.models,
                                       mobilenet.accuracy if batch == 1 else {}, mobilenet.unfused,
                                       mobilenet.notes))
        elif (batch := _batch_of(name, "minilm_b")) is not None:
            built.append(minilm(out / "minilm", batch, compressed_file))
        else:
            depth, width = (int(p) for p in name[len("linear_"):].split("x"))
            built.append(linear_stack(out / name, width=width, depth=depth))
    return built
