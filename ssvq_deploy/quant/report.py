"""Per-layer and whole-model accounting of a compression: bits, compression ratio, reconstruction error."""
from __future__ import annotations

from torch import nn

from ..format import CompressedModel, bits_per_weight, compression_ratio, dense_bits, quantized_bits
from .compress import quantizable_layers, relative_error


def compression_report(original: nn.Module, compressed: CompressedModel) -> dict:
    """Report dict: ``compression_ratio``, ``bits_per_weight``, ``n_weights``, ``rel_error`` (||W - W_hat|| / ||W||
    over all conv/linear weights together) and a ``layers`` list (name, shape, method, k, d, bits_per_weight,
    rel_error); uncompressed layers are listed as fp32."""
    rows, bits, err_sq, norm_sq = [], [], 0.0, 0.0
    for name, module in quantizable_layers(original).items():
        layer = compressed.layers.get(name)
        if layer is None:
            b = dense_bits(module.weight.numel())
            rows.append({"name": name, "shape": list(module.weight.shape), "method": "fp32", "k": None,
                         "d": None, "bits_per_weight": 32.0, "rel_error": 0.0})
        else:
            b = quantized_bits(layer.numel, layer.k, layer.d, layer.method == "ssvq")
            rows.append({"name": name, "shape": list(layer.shape), "method": layer.method, "k": layer.k,
                         "d": layer.d, "bits_per_weight": b.bits_per_weight,
                         "rel_error": relative_error(module.weight, layer)})
        bits.append(b)
        layer_norm_sq = float(module.weight.detach().double().square().sum())
        norm_sq += layer_norm_sq
        err_sq += rows[-1]["rel_error"] ** 2 * layer_norm_sq
    return {"model": compressed.model, "method": compressed.meta.get("method"),
            "compression_ratio": compression_ratio(bits), "bits_per_weight": bits_per_weight(bits),
            "n_weights": sum(b.numel for b in bits), "rel_error": (err_sq / norm_sq) ** 0.5, "layers": rows}
