"""Compression settings: validated frozen dataclasses, with per-layer rules matched by module-name pattern."""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..format import index_bits
from ..errors import FormatError

METHODS = ("ssvq", "vq")


def check_k_d(k: int, d: int, where: str = "") -> None:
    """Raise ConfigError unless k is a power of two in 2..65536 and d a positive integer."""
    try:
        index_bits(k)
    except FormatError as exc:
        raise ConfigError(f"{where}{exc}") from None
    if not isinstance(d, int) or isinstance(d, bool) or d < 1:
        raise ConfigError(f"{where}d must be a positive integer, got {d!r}")


@dataclass(frozen=True)
class LayerRule:
    """Override for the layers whose module name matches ``pattern`` (fnmatch): other k/d, or leave fp32."""

    pattern: str
    k: int | None = None
    d: int | None = None
    skip: bool = False


@dataclass(frozen=True)
class QuantConfig:
    """How to compress a model: method (``ssvq`` or ``vq``), default k and d, k-means budget, layer rules.

    The first rule whose pattern matches a layer's module name applies.
    """

    method: str = "ssvq"
    k: int = 16
    d: int = 8
    iters: int = 25
    seed: int = 0
    hessian: bool = False
    rules: tuple[LayerRule, ...] = field(default_factory=tuple)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {METHODS}, got {self.method!r}")
        check_k_d(self.k, self.d)
        if self.iters < 0:
            raise ConfigError(f"iters must be >= 0, got {self.iters}")
        for rule in self.rules:
            check_k_d(rule.k or self.k, rule.d or self.d, f"layer rule {rule.pattern!r}: ")

    def for_layer(self, name: str) -> tuple[int, int] | None:
        """(k, d) for the layer ``name``, or None if it stays uncompressed."""
        for rule in self.rules:
            if fnmatch.fnmatchcase(name, rule.pattern):
                return None if rule.skip else (rule.k or self.k, rule.d or self.d)
        return self.k, self.d
