"""Fine-tune a tiny compressed model for a few steps, in one process or under torch.distributed.run (gloo).

Usage: python ddp_worker.py OUT.pt            (one process)
       python -m torch.distributed.run --nproc_per_node 2 --master_port P ddp_worker.py OUT.pt
Rank 0 writes codebooks, signs, flip counts, frozen masks and losses to OUT.pt. Also imported by the tests for
the tiny model.
"""
from __future__ import annotations

import copy
import os
import sys

import torch
import torch.distributed as dist
from torch import nn

from ssvq_deploy.quant.compress import compress_model
from ssvq_deploy.quant.config import QuantConfig
from ssvq_deploy.quant.modules import attach_quant_weights
from ssvq_deploy.train.config import FinetuneConfig
from ssvq_deploy.train.finetune import finetune


def tiny_model(seed: int = 0) -> nn.Module:
    """conv -> BN -> ReLU -> depthwise conv -> ReLU -> pool -> linear, deterministic for ``seed``."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU(),
        nn.Conv2d(16, 32, 1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    with torch.no_grad():  # non-trivial BN statistics, to check that fine-tuning leaves them alone
        model[1].running_mean.uniform_(-0.1, 0.1)
        model[1].running_var.uniform_(0.5, 1.5)
        model[-1].weight.mul_(30)  # logits of ~1: pooled features are small, and so would be the distillation loss
    return model.eval()


def tiny_setup(seed: int = 0, k: int = 4, d: int = 4, theta: int | None = 1, n: int = 32, method: str = "ssvq"):
    """(teacher, student, qweights, compressed, inputs): the student's conv/linear layers are quantized."""
    teacher = tiny_model(seed)
    compressed = compress_model(teacher, QuantConfig(method=method, k=k, d=d, iters=10, seed=seed), "tiny")
    student = copy.deepcopy(teacher)
    originals = {name: m.weight.detach().clone() for name, m in teacher.named_modules() if name in compressed.layers}
    qweights = attach_quant_weights(student, compressed.layers, theta=theta, originals=originals)
    inputs = torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed + 1))
    return teacher, student, qweights, compressed, inputs


DDP_CONFIG = FinetuneConfig(lr=1e-2, lr_mask=5e-2, theta=1, epochs=1, batch_size=8, seed=3)


def main(out: str) -> None:
    torch.set_num_threads(1)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("gloo")
    teacher, student, qweights, _, inputs = tiny_setup()
    losses = finetune(student, qweights, inputs, DDP_CONFIG, teacher=teacher)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank == 0:
        torch.save({name: {"codebook": q.codebook.detach().clone(), "positive": q.positive.clone(),
                           "latent_positive": (q.latent.detach() >= 0), "flips": q.flips.clone(),
                           "frozen": q.frozen.clone()} for name, q in qweights.items()}
                   | {"_losses": torch.tensor(losses),
                      "_world": torch.tensor(dist.get_world_size() if dist.is_initialized() else 1)}, out)
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
