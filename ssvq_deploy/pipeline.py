"""The user-level verbs, shared by the CLI and tools/: compress a model per its recipe, rebuild models from files."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from .atomic import ensure_writable_dir, write_text
from .data import PHOTOS, photo_batch
from .format import CompressedModel, load, save
from .models import load_model, load_state, model_spec
from .quant.compress import compress_model
from .quant.hessian import fisher_diagonal
from .quant.report import compression_report
from .recipe import Recipe

log = logging.getLogger(__name__)
COMPRESSED_FILE = "model.ssvq.safetensors"


@dataclass
class Compression:
    original: nn.Module  # the fp32 model the compression started from
    compressed: CompressedModel
    report: dict


def compress(recipe: Recipe, weights: str | Path | None = None, progress: bool = False) -> Compression:
    """Load the recipe's model (``weights`` or its default pretrained file) and compress it. With
    ``recipe.quant.hessian``, k-means is weighted by the Fisher diagonal measured on the bundled photos."""
    original = load_model(recipe.model, weights)
    importance = None
    if recipe.quant.hessian:
        log.info("estimating the Fisher diagonal on %d photos", len(PHOTOS))
        importance = fisher_diagonal(original, photo_batch()[1])
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


def load_compressed(path: str | Path) -> CompressedModel:
    """Read a compressed file and check it fits its model's architecture."""
    compressed = load(path)
    decoded_model(compressed)  # raises WeightsError naming mismatched tensors
    return compressed
