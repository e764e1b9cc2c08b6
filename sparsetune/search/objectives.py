"""What a sweep maximises. Each objective names reported metrics and their directions; the
Pareto front is computed over the same metrics."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Objective:
    name: str
    metrics: tuple[str, ...]
    modes: tuple[str, ...]  # "max" or "min", one per metric
    description: str

    @property
    def is_multi(self) -> bool:
        return len(self.metrics) > 1


OBJECTIVES = {
    "pareto": Objective(
        "pareto",
        ("val_acc", "compression"),
        ("max", "max"),
        "validation accuracy and compression together (a Pareto front)",
    ),
}


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]
