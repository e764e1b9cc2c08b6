"""What a sweep optimises. Each objective names reported metrics and their directions (the Pareto
front and Optuna's directions come from the same two tuples), and the constrained ones carry a
bound that reaches Optuna as a constraint, not as a penalty folded into the metric.

    pareto           val_acc (max), compression (max)
    pareto-flops     val_acc (max), flops_ratio (min: remaining FLOPs / dense FLOPs)
    pareto3          all three
    max-acc          val_acc (max), subject to compression >= --min-compression
    max-compression  compression (max), subject to val_acc >= dense val_acc - --max-drop points

The Pareto objectives also carry the chance floor (`chance_floor`): a ticket whose accuracy is
within a tenth of the way from chance to perfect (0.19 on ten classes) is no use to anyone,
however compressed. Such rows stay in trials.csv and MLflow, marked infeasible; they are left out
of the front, its plot and its hypervolume, and Optuna is told the floor as a constraint, so the
sampler learns that region is worthless and `study.best_trials` is the front.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Bound:
    """`metric >= minimum`. Optuna's convention: a constraint value <= 0 is feasible."""

    metric: str
    minimum: float
    description: str

    def violation(self, result: Mapping[str, Any]) -> float:
        return self.minimum - float(result[self.metric])

    def holds(self, result: Mapping[str, Any]) -> bool:
        value = result.get(self.metric)
        return value is not None and not math.isnan(float(value)) and self.violation(result) <= 0


@dataclass(frozen=True)
class Objective:
    name: str
    metrics: tuple[str, ...]
    modes: tuple[str, ...]  # "max" or "min", one per metric
    description: str
    bound: Bound | None = None  # the user's constraint (--min-compression, --max-drop)
    floor: Bound | None = None  # the chance floor of the Pareto objectives

    @property
    def is_multi(self) -> bool:
        return len(self.metrics) > 1

    @property
    def bounds(self) -> tuple[Bound, ...]:
        return tuple(b for b in (self.bound, self.floor) if b is not None)

    def feasible(self, result: Mapping[str, Any]) -> bool:
        return all(bound.holds(result) for bound in self.bounds)

    def constraints(self, result: Mapping[str, Any]) -> dict[str, float]:
        """Optuna's constraint values of a result (<= 0: feasible), one per bound whose metric
        the result has, named by the bound: what `Trial.set_constraint` is told."""
        return {
            _constraint_name(bound): bound.violation(result)
            for bound in self.bounds
            if result.get(bound.metric) is not None and not math.isnan(float(result[bound.metric]))
        }


# Of the way from chance accuracy to 1.0, the share below which a ticket is at chance level.
CHANCE_FLOOR_SHARE = 0.1


def chance_floor(num_classes: int) -> Bound:
    """`val_acc >= chance + CHANCE_FLOOR_SHARE x (1 - chance)`: 0.19 on 10 classes, 0.109 on 100."""
    chance = 1.0 / num_classes
    minimum = chance + CHANCE_FLOOR_SHARE * (1.0 - chance)
    return Bound(
        "val_acc", minimum, f"val_acc >= {minimum:.3f} (chance level {chance:.3f} and near it)"
    )


def _constraint_name(bound: Bound) -> str:
    return f"{bound.metric}>={bound.minimum:.6g}"


OBJECTIVES = {
    "pareto": Objective(
        "pareto",
        ("val_acc", "compression"),
        ("max", "max"),
        "validation accuracy and compression together (a Pareto front)",
    ),
    "pareto-flops": Objective(
        "pareto-flops",
        ("val_acc", "flops_ratio"),
        ("max", "min"),
        "validation accuracy and remaining FLOPs together (a Pareto front)",
    ),
    "pareto3": Objective(
        "pareto3",
        ("val_acc", "compression", "flops_ratio"),
        ("max", "max", "min"),
        "validation accuracy, compression and remaining FLOPs (a three-way Pareto front)",
    ),
    "max-acc": Objective(
        "max-acc",
        ("val_acc",),
        ("max",),
        "the most accurate ticket at or above --min-compression",
    ),
    "max-compression": Objective(
        "max-compression",
        ("compression",),
        ("max",),
        "the most compressed ticket within --max-drop accuracy points of the dense model",
    ),
}

# Which objective needs which option: the CLI checks both directions before anything runs.
REQUIRED_OPTION = {"max-acc": "min_compression", "max-compression": "max_drop"}


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


def resolve_objective(
    name: str,
    *,
    min_compression: float | None = None,
    max_drop: float | None = None,
    dense_val_acc: float | None = None,
    num_classes: int | None = None,
) -> Objective:
    """The objective with its bound filled in, and the chance floor (`num_classes` given) where
    the objective is a Pareto front with accuracy on it. `max_drop` is in accuracy points (1.0 =
    one percentage point); the dense reference is the sweep's shared dense model."""
    objective = get_objective(name)
    if num_classes is not None and objective.is_multi and "val_acc" in objective.metrics:
        objective = replace(objective, floor=chance_floor(num_classes))
    if name == "max-acc":
        if min_compression is None:
            raise ValueError("--objective max-acc needs --min-compression X (e.g. 10)")
        bound = Bound("compression", min_compression, f"compression >= {min_compression:g}x")
        return replace(objective, bound=bound)
    if name == "max-compression":
        if max_drop is None or dense_val_acc is None:
            raise ValueError("--objective max-compression needs --max-drop D (points, e.g. 1)")
        minimum = dense_val_acc - max_drop / 100
        bound = Bound(
            "val_acc",
            minimum,
            f"val_acc >= {minimum:.4f} (dense {dense_val_acc:.4f} - {max_drop:g} points)",
        )
        return replace(objective, bound=bound)
    return objective
