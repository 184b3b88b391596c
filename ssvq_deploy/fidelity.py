"""How close a compressed model stays to its fp32 teacher, without labels."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def agreement(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> dict[str, float]:
    """``top1``: fraction where the argmaxes agree; ``top5``: fraction where the teacher's top-1 class is in the
    student's top 5; ``kl``: mean KL(teacher || student) of the softmax outputs, in nats."""
    top1 = teacher_logits.argmax(-1)
    top5 = student_logits.topk(5, -1).indices
    kl = F.kl_div(F.log_softmax(student_logits, -1), F.log_softmax(teacher_logits, -1), log_target=True,
                  reduction="batchmean")
    return {"top1": float((student_logits.argmax(-1) == top1).float().mean()),
            "top5": float((top5 == top1[:, None]).any(-1).float().mean()), "kl": float(kl)}
