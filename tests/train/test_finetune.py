"""Fine-tuning of a compressed model: loss goes down, targets are validated, results survive save/load."""
import copy

import numpy as np
import pytest
import torch

from ddp_worker import tiny_setup
from ssvq_deploy.errors import ConfigError
from ssvq_deploy.format import load, save
from ssvq_deploy.train.config import FinetuneConfig
from ssvq_deploy.train.finetune import distillation_loss, finetune, sign_statistics, to_compressed

CONFIG = FinetuneConfig(lr=1e-2, lr_mask=1e-2, theta=1, epochs=6, batch_size=16, seed=0)


def test_distillation_lowers_loss_and_leaves_the_rest_alone():
    teacher, student, qweights, compressed, inputs = tiny_setup(n=64)
    frozen_state = {k: v.clone() for k, v in student.state_dict().items()
                    if not k.endswith(("codebook", "latent", "flips", "frozen", "positive"))}
    codebooks = {n: q.codebook.detach().clone() for n, q in qweights.items()}
    losses = finetune(student, qweights, inputs, CONFIG, teacher=teacher)
    assert len(losses) == 6 * 4
    assert np.mean(losses[-4:]) < 0.7 * losses[0], losses
    # independent check of the objective on the whole set: distilled student is closer to the teacher
    with torch.no_grad():
        kl_after = distillation_loss(student(inputs), teacher(inputs), 1.0)
        fresh = tiny_setup(n=64)
        kl_before = distillation_loss(fresh[1](inputs), teacher(inputs), 1.0)
    assert kl_after < 0.7 * kl_before
    assert all(not torch.equal(codebooks[n], q.codebook) for n, q in qweights.items())
    assert all((q.codebook >= 0).all() for q in qweights.values())
    stats = sign_statistics(qweights)
    assert stats["signs"] == sum(q.latent.numel() for q in qweights.values())
    assert 0 < stats["flipped"] == stats["frozen"]  # theta=1: every flipped sign is frozen
    for key, value in frozen_state.items():  # BN statistics, biases: untouched (eval mode, not trained)
        assert torch.equal(student.state_dict()[key], value), key


def test_cross_entropy_with_labels():
    teacher, student, qweights, _, inputs = tiny_setup(n=64)
    with torch.no_grad():
        labels = teacher(inputs).argmax(-1)
    losses = finetune(student, qweights, inputs, CONFIG, labels=labels)
    assert np.mean(losses[-4:]) < losses[0]
    with torch.no_grad():
        ce = torch.nn.functional.cross_entropy(student(inputs), labels)
    assert ce < losses[0]


def test_vq_codebooks_fine_tune():
    teacher, student, qweights, compressed, inputs = tiny_setup(n=64, k=16, method="vq")
    assert all(not q.signed for q in qweights.values())
    losses = finetune(student, qweights, inputs, CONFIG, teacher=teacher)
    assert np.mean(losses[-4:]) < 0.7 * losses[0]
    assert sign_statistics(qweights) == {"signs": 0, "flipped": 0, "frozen": 0}
    tuned = to_compressed(qweights, compressed, {})
    assert all(layer.method == "vq" for layer in tuned.layers.values())
    assert any((layer.codebook < 0).any() for layer in tuned.layers.values())


def test_exactly_one_target():
    teacher, student, qweights, _, inputs = tiny_setup()
    with pytest.raises(ConfigError, match="exactly one target"):
        finetune(student, qweights, inputs, CONFIG)
    with pytest.raises(ConfigError, match="exactly one target"):
        finetune(student, qweights, inputs, CONFIG, teacher=teacher, labels=torch.zeros(32, dtype=torch.long))


@pytest.mark.parametrize("kwargs, match", [(dict(lr=0), "lr"), (dict(lr_mask=-1.0), "lr_mask"),
                                           (dict(theta=0), "theta"), (dict(batch_size=0), "batch_size"),
                                           (dict(temperature=0), "temperature")])
def test_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        FinetuneConfig(**kwargs)


def test_distillation_loss_by_hand():
    s, t = torch.tensor([[1.0, 0.0, -1.0]]), torch.tensor([[0.0, 2.0, 0.0]])
    for temp in (1.0, 2.0):
        p = torch.softmax(t / temp, -1)
        expect = (p * (p.log() - torch.log_softmax(s / temp, -1))).sum() * temp ** 2
        torch.testing.assert_close(distillation_loss(s, t, temp), expect)


def test_to_compressed_save_load_round_trip(tmp_path):
    teacher, student, qweights, compressed, inputs = tiny_setup(n=64)
    finetune(student, qweights, inputs, CONFIG, teacher=teacher)
    tuned = to_compressed(qweights, compressed, {"finetune": {"steps": 24}})
    assert tuned.meta["method"] == "ssvq" and tuned.meta["finetune"] == {"steps": 24}
    path = tmp_path / "tuned.ssvq.safetensors"
    save(tuned, path)
    back = load(path)
    assert set(back.layers) == set(qweights)
    for name, q in qweights.items():
        decoded = back.layers[name].decode()
        # equal to the fine-tuned weight with its codebook rounded to the stored fp16
        expect = (q.signs() * q.codebook.half().float()[q.assignments].reshape(q.shape)).detach().numpy()
        assert np.array_equal(decoded.view(np.uint32), expect.view(np.uint32)), name
        np.testing.assert_allclose(decoded, q().detach().numpy(), rtol=1e-3, atol=1e-6)
        assert not np.array_equal(decoded, compressed.layers[name].decode())  # it did change
    # the reloaded file runs like the fine-tuned student
    plain = copy.deepcopy(teacher)
    plain.load_state_dict({k: torch.from_numpy(v) for k, v in back.state_dict().items()})
    with torch.no_grad():
        torch.testing.assert_close(plain(inputs), student(inputs), rtol=2e-2, atol=2e-3)
