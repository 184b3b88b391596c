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
from .errors import ConfigError
from .format import CompressedModel, load, save
from .models import load_model, load_state, model_spec
from .quant.compress import compress_model
from .quant.hessian import fisher_diagonal
from .quant.modules import attach_quant_weights
from .quant.report import compression_report
from .recipe import Recipe
from .tasks import task_for
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
    ``recipe.quant.hessian``, k-means is weighted by a Hessian diagonal measured on the training samples (the
    model's task says which objective: tasks.py)."""
    original = load_model(recipe.model, weights)
    importance = None
    if recipe.quant.hessian:  # calibration on the training samples only: the held-out ones judge fidelity
        task = task_for(recipe.model)
        calibration = task.samples("train")
        log.info("estimating the Hessian diagonal on %d training %s", len(calibration), task.unit)
        importance = fisher_diagonal(original, task.per_sample(calibration), task.fisher_objective)
    compressed = compress_model(original, recipe.quant, recipe.model, importance, progress=progress)
    compressed.meta["recipe"] = recipe.name
    return Compression(original, compressed, compression_report(original, compressed))


def compressed_for(recipe: Recipe, weights: str | Path | None = None, compressed_file: str | Path | None = None,
                   progress: bool = False) -> tuple[nn.Module, CompressedModel]:
    """(fp32 model, compressed model): ``compressed_file`` if given (checked to be the recipe's model), else a
    fresh k-means compression of the recipe's model."""
    if compressed_file is None:
        result = compress(recipe, weights, progress=progress)
        return result.original, result.compressed
    original, compressed = load_model(recipe.model, weights), load_compressed(compressed_file)
    if compressed.model != recipe.model:
        raise ConfigError(f"{compressed_file} holds a {compressed.model}, recipe {recipe.name} a {recipe.model}")
    return original, compressed


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


def held_out_fidelity(teacher: nn.Module, student: nn.Module, model: str) -> dict[str, float]:
    """Agreement of ``student`` with ``teacher`` (both a ``model``) on its task's held-out samples (sources never
    used for training): top-1 / top-5 / KL for classifiers, cosine / nearest-neighbour agreement for embeddings."""
    task = task_for(model)
    held_out = task.samples("held_out")
    return task.fidelity(task.forward(teacher, held_out), task.forward(student, held_out))


def finetune_compressed(original: nn.Module, compressed: CompressedModel, config: FinetuneConfig,
                        crops_per_sample: int | None = None, progress: bool = False) -> tuple[CompressedModel, dict]:
    """Distil ``original`` (the fp32 teacher) into the compressed model on the training samples of its task, each
    augmented ``crops_per_sample`` times per epoch (default: the task's; photos: random crops, texts: random token
    spans); the loss is the task's (KL of softened logits; 1 - cosine of embeddings). Returns the fine-tuned
    compressed model and a summary (held-out fidelity before/after, losses, sign counts)."""
    task = task_for(compressed.model)
    crops = task.default_crops if crops_per_sample is None else crops_per_sample
    if crops < 1:
        raise ConfigError(f"crops per sample must be >= 1, got {crops}")
    student = decoded_model(compressed)
    before = held_out_fidelity(original, student, compressed.model)
    originals = {name: module.weight for name, module in original.named_modules() if name in compressed.layers}
    qweights = attach_quant_weights(student, compressed.layers, config.theta, originals)
    inputs, augment = task.training_set(crops)
    losses = finetune(student, qweights, inputs, config, teacher=original, augment=augment,
                      distill=task.distillation(config), progress=progress)
    tuned = to_compressed(qweights, compressed, {"finetune": dataclasses.asdict(config)})
    n = inputs.shape[0] if isinstance(inputs, torch.Tensor) else inputs[0].shape[0]
    summary = {"held_out_before": before,
               "held_out_after": held_out_fidelity(original, decoded_model(tuned), compressed.model),
               "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
               "steps": len(losses), "train_samples": int(n), "crops_per_sample": crops,
               "signs": sign_statistics(qweights)}
    return tuned, summary


def load_compressed(path: str | Path) -> CompressedModel:
    """Read a compressed file and check it fits its model's architecture."""
    compressed = load(path)
    decoded_model(compressed)  # raises WeightsError naming mismatched tensors
    return compressed
