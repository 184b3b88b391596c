"""The user-level verbs, shared by the CLI and tools/: compress a model per its recipe, rebuild models from files."""
from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .atomic import ensure_writable_dir, write_text
from .data import photo_batch, random_crops, split_by_source
from .fidelity import agreement
from .format import CompressedModel, load, save
from .models import load_model, load_state, model_spec
from .quant.compress import compress_model
from .quant.hessian import fisher_diagonal
from .quant.modules import attach_quant_weights
from .quant.report import compression_report
from .recipe import Recipe
from .train.config import FinetuneConfig
from .train.finetune import finetune, sign_statistics, to_compressed

log = logging.getLogger(__name__)
COMPRESSED_FILE = "model.ssvq.safetensors"


@dataclass
class Compression:
    original: nn.Module  # the fp32 model the compression started from
    compressed: CompressedModel
    report: dict


def compress(recipe: Recipe, weights: str | Path | None = None, progress: bool = False) -> Compression:
    """Load the recipe's model (``weights`` or its default pretrained file) and compress it. With
    ``recipe.quant.hessian``, k-means is weighted by the Fisher diagonal measured on the training photos."""
    original = load_model(recipe.model, weights)
    importance = None
    if recipe.quant.hessian:  # calibration on the training photos only: the held-out ones judge fidelity
        names, images = photo_batch(split_by_source()[0])
        log.info("estimating the Fisher diagonal on %d training photos", len(names))
        importance = fisher_diagonal(original, images)
    compressed = compress_model(original, recipe.quant, recipe.model, importance, progress=progress)
    compressed.meta["recipe"] = recipe.name
    return Compression(original, compressed, compression_report(original, compressed))


def write_compression(result: Compression, out_dir: str | Path) -> Path:
    """Write ``out_dir/model.ssvq.safetensors`` and ``out_dir/report.json``; returns the compressed file path."""
    out = ensure_writable_dir(out_dir)
    path = out / COMPRESSED_FILE
    save(result.compressed, path)
    report = {**result.report, "file": str(path), "file_bytes": path.stat().st_size}
    write_text(out / "report.json", json.dumps(report, indent=2))
    return path


def decoded_model(compressed: CompressedModel) -> nn.Module:
    """The plain PyTorch model with every packed weight decoded (golden decoder): the reference for exports."""
    return load_state(model_spec(compressed.model).build(), compressed.state_dict())


def held_out_fidelity(teacher: nn.Module, student: nn.Module) -> dict[str, float]:
    """Agreement of ``student`` with ``teacher`` on the held-out photos (sources never used for training)."""
    _, images = photo_batch(split_by_source()[1])
    with torch.no_grad():
        return agreement(teacher(images), student(images))


def finetune_compressed(original: nn.Module, compressed: CompressedModel, config: FinetuneConfig,
                        crops_per_photo: int = 16, progress: bool = False) -> tuple[CompressedModel, dict]:
    """Distil ``original`` (the fp32 teacher) into the compressed model on random crops of the training photos;
    returns the fine-tuned compressed model and a summary (held-out fidelity before/after, losses, sign counts)."""
    student = decoded_model(compressed)
    before = held_out_fidelity(original, student)
    originals = {name: module.weight for name, module in original.named_modules() if name in compressed.layers}
    qweights = attach_quant_weights(student, compressed.layers, config.theta, originals)
    _, pool = photo_batch(split_by_source()[0], size=round(224 * 8 / 7))
    inputs = pool.repeat_interleave(crops_per_photo, 0)
    losses = finetune(student, qweights, inputs, config, teacher=original, augment=random_crops, progress=progress)
    tuned = to_compressed(qweights, compressed, {"finetune": dataclasses.asdict(config)})
    summary = {"held_out_before": before, "held_out_after": held_out_fidelity(original, decoded_model(tuned)),
               "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
               "steps": len(losses), "train_samples": int(inputs.shape[0]), "signs": sign_statistics(qweights)}
    return tuned, summary


def load_compressed(path: str | Path) -> CompressedModel:
    """Read a compressed file and check it fits its model's architecture."""
    compressed = load(path)
    decoded_model(compressed)  # raises WeightsError naming mismatched tensors
    return compressed
