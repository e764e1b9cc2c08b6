"""Which sampler and which early stop a sweep runs, resolved from the objective and the space.
No Optuna or Ray here: the CLI checks these before it loads either (docs/search.md says why each
`auto` picks what it picks)."""

from __future__ import annotations

from sparsetune.search.objectives import Objective

EARLY_STOPS = ("auto", "asha", "dominance", "off")
SAMPLERS = ("auto", "tpe", "nsga2", "gp", "random", "qmc")
NSGA2_MIN_TRIALS = 100


def check_sampler(name: str) -> str:
    if name not in SAMPLERS:
        raise ValueError(f"--sampler: unknown {name!r}; choose one of: {', '.join(SAMPLERS)}")
    return name


def resolve_sampler(name: str, objective: Objective, *, conditional: bool, trials: int) -> str:
    """The concrete sampler `name` stands for (itself unless it is `auto`)."""
    if check_sampler(name) != "auto":
        return name
    if conditional:
        return "tpe"
    if not objective.is_multi:
        return "gp"
    return "nsga2" if trials >= NSGA2_MIN_TRIALS else "tpe"


def resolve_early_stop(name: str, objective: Objective) -> str:
    """`auto` -> `asha` for one objective, `off` for a Pareto front; a mismatch is a ValueError."""
    if name not in EARLY_STOPS:
        raise ValueError(f"--early-stop: unknown {name!r}; choose one of: {', '.join(EARLY_STOPS)}")
    if name == "auto":
        return "off" if objective.is_multi else "asha"
    if name == "asha" and objective.is_multi:
        raise ValueError(
            f"--early-stop asha: ASHA ranks one metric and {objective.name} has "
            f"{len(objective.metrics)}; use --early-stop dominance or off"
        )
    if name == "dominance" and not objective.is_multi:
        raise ValueError(
            f"--early-stop dominance is for Pareto objectives; {objective.name} has one metric, "
            "use --early-stop asha"
        )
    return name
