"""Compress every Conv2d and Linear weight of a model into the packed SSVQ or VQ format."""
from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..errors import ConfigError, WeightsError
from ..format import CompressedModel, PackedLayer
from .config import QuantConfig
from .kmeans import kmeans

log = logging.getLogger(__name__)
QUANTIZABLE = (nn.Conv2d, nn.Linear)


def quantizable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every Conv2d (first, pointwise, depthwise, grouped) and Linear, by module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, QUANTIZABLE)}


def plan_layers(model: nn.Module, config: QuantConfig) -> dict[str, tuple[int, int]]:
    """(k, d) per layer to compress; checks every layer first and raises one error listing all problems.

    A layer with fewer sub-vectors than k gets the largest power-of-two k it can fill (logged, shown per layer).
    """
    plan, problems = {}, []
    for name, module in quantizable_layers(model).items():
        w = module.weight
        if w.numel() == 0:
            problems.append(f"{name}: empty weight {list(w.shape)}")
            continue
        if not torch.isfinite(w).all():
            problems.append(f"{name}: weight holds NaN or Inf")
            continue
        kd = config.for_layer(name)
        if kd is None:
            continue
        k, d = kd
        n_vec = w.numel() // d
        if w.numel() % d:
            problems.append(f"{name}: d={d} does not divide its {w.numel()} weights {list(w.shape)}")
        elif n_vec < 2:
            problems.append(f"{name}: only {n_vec} sub-vector of d={d}; needs at least 2 for a codebook")
        else:
            if n_vec < k:  # e.g. a 32-channel 3x3 depthwise conv has 36 sub-vectors of 8: more codewords are waste
                capped = 1 << (n_vec.bit_length() - 1)
                log.warning("%s: %d sub-vectors < k=%d, using k=%d for this layer", name, n_vec, k, capped)
                k = capped
            plan[name] = (k, d)
    if problems:
        raise ConfigError("cannot compress these layers (change k/d or add a skip rule in the recipe):\n  "
                          + "\n  ".join(problems))
    if not plan:
        raise ConfigError("no Conv2d or Linear layer left to compress")
    return plan


def compress_layer(name: str, weight: torch.Tensor, k: int, d: int, method: str, iters: int, seed: int,
                   importance: torch.Tensor | None = None) -> PackedLayer:
    """k-means one weight: SSVQ clusters |w| and keeps the signs apart, VQ clusters signed sub-vectors."""
    w = weight.detach().to(torch.float64)
    data = w.abs() if method == "ssvq" else w
    h = None if importance is None else importance.detach().reshape(-1, d)
    result = kmeans(data.reshape(-1, d), k, iters=iters, seed=seed, weights=h)
    negative = (w < 0).reshape(-1).numpy() if method == "ssvq" else None
    return PackedLayer.pack(name, tuple(w.shape), result.codebook.numpy(), result.assignments.numpy(), negative)


def compress_model(model: nn.Module, config: QuantConfig, model_name: str,
                   importance: dict[str, torch.Tensor] | None = None, progress: bool = False) -> CompressedModel:
    """Compress ``model``'s conv/linear weights per ``config``; ``importance`` maps layer name -> per-weight
    diagonal Hessian estimate (required when ``config.hessian``)."""
    if config.hessian and not importance:
        raise ConfigError("hessian-weighted k-means needs importance estimates (calibration data)")
    plan = plan_layers(model, config)
    modules = quantizable_layers(model)
    if config.hessian:  # a layer without its estimate would silently fall back to plain k-means
        bad = [f"{n}: no importance estimate" if n not in importance else
               f"{n}: importance {list(importance[n].shape)} != weight {list(modules[n].weight.shape)}"
               for n in plan if n not in importance or importance[n].shape != modules[n].weight.shape]
        if bad:
            raise ConfigError("hessian-weighted k-means: bad importance estimates:\n  " + "\n  ".join(bad))
    layers = {}
    for i, (name, (k, d)) in enumerate(tqdm(plan.items(), desc="k-means", disable=not progress, unit="layer")):
        h = importance.get(name) if config.hessian else None
        layers[name] = compress_layer(name, modules[name].weight, k, d, config.method, config.iters,
                                      config.seed + i, h)
    packed_keys = {f"{name}.weight" for name in layers}
    dense = {key: (t.detach().float() if t.is_floating_point() else t.detach()).numpy().copy()
             for key, t in model.state_dict().items() if key not in packed_keys}
    meta = {"method": config.method, "k": config.k, "d": config.d, "iters": config.iters, "seed": config.seed,
            "hessian": config.hessian}
    return CompressedModel(model_name, layers, dense, meta)


def relative_error(original: torch.Tensor, layer: PackedLayer) -> float:
    """||W - W_hat|| / ||W|| with W_hat from the golden decoder."""
    w = original.detach().double().numpy()
    return float(np.linalg.norm(w - layer.decode()) / max(np.linalg.norm(w), 1e-30))

