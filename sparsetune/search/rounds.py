"""Every reported round in the Optuna study: the earlier rounds of a trial as trials of their own.

A trial reports several rounds (iterative pruning's, or sensitivity's checks), and the front is
built from all of them, but Ray's searcher tells Optuna the last one only. Each earlier round
becomes a COMPLETE trial of its own (`study.add_trial`), with:
- the parameters of the configuration that would end with exactly that result, where the method's
  schedule is prefix-consistent (`PruningMethod.round_equivalent`: magnitude and lottery, round r
  of R is the same config with `rounds: r`) and that configuration lies in the searched space:
  an observation of that configuration as real as if it had run alone;
- else the trial's own parameters, marked `equivalent: False`: that configuration did yield that
  ticket, at round r.
Its values are the objective's metrics, its constraints the objective's (bound, chance floor), so
`study.best_trials` is the sweep's front over every (trial, round). The model-based samplers
model the trials they proposed, not these (`samplers.ProposedTrialsOnly` says why). No Ray
here: the tabular benchmark (benchmarks/search_efficiency.py) replays the same function.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, IntDistribution

from sparsetune.pruning import METHODS
from sparsetune.pruning.base import PruningMethod
from sparsetune.search.objectives import Objective
from sparsetune.search.space import params_from_flat

# What each Optuna trial carries besides its values: the record it belongs to.
RECORD_ATTRS = ("run_id", "config_hash", "architecture", "method")
# The user attribute of an added round trial: the number of the Optuna trial whose round it was.
SOURCE_ATTR = "source_trial"


def is_round_trial(trial: optuna.trial.FrozenTrial) -> bool:
    """An earlier round added by `round_trial`, not a trial Ray ran."""
    return SOURCE_ATTR in trial.user_attrs


def method_of(flat: dict[str, Any]) -> tuple[str, PruningMethod | None]:
    """The method name and object of a flat trial config (`method`, `method.knob`, ...); the
    object None where the knobs do not make a config (the trial failed on them)."""
    name, knobs = params_from_flat(flat)
    if name not in METHODS:
        return name, None
    method = METHODS[name]
    try:
        return name, method(method.Config.model_validate(knobs))
    except ValueError:
        return name, None


def equivalent_params(
    params: Mapping[str, Any],
    distributions: Mapping[str, BaseDistribution],
    method_name: str,
    method: PruningMethod,
    round_index: int,
) -> dict[str, Any] | None:
    """`params` with the overrides under which the trial would end at `round_index`, or None
    where the method has none or they fall outside the searched space (a fixed knob, a value
    out of its range)."""
    overrides = method.round_equivalent(round_index)
    if overrides is None:
        return None
    equivalent = dict(params)
    for knob, value in overrides.items():
        name = f"{method_name}.{knob}"
        distribution = distributions.get(name)
        if distribution is None:
            return None
        if isinstance(distribution, IntDistribution):
            value = int(value)
        try:
            if not distribution._contains(distribution.to_internal_repr(value)):
                return None
        except (TypeError, ValueError):
            return None
        equivalent[name] = value
    return equivalent


def round_trial(
    params: Mapping[str, Any],
    distributions: Mapping[str, BaseDistribution],
    result: Mapping[str, Any],
    objective: Objective,
    *,
    method_name: str,
    method: PruningMethod | None = None,
    user_attrs: Mapping[str, Any] | None = None,
) -> optuna.trial.FrozenTrial | None:
    """The COMPLETE Optuna trial of one earlier round `result` of a trial with `params`; None
    when a metric is missing or NaN (the round reached nothing Optuna could hold)."""
    values = [result.get(metric) for metric in objective.metrics]
    if any(v is None or math.isnan(float(v)) for v in values):
        return None  # (an infinite compression, every weight pruned, is a value like any)
    round_index = int(result["round"])
    equivalent = None
    if method is not None and round_index >= 1:
        equivalent = equivalent_params(params, distributions, method_name, method, round_index)
    attrs = {key: result[key] for key in RECORD_ATTRS if result.get(key) is not None}
    attrs |= dict(user_attrs or {}) | {
        "round": round_index,
        "equivalent": equivalent is not None,
        "feasible": objective.feasible(result),
    }
    return optuna.trial.create_trial(
        params=equivalent or dict(params),
        distributions=dict(distributions),
        values=[float(v) for v in values],
        user_attrs=attrs,
        constraints=objective.constraints(result) or None,
    )
