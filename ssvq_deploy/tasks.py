"""What a model computes decides how the toolchain feeds, judges and distils it. A task bundles, for one kind of
model: its real data (shipped in installed packages) split into train / held-out by source, the fidelity metrics
against the fp32 teacher, the distillation loss, the Hessian objective, the int8 baseline and the agreement metrics
of the export report. ``ModelSpec.task`` names one; :func:`task_for` builds it for a model.
"""
from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch
from torch import nn

from .data import (photo_batch, random_crops, random_spans, split_by_source, split_texts_by_document,
                   text_passages, trim_padding)
from .errors import ConfigError
from .export.int8 import int8_dynamic, int8_qdq
from .fidelity import agreement, embedding_agreement
from .models import ModelSpec, model_spec
from .quant.hessian import random_projection, self_label_cross_entropy
from .train.config import FinetuneConfig
from .train.finetune import cosine_distillation_loss, distillation_loss

SPLITS = ("all", "train", "held_out")


def _split_part(split: str) -> int | None:
    """Index into a (train, held-out) pair, None for all."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    return None if split == "all" else SPLITS.index(split) - 1


@dataclass(frozen=True)
class Samples:
    """Real inputs: one name per sample and the model's arguments, batch first (``model(*inputs)``)."""

    names: list[str]
    inputs: tuple[torch.Tensor, ...]

    def __len__(self) -> int:
        return len(self.names)


class Task(ABC):
    """One kind of model, bound to a model's spec. Subclasses set the class attributes and implement the methods;
    register them in ``TASKS`` under the name ``ModelSpec.task`` uses."""

    unit: str  # what one sample is, in messages: "photos", "texts"
    metrics: tuple[str, ...]  # keys of fidelity(), in table order
    verify_key: str  # export report key listing the verification samples
    default_crops: int  # augmented copies of each training sample per epoch
    int8_baseline: str  # what the export job's "int8" build is
    held_out_note: str
    plot_label: str  # y label of the study plot, lower is better

    def __init__(self, spec: ModelSpec):
        self.spec = spec

    @abstractmethod
    def samples(self, split: str) -> Samples:
        """The bundled samples of ``split`` ("all", "train" or "held_out")."""

    def verify_samples(self) -> Samples:
        """What the export job checks ORT against PyTorch on."""
        return self.samples("held_out")

    @abstractmethod
    def sample(self, samples: Samples, i: int) -> tuple[torch.Tensor, ...]:
        """Sample ``i`` alone: batch 1, as a deployed model sees it."""

    def timing_input(self, samples: Samples) -> tuple[torch.Tensor, ...]:
        """The batch-1 input latency is measured on."""
        return self.sample(samples, 0)

    def forward(self, model: nn.Module, samples: Samples) -> torch.Tensor:
        """``model``'s outputs on every sample, without gradients."""
        with torch.no_grad():
            return model(*samples.inputs)

    @abstractmethod
    def fidelity(self, teacher_out: torch.Tensor, student_out: torch.Tensor) -> dict[str, float]:
        """How close the student stays to the teacher: the ``metrics`` keys."""

    @abstractmethod
    def plot_value(self, metrics: dict[str, float]) -> float:
        """One number of ``metrics`` to plot, lower is better."""

    @abstractmethod
    def distillation(self, config: FinetuneConfig) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """loss(student_out, teacher_out)."""

    @staticmethod
    @abstractmethod
    def fisher_objective(output: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Per-sample scalar whose squared weight gradient estimates the Hessian diagonal (quant/hessian.py)."""

    @abstractmethod
    def training_set(self, crops: int) -> tuple[torch.Tensor | tuple[torch.Tensor, ...], Callable]:
        """(inputs, augment) for ``train.finetune``: ``crops`` copies of each training sample, each augmented anew."""

    @abstractmethod
    def budget(self, crops: int) -> str:
        """The training data per epoch, in words."""

    @abstractmethod
    def int8(self, fp32: onnx.ModelProto, calibration: Samples, path: str | Path) -> int:
        """Write the int8 baseline of ``fp32``; returns its size in bytes."""

    @abstractmethod
    def export_agreement(self, outputs: dict[str, np.ndarray], reference: np.ndarray,
                         against: str = "fp32") -> dict[str, dict[str, float]]:
        """Report metric (named ``..._vs_<against>``) -> build -> agreement of each build's outputs with the PyTorch
        ``reference`` outputs."""

    def per_sample(self, samples: Samples) -> list[tuple[torch.Tensor, ...]]:
        return [self.sample(samples, i) for i in range(len(samples))]


class ImageClassification(Task):
    """ImageNet classifiers on the bundled photos (ssvq_deploy.data.photos)."""

    unit = "photos"
    metrics = ("top1", "top5", "kl")
    verify_key = "verify_images"
    default_crops = 16
    int8_baseline = "static QDQ: int8 per-channel weights, uint8 activations, MinMax calibration on the photos"
    held_out_note = "photos from sources never used for fine-tuning (ssvq_deploy.data.split_by_source)"
    plot_label = "KL(fp32 || compressed), held-out photos"
    fisher_objective = staticmethod(self_label_cross_entropy)

    def samples(self, split: str) -> Samples:
        part = _split_part(split)
        names, images = photo_batch(None if part is None else split_by_source()[part],
                                    size=self.spec.input_shape[-1])
        return Samples(names, (images,))

    def verify_samples(self) -> Samples:
        return self.samples("all")  # the export checks numerics, not fidelity: every photo

    def sample(self, samples: Samples, i: int) -> tuple[torch.Tensor, ...]:
        return (samples.inputs[0][i:i + 1],)

    def fidelity(self, teacher_out, student_out):
        return agreement(teacher_out, student_out)

    def plot_value(self, metrics):
        return metrics["kl"]

    def distillation(self, config):
        return functools.partial(distillation_loss, temperature=config.temperature)

    def training_set(self, crops):
        size = self.spec.input_shape[-1]
        _, pool = photo_batch(split_by_source()[0], size=round(size * 8 / 7))
        return pool.repeat_interleave(crops, 0), functools.partial(random_crops, size=size)

    def budget(self, crops):
        return f"{crops} random crops per training photo"

    def int8(self, fp32, calibration, path):
        return int8_qdq(fp32, calibration.inputs[0].numpy(), path)

    def export_agreement(self, outputs, reference, against="fp32"):
        top1 = reference.argmax(1)
        return {f"top1_agreement_vs_{against}": {name: float((o.argmax(1) == top1).mean())
                                                 for name, o in outputs.items()}}


class SentenceEmbedding(Task):
    """Sentence encoders (``input_ids``, ``attention_mask`` -> unit-norm embedding) on the bundled English passages
    (ssvq_deploy.data.texts), tokenized by the model's tokenizer (``ModelSpec.tokenizer``)."""

    unit = "texts"
    metrics = ("cosine", "cosine_min", "nn_top1")
    verify_key = "verify_texts"
    default_crops = 1
    int8_baseline = ("dynamic (quantize_dynamic): int8 per-channel weights of the same Linear layers as SSVQ, "
                     "uint8 activations quantized at run time (MatMulInteger); embeddings fp32 as in every build")
    held_out_note = ("passages of documents never used for fine-tuning "
                     "(ssvq_deploy.data.split_texts_by_document)")
    plot_label = "1 - cosine(fp32, compressed), held-out texts"
    fisher_objective = staticmethod(random_projection)
    batch = 32  # forward passes in chunks of similar length, each trimmed to its longest passage

    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        if spec.tokenizer is None:
            raise ConfigError("a sentence-embedding model needs ModelSpec.tokenizer")
        self.tokenize = spec.tokenizer()

    def samples(self, split: str) -> Samples:
        part = _split_part(split)
        passages = text_passages() if part is None else split_texts_by_document()[part]
        return Samples([p.name for p in passages], self.tokenize([p.text for p in passages]))

    def sample(self, samples, i):
        return trim_padding(*(t[i:i + 1] for t in samples.inputs))

    def timing_input(self, samples):
        ids, mask = samples.inputs
        return ids[:1], mask[:1]  # padded to the tokenizer's full length: batch 1, seq max_length

    def forward(self, model, samples):
        ids, mask = samples.inputs
        order = mask.sum(1).argsort(descending=True, stable=True)  # similar lengths share a chunk: less padding
        with torch.no_grad():
            out = torch.cat([model(*trim_padding(ids[rows], mask[rows])) for rows in order.split(self.batch)])
        return out[order.argsort()]

    def fidelity(self, teacher_out, student_out):
        return embedding_agreement(teacher_out, student_out)

    def plot_value(self, metrics):
        return 1 - metrics["cosine"]

    def distillation(self, config):
        return cosine_distillation_loss

    def training_set(self, crops):
        ids, mask = self.samples("train").inputs
        return (ids.repeat_interleave(crops, 0), mask.repeat_interleave(crops, 0)), random_spans

    def budget(self, crops):
        return f"{crops} random token span(s) (at least half of the passage) per training passage"

    def int8(self, fp32, calibration, path):
        # per-channel: per-tensor weights lose much more (held-out cosine 0.963 vs 0.994 per-channel)
        return int8_dynamic(fp32, path, op_types=("MatMul",), per_channel=True)

    def export_agreement(self, outputs, reference, against="fp32"):
        reference = torch.from_numpy(reference)
        scores = {name: embedding_agreement(reference, torch.from_numpy(o)) for name, o in outputs.items()}
        return {f"cosine_vs_{against}": {name: s["cosine"] for name, s in scores.items()},
                f"nn_agreement_vs_{against}": {name: s["nn_top1"] for name, s in scores.items()}}


TASKS: dict[str, type[Task]] = {"image_classification": ImageClassification, "sentence_embedding": SentenceEmbedding}


def task_for(model: str) -> Task:
    """The task of model ``model`` (a models.MODELS name)."""
    spec = model_spec(model)
    if spec.task not in TASKS:
        raise ConfigError(f"model {model!r}: unknown task {spec.task!r}; available: {', '.join(TASKS)}")
    return TASKS[spec.task](spec)
