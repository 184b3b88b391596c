"""`ssvq finetune` on MobileNetV2 for two steps: the saved file exports, and its held-out summary is recorded."""
import json

from ssvq_deploy.cli import main
from ssvq_deploy.format import load
from ssvq_deploy.pipeline import COMPRESSED_FILE, load_compressed


def test_finetune_two_steps_saves_a_loadable_changed_model(tmp_path, capsys):
    start, out = tmp_path / "start", tmp_path / "tuned"
    assert main(["compress", "--model", "mobilenetv2_ssvq", "--k", "8", "--out", str(start)]) == 0
    assert main(["finetune", "--model", "mobilenetv2_ssvq", "--compressed", str(start / COMPRESSED_FILE),
                 "--epochs", "1", "--crops-per-photo", "1", "--batch-size", "8", "--out", str(out)]) == 0
    summary = json.loads((out / "finetune.json").read_text())
    assert summary["steps"] == 2 and summary["train_samples"] == 16
    for key in ("held_out_before", "held_out_after"):
        assert set(summary[key]) == {"top1", "top5", "kl"}
    assert summary["signs"]["signs"] == 3469760
    before, after = load(start / COMPRESSED_FILE), load_compressed(out / COMPRESSED_FILE)
    assert after.meta["finetune"]["batch_size"] == 8
    changed = [n for n, layer in after.layers.items()
               if not (layer.codebook == before.layers[n].codebook).all()]
    assert changed  # AdamW moved codebooks
    assert "held-out photos" in capsys.readouterr().out
