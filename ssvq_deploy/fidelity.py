"""How close a compressed model stays to its fp32 teacher, without labels: classifier outputs (`agreement`) and
sentence embeddings (`embedding_agreement`)."""
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


def embedding_agreement(teacher: torch.Tensor, student: torch.Tensor) -> dict[str, float]:
    """Embeddings [n, dim] of the same n texts. ``cosine``: mean cosine similarity of each student embedding with its
    teacher embedding; ``cosine_min``: the worst one; ``nn_top1``: fraction of texts whose nearest neighbour among the
    other n-1 texts (by cosine) is the same under the student as under the teacher (retrieval agreement)."""
    t, s = F.normalize(teacher.double(), dim=-1), F.normalize(student.double(), dim=-1)
    cos = (t * s).sum(-1)
    eye = torch.eye(t.shape[0], dtype=torch.bool)
    nn_t = (t @ t.T).masked_fill(eye, -2).argmax(-1)
    nn_s = (s @ s.T).masked_fill(eye, -2).argmax(-1)
    return {"cosine": float(cos.mean()), "cosine_min": float(cos.min()),
            "nn_top1": float((nn_t == nn_s).double().mean())}
