"""SSVQ vs conventional VQ at equal bits per weight, straight after k-means and after the same fine-tuning budget,
plus plain vs Hessian-weighted k-means: the paper's central claim, measured on real weights and held-out data (photos
for classifiers, text passages for sentence encoders: the model's task picks data and metrics, see tasks.py)."""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from .atomic import atomic_path, ensure_writable_dir, write_text
from .pipeline import compress, decoded_model, finetune_compressed, held_out_fidelity
from .recipe import load_recipe
from .table import format_table
from .tasks import Task, task_for

log = logging.getLogger(__name__)

# (label, method, k, d, hessian): pairs at equal index(+sign) bits per weight, as in the paper.
DEFAULT_ARMS = (
    ("SSVQ k16 d8", "ssvq", 16, 8, False), ("VQ k64 d4", "vq", 64, 4, False),
    ("SSVQ k64 d8", "ssvq", 64, 8, False), ("VQ k128 d4", "vq", 128, 4, False),
    ("SSVQ k16 d8 Hessian", "ssvq", 16, 8, True), ("VQ k64 d4 Hessian", "vq", 64, 4, True),
)


def study_columns(metrics: tuple[str, ...]) -> list[str]:
    """Table columns for a task's fidelity ``metrics``, after k-means and after fine-tuning."""
    return ["arm", "bits_per_weight", "compression_ratio", "rel_error", *(f"{m}_kmeans" for m in metrics),
            *(f"{m}_tuned" for m in metrics), "frozen_signs"]


COLUMNS = study_columns(("top1", "top5", "kl"))  # classifiers (MobileNetV2)


@dataclass(frozen=True)
class StudyConfig:
    model: str = "mobilenetv2_ssvq"
    epochs: int = 2
    batch_size: int = 32
    crops_per_photo: int | None = None  # augmented copies per training sample; None: the task's (photos 16, texts 1)
    seed: int = 0
    arms: tuple = DEFAULT_ARMS
    out: str | None = None

    def out_dir(self) -> Path:
        return Path(self.out or Path("out") / f"study_{self.model}")


def run_arm(config: StudyConfig, label: str, method: str, k: int, d: int, hessian: bool) -> dict:
    """One row: compress, measure, fine-tune with the study's budget, measure again."""
    recipe = load_recipe(config.model).with_quant(method=method, k=k, d=d, hessian=hessian, seed=config.seed)
    result = compress(recipe)
    before = held_out_fidelity(result.original, decoded_model(result.compressed), recipe.model)
    tune = dataclasses.replace(recipe.finetune, epochs=config.epochs, batch_size=config.batch_size, seed=config.seed)
    _, summary = finetune_compressed(result.original, result.compressed, tune, config.crops_per_photo)
    after = summary["held_out_after"]
    return {"arm": label, "method": method, "k": k, "d": d, "hessian": hessian,
            "bits_per_weight": result.report["bits_per_weight"],
            "compression_ratio": result.report["compression_ratio"], "rel_error": result.report["rel_error"],
            **{f"{m}_kmeans": before[m] for m in before}, **{f"{m}_tuned": after[m] for m in after},
            "frozen_signs": summary["signs"]["frozen"], "steps": summary["steps"],
            "loss_first": summary["loss_first"], "loss_last": summary["loss_last"]}


def _plot(rows: list[dict], task: Task, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    x = range(len(rows))
    for shift, stage, label in ((-0.2, "kmeans", "after k-means"), (0.2, "tuned", "after fine-tuning")):
        values = [task.plot_value({m: r[f"{m}_{stage}"] for m in task.metrics}) for r in rows]
        ax.bar([i + shift for i in x], values, 0.4, label=label)
    ax.set_xticks(list(x), [r["arm"] for r in rows], rotation=20, ha="right")
    ax.set_ylabel(task.plot_label)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def run_study(config: StudyConfig) -> dict:
    """Run every arm; write study.json, study.md and study.png into the output folder."""
    task = task_for(load_recipe(config.model).model)
    out = ensure_writable_dir(config.out_dir())
    start = time.perf_counter()
    rows = []
    for arm in config.arms:
        log.info("[study] %s", arm[0])
        rows.append(run_arm(config, *arm))
    result = {"model": config.model, "config": dataclasses.asdict(config), "rows": rows,
              "seconds": round(time.perf_counter() - start, 1),
              "held_out": task.held_out_note, "columns": study_columns(task.metrics)}
    write_text(out / "study.json", json.dumps(result, indent=2))
    crops = task.default_crops if config.crops_per_photo is None else config.crops_per_photo
    budget = (f"seed {config.seed}; fine-tuning: {config.epochs} epochs x {task.budget(crops)}, global batch "
              f"{config.batch_size}, recipe lr / lr_mask / theta; distillation from fp32")
    write_text(out / "study.md", f"# {config.model}: SSVQ vs VQ at equal bits\n\n{budget}\n\n```\n"
               + format_table(rows, result["columns"]) + "\n```\n")
    _plot(rows, task, out / "study.png")
    return result
