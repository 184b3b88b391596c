#!/usr/bin/env python
"""Run MobileNetV2 (SSVQDecode export) through the C++ runner on x86-64 and on aarch64 under qemu-user, and print
both runs and their difference. Needs `bash custom_ops/build_edge.sh` (make edge-check runs both)."""
import sys

import numpy as np

from ssvq_deploy.data import photo_batch
from ssvq_deploy.export.onnx_export import compressed_onnx, save_onnx
from ssvq_deploy.models import load_model
from ssvq_deploy.pipeline import decoded_model
from ssvq_deploy.quant.compress import compress_model
from ssvq_deploy.recipe import load_recipe
from ssvq_deploy.runtime.native_runner import EDGE_BUILD, run_native


def main() -> int:
    recipe = load_recipe("mobilenetv2_ssvq")
    compressed = compress_model(load_model(recipe.model), recipe.quant, recipe.model)
    path = EDGE_BUILD / "mobilenetv2_ssvq.onnx"
    save_onnx(compressed_onnx(compressed, decoded_model(compressed), (1, 3, 224, 224)), path)
    _, x = photo_batch(["chelsea"])
    runs = {arch: run_native(arch, path, x.numpy(), runs=1) for arch in ("x86_64", "aarch64")}
    for arch, run in runs.items():
        print(f"--- {arch}{' (qemu-user)' if arch == 'aarch64' else ''}: {path.name}\n{run.stdout.strip()}")
    a, b = runs["x86_64"].output, runs["aarch64"].output
    print(f"--- aarch64 vs x86-64: max |diff| {np.abs(a - b).max():.3g} on logits up to {np.abs(a).max():.3g}, "
          f"argmax {'agrees' if a.argmax() == b.argmax() else 'DIFFERS'}")
    return 0 if np.abs(a - b).max() < 1e-5 * np.abs(a).max() and a.argmax() == b.argmax() else 1


if __name__ == "__main__":
    sys.exit(main())
