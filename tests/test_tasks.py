"""Tasks: what each kind of model is fed, judged and distilled with; the registry picks one per model."""
import pytest
import torch

from ssvq_deploy.data import split_by_source, split_texts_by_document
from ssvq_deploy.errors import ConfigError
from ssvq_deploy.models import MODELS, ModelSpec
from ssvq_deploy.models.minilm import BertConfig, MiniLM
from ssvq_deploy.tasks import ImageClassification, SentenceEmbedding, task_for


def test_registry_picks_the_task_of_each_model(monkeypatch):
    assert isinstance(task_for("mobilenetv2"), ImageClassification)
    assert isinstance(task_for("minilm"), SentenceEmbedding)
    assert task_for("mobilenetv2").metrics == ("top1", "top5", "kl")
    assert task_for("minilm").metrics == ("cosine", "cosine_min", "nn_top1")
    monkeypatch.setitem(MODELS, "odd", ModelSpec(MiniLM, MODELS["minilm"].default_weights, (1, 8), task="speech"))
    with pytest.raises(ConfigError, match="unknown task 'speech'"):
        task_for("odd")
    with pytest.raises(ConfigError, match="split must be one of"):
        task_for("minilm").samples("test")


def test_text_samples_follow_the_document_split():
    task = task_for("minilm")
    held = task.samples("held_out")
    assert held.names == [p.name for p in split_texts_by_document()[1]]
    ids, mask = held.inputs
    assert ids.shape == mask.shape == (len(held), 128) and ids.dtype == torch.int64
    one = task.sample(held, 3)
    assert one[0].shape == (1, int(mask[3].sum())) and one[1].all()
    assert task.timing_input(held)[0].shape == (1, 128)
    assert task_for("mobilenetv2").samples("held_out").names == split_by_source()[1]


def test_batched_text_forward_equals_one_at_a_time():
    torch.manual_seed(0)
    model = MiniLM(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)).eval()
    task = task_for("minilm")
    held = task.samples("held_out")
    task.batch = 16  # several chunks of different lengths, reordered back
    batched = task.forward(model, held)
    with torch.no_grad():
        single = torch.cat([model(*task.sample(held, i)) for i in range(len(held))])
    assert batched.shape == (len(held), 32)
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)


def test_text_distillation_loss_is_one_minus_cosine():
    loss = task_for("minilm").distillation(None)
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    assert float(loss(a, b)) == pytest.approx(0.5)
