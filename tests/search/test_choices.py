"""What `--sampler auto` and `--early-stop auto` pick, and the combinations refused."""

from __future__ import annotations

import optuna
import pytest

from sparsetune.search.choices import NSGA2_MIN_TRIALS, resolve_early_stop, resolve_sampler
from sparsetune.search.objectives import OBJECTIVES
from sparsetune.search.samplers import make_sampler

EXPECTED_AUTO = {
    # objective: (conditional space, fixed space at 24 trials, fixed space at 200 trials)
    "pareto": ("tpe", "tpe", "nsga2"),
    "pareto-flops": ("tpe", "tpe", "nsga2"),
    "pareto3": ("tpe", "tpe", "nsga2"),
    "max-acc": ("tpe", "gp", "gp"),
    "max-compression": ("tpe", "gp", "gp"),
}


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_auto_sampler_by_objective_and_space(name):
    objective = OBJECTIVES[name]
    picks = (
        resolve_sampler("auto", objective, conditional=True, trials=24),
        resolve_sampler("auto", objective, conditional=False, trials=24),
        resolve_sampler("auto", objective, conditional=False, trials=200),
    )
    assert picks == EXPECTED_AUTO[name]
    assert NSGA2_MIN_TRIALS <= 200


@pytest.mark.parametrize("name", ["tpe", "nsga2", "gp", "random", "qmc"])
def test_a_named_sampler_is_used_as_named(name):
    assert resolve_sampler(name, OBJECTIVES["pareto"], conditional=True, trials=8) == name


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("tpe", optuna.samplers.TPESampler),
        ("nsga2", optuna.samplers.NSGAIISampler),
        ("gp", optuna.samplers.GPSampler),
        ("random", optuna.samplers.RandomSampler),
        ("qmc", optuna.samplers.QMCSampler),
    ],
)
def test_each_sampler_is_built(name, cls):
    assert isinstance(make_sampler(name, trials=24, seed=0), cls)


def test_unknown_sampler_names_the_choices():
    with pytest.raises(ValueError, match="--sampler: unknown 'cmaes'; choose one of: auto, tpe"):
        resolve_sampler("cmaes", OBJECTIVES["pareto"], conditional=True, trials=8)


def test_early_stop_auto_is_asha_for_one_objective_and_off_for_a_front():
    for name, objective in OBJECTIVES.items():
        expected = "off" if objective.is_multi else "asha"
        assert resolve_early_stop("auto", objective) == expected, name
    assert resolve_early_stop("dominance", OBJECTIVES["pareto3"]) == "dominance"
    assert resolve_early_stop("off", OBJECTIVES["max-acc"]) == "off"
    with pytest.raises(ValueError, match="ASHA ranks one metric"):
        resolve_early_stop("asha", OBJECTIVES["pareto"])
    with pytest.raises(ValueError, match="is for Pareto objectives"):
        resolve_early_stop("dominance", OBJECTIVES["max-compression"])
    with pytest.raises(ValueError, match="--early-stop: unknown 'median'"):
        resolve_early_stop("median", OBJECTIVES["pareto"])
