"""`run_study` on two cheap equal-bit arms: every row measured before and after fine-tuning, files written."""
import json

from ssvq_deploy.study import StudyConfig, run_study


def test_study_rows_and_outputs(tmp_path):
    arms = (("SSVQ k16 d8", "ssvq", 16, 8, False), ("VQ k64 d4", "vq", 64, 4, False))
    result = run_study(StudyConfig(epochs=1, batch_size=8, crops_per_photo=1, arms=arms, out=str(tmp_path)))
    rows = {r["arm"]: r for r in result["rows"]}
    assert set(rows) == {"SSVQ k16 d8", "VQ k64 d4"}
    # the paper's pair: 4/8 + 1 = 6/4 = 1.5 index(+sign) bits; only the codebooks differ (128 vs 256 fp16 words
    # per layer, 53 layers over 3,469,760 weights)
    diff = rows["VQ k64 d4"]["bits_per_weight"] - rows["SSVQ k16 d8"]["bits_per_weight"]
    assert abs(diff - 53 * 128 * 16 / 3469760) < 1e-9
    for row in rows.values():
        assert row["steps"] == 2 and 0 <= row["top1_tuned"] <= 1 and row["kl_kmeans"] > 0
        assert row["loss_first"] > 0 and row["loss_last"] > 0  # two steps: too few to expect a trend
    assert rows["VQ k64 d4"]["frozen_signs"] == 0  # VQ has no signs to learn
    assert json.loads((tmp_path / "study.json").read_text())["rows"] == result["rows"]
    assert "SSVQ k16 d8" in (tmp_path / "study.md").read_text()
    assert (tmp_path / "study.png").read_bytes()[:4] == b"\x89PNG"
