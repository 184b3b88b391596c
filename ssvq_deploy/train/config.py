"""Fine-tuning settings (paper Table 14), validated."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class FinetuneConfig:
    """AdamW fine-tuning of codebooks (``lr``) and sign latents (``lr_mask``).

    ``theta``: a sign is frozen for good once it has flipped ``theta`` times (None: never freeze).
    ``temperature``: distillation temperature when a teacher is given.
    """

    lr: float = 2e-3
    lr_mask: float = 2e-4
    theta: int | None = 1
    epochs: int = 10
    batch_size: int = 256
    weight_decay: float = 0.0
    temperature: float = 1.0
    seed: int = 0

    def __post_init__(self):
        for name in ("lr", "lr_mask", "temperature"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.theta is not None and (not isinstance(self.theta, int) or self.theta < 1):
            raise ConfigError(f"theta must be a positive integer or None, got {self.theta!r}")
        if self.epochs < 0 or self.batch_size < 1:
            raise ConfigError(f"epochs must be >= 0 and batch_size >= 1, got {self.epochs}, {self.batch_size}")
