"""`ssvq finetune` on MiniLM for two steps: embedding distillation (1 - cosine) on training passages, held-out
passages judged by cosine and nearest-neighbour agreement, a saved file that loads."""
import json

from ssvq_deploy.cli import main
from ssvq_deploy.format import load
from ssvq_deploy.pipeline import COMPRESSED_FILE, load_compressed
from ssvq_deploy.tasks import Samples, SentenceEmbedding


def test_finetune_two_steps_saves_a_loadable_changed_model(tmp_path, minilm_compressed, monkeypatch, capsys):
    # the wiring is under test, not the result: 8 training passages (two steps of batch 4), 16 held-out ones
    every, full = SentenceEmbedding.samples, SentenceEmbedding.training_set

    def fewer(self, split):
        samples = every(self, split)
        return Samples(samples.names[:16], tuple(t[:16] for t in samples.inputs))

    def first_eight(self, crops):
        inputs, augment = full(self, crops)
        return tuple(t[:8] for t in inputs), augment

    monkeypatch.setattr(SentenceEmbedding, "samples", fewer)
    monkeypatch.setattr(SentenceEmbedding, "training_set", first_eight)
    out = tmp_path / "tuned"
    assert main(["finetune", "--model", "minilm_ssvq", "--compressed", str(minilm_compressed), "--epochs", "1",
                 "--batch-size", "4", "--out", str(out)]) == 0
    summary = json.loads((out / "finetune.json").read_text())
    assert summary["steps"] == 2 and summary["train_samples"] == 8 and summary["crops_per_sample"] == 1
    for key in ("held_out_before", "held_out_after"):
        assert set(summary[key]) == {"cosine", "cosine_min", "nn_top1"}
    assert 0 < summary["loss_first"] < 2  # 1 - cosine
    assert summary["signs"]["signs"] == 10_616_832
    before, after = load(minilm_compressed), load_compressed(out / COMPRESSED_FILE)
    assert after.meta["finetune"]["lr"] == 2.5e-4 and after.meta["finetune"]["theta"] == 6
    assert any(not (layer.codebook == before.layers[n].codebook).all() for n, layer in after.layers.items())
    assert "held-out texts" in capsys.readouterr().out
