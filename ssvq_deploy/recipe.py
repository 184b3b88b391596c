"""Per-model recipes: which model, how to compress it, how to fine-tune it. Stored as TOML in models/recipes/."""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from importlib import resources

from .errors import ConfigError
from .quant.config import LayerRule, QuantConfig
from .train.config import FinetuneConfig

_TOP_KEYS = {"model", "quant", "finetune"}
_QUANT_KEYS = {"method", "k", "d", "iters", "seed", "hessian"}


@dataclass(frozen=True)
class Recipe:
    name: str
    model: str
    quant: QuantConfig
    finetune: FinetuneConfig

    def with_quant(self, **changes) -> "Recipe":
        """A copy with quantization fields replaced (None values are ignored)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, quant=dataclasses.replace(self.quant, **changes))


def available_recipes() -> list[str]:
    files = resources.files("ssvq_deploy.models").joinpath("recipes")
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml"))


def parse_recipe(name: str, text: str) -> Recipe:
    """Build a Recipe from TOML text; unknown keys are errors."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"recipe {name}: invalid TOML: {exc}") from exc
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"recipe {name}: unknown keys {sorted(unknown)} (expected {sorted(_TOP_KEYS)})")
    try:
        quant = dict(raw.get("quant", {}))
        unknown = set(quant) - _QUANT_KEYS - {"layers"}
        if unknown:
            raise ConfigError(f"recipe {name}: unknown [quant] keys {sorted(unknown)}")
        rules = tuple(LayerRule(**rule) for rule in quant.pop("layers", []))
        return Recipe(name, raw["model"], QuantConfig(**quant, rules=rules), FinetuneConfig(**raw.get("finetune", {})))
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"recipe {name}: {exc}") from exc


def load_recipe(name: str) -> Recipe:
    """The recipe ``name`` shipped in models/recipes/."""
    if name not in available_recipes():
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(available_recipes())}")
    text = resources.files("ssvq_deploy.models").joinpath("recipes", f"{name}.toml").read_text()
    return parse_recipe(name, text)
