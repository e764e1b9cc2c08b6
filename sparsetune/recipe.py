"""The papers' settings per model and method: what `sparsetune prune` runs by default.

`recipes/<model>.yaml` holds the dense recipe and, per method, its parameters and optionally its
own dense recipe (lottery tickets train with Adam at batch 60, Han et al. with Caffe's SGD). A
method without an entry (a new one, a plugin's) runs with its Config defaults on the model's dense
recipe. A model without a recipe file takes the `train:` section of its search space and each
method's Config defaults; a user model takes TrainConfig's defaults.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sparsetune.config import TrainConfig
from sparsetune.shipped import SPACES_DIR
from sparsetune.validation import describe_validation_error
from sparsetune.yamlio import load_file

RECIPES_DIR = Path(__file__).parent / "recipes"


@dataclass(frozen=True)
class MethodRecipe:
    train: TrainConfig
    params: dict[str, Any]
    source: str
    notes: tuple[str, ...] = ()  # what a person should know of this recipe, a line each

    def scaled_to(
        self,
        epochs: int,
        defaults: Mapping[str, Any] | None = None,
        per_step: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> MethodRecipe:
        """Dense training of `epochs` epochs, and every `*epochs` parameter of the method scaled by
        the same factor (at least 1 where it was at least 1): a quick run of the same recipe.
        `defaults` are the method's Config defaults: an `*epochs` knob the recipe does not list
        (every knob, for a model without a recipe file) is scaled from its default. `per_step`
        (`PruningMethod.per_step_knobs`: rate knob -> its `*epochs` knob) are rates per training
        step: each is multiplied by how much shorter its phase became (old / new epochs), so that
        the short run regularises as much in all as the full one (L0's gates close, sensitivity's
        decay shrinks the weights as far). `overrides` (`--set`) win over the recipe: a length
        set there is the one its rates are scaled to, and a rate set there is left as it is."""
        factor = epochs / self.train.epochs if self.train.epochs else 1.0
        full = {**(defaults or {}), **self.params}
        unlisted = {
            key: value
            for key, value in (defaults or {}).items()
            if key.endswith("epochs") and key not in self.params
        }
        params = {
            key: _scaled(value, factor) if key.endswith("epochs") else value
            for key, value in {**unlisted, **self.params}.items()
        }
        overrides = overrides or {}
        for rate, length in (per_step or {}).items():
            before, after = full.get(length), overrides.get(length, params.get(length))
            if rate in overrides or not isinstance(full.get(rate), int | float):
                continue
            if _is_count(before) and _is_count(after) and before > 0 and after > 0:
                if before != after:
                    params[rate] = full[rate] * before / after
        return MethodRecipe(self.train.model_copy(update={"epochs": epochs}), params, self.source)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _scaled(value: Any, factor: float) -> Any:
    if not _is_count(value) or value <= 0:
        return value
    return max(1, math.ceil(value * factor))


def method_recipe(model: str, method: str) -> MethodRecipe:
    """The papers' recipe for `method` on `model`; ValueError with one line if a file is broken."""
    path = RECIPES_DIR / f"{model}.yaml"
    if path.exists():
        raw = _read(path)
        entry = (raw.get("methods") or {}).get(method) or {}
        train = {**(raw.get("train") or {}), **(entry.get("train") or {})}
        return MethodRecipe(_train(train, path), dict(entry.get("params") or {}), str(path))
    space = SPACES_DIR / f"{model}.yaml"
    if space.exists():
        return MethodRecipe(_train(_read(space).get("train") or {}, space), {}, str(space))
    return MethodRecipe(TrainConfig(), {}, "TrainConfig defaults")


def _read(path: Path) -> dict[str, Any]:
    raw = load_file(path, expected="a recipe file with `train:` and `methods:`")
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping with `train:` and `methods:`")
    return raw


def _train(values: dict[str, Any], path: Path) -> TrainConfig:
    try:
        return TrainConfig.model_validate(values)
    except ValidationError as error:
        raise ValueError(f"{path}: train.{describe_validation_error(error)}") from None
