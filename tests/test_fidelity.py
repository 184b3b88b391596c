"""Label-free fidelity metrics: classifier agreement and sentence-embedding agreement."""
import pytest
import torch

from ssvq_deploy.fidelity import embedding_agreement


def test_embedding_agreement_identity_and_known_values():
    torch.manual_seed(0)
    teacher = torch.randn(6, 16)
    same = embedding_agreement(teacher, teacher * 3)  # scale does not matter: cosine
    assert same == pytest.approx({"cosine": 1.0, "cosine_min": 1.0, "nn_top1": 1.0})
    flipped = teacher.clone()
    flipped[0] = -flipped[0]
    r = embedding_agreement(teacher, flipped)
    assert r["cosine_min"] == pytest.approx(-1.0) and r["cosine"] == pytest.approx(4 / 6)


def test_nearest_neighbour_agreement_counts_changed_retrievals():
    # 0 and 1 are each other's neighbours, as are 2 and 3; the student moves 1 next to 3 and 2
    teacher = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    student = torch.tensor([[1.0, 0.0], [0.05, 1.0], [0.0, 1.0], [0.1, 0.9]])
    r = embedding_agreement(teacher, student)
    # teacher NN: 0->1, 1->0, 2->3, 3->2; student NN: 0->3 (closest of 1,2,3), 1->2, 2->1, 3->1
    assert r["nn_top1"] == pytest.approx(0.0)
    assert r["nn_top1"] <= r["cosine"]
