"""What `--sampler auto` and `--early-stop auto` pick, and the combinations refused."""

from __future__ import annotations

import pickle
import warnings

import optuna
import pytest

from sparsetune.search.choices import NSGA2_MIN_TRIALS, resolve_early_stop, resolve_sampler
from sparsetune.search.objectives import OBJECTIVES
from sparsetune.search.samplers import ProposedTrialsOnly, make_sampler

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
    sampler = make_sampler(name, trials=24, seed=0)
    if name in ("tpe", "gp"):  # the model-based ones see the trials they proposed only
        assert isinstance(sampler, ProposedTrialsOnly)
        sampler = sampler.inner
    assert isinstance(sampler, cls)


def test_the_sweeps_tpe_models_each_methods_knobs_jointly_and_warns_of_nothing():
    """Multivariate TPE with one group per method (search/samplers.py: on the tabular benchmark
    it finds which knobs go together, where one density per knob did not). Built with Optuna's
    deprecation warnings turned into errors: a sweep's user is not shown them."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sampler = make_sampler("tpe", trials=24, seed=0)
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
    for _ in range(10):
        trial = study.ask()
        if trial.suggest_categorical("method", ["a", "b"]) == "a":
            x, y = trial.suggest_float("a.x", 0, 1), trial.suggest_float("a.y", 0, 1)
            study.tell(trial, [1 - x * (1 - y), x])
        else:
            study.tell(trial, [trial.suggest_float("b.z", 0, 1), 0.5])
    jointly = sampler.infer_relative_search_space(study, study.ask())
    assert {"a.x", "a.y"} <= set(jointly)  # modelled together, not one at a time


def test_model_based_samplers_do_not_model_the_added_earlier_rounds():
    """The study holds every round (search/rounds.py); TPE models the trials it proposed. An
    added round at an extreme value must not pull TPE's proposals there."""
    from optuna.distributions import FloatDistribution

    from sparsetune.search.rounds import SOURCE_ATTR

    study = optuna.create_study(
        directions=["maximize"], sampler=make_sampler("tpe", trials=24, seed=0)
    )
    for _ in range(12):  # proposed trials: the best values at low x
        trial = study.ask()
        x = trial.suggest_float("x", 0, 1)
        study.tell(trial, 1 - x)
    for value in (0.99, 0.98, 0.97):  # added rounds: far better values at high x
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": value},
                distributions={"x": FloatDistribution(0, 1)},
                values=[10.0],
                user_attrs={SOURCE_ATTR: 0},
            )
        )
    proposals = []
    for _ in range(8):
        trial = study.ask()
        proposals.append(trial.suggest_float("x", 0, 1))
        study.tell(trial, 1 - proposals[-1])
    assert sum(x > 0.9 for x in proposals) <= 1, proposals
    assert study.best_trial.user_attrs == {SOURCE_ATTR: 0}  # the record holds them all


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


@pytest.mark.parametrize("name", ["tpe", "nsga2", "gp", "random", "qmc"])
def test_every_sampler_survives_pickling_as_ray_saves_it(name):
    """Ray pickles the searcher, sampler included, into the experiment state (and to a Ray Client
    server). Optuna 5.1's NSGA-II holds a thread lock that pickle refuses: a sweep resolved to
    nsga2 crashed at start. The copy must also go on sampling, seeded as the original."""
    sampler = make_sampler(name, trials=200, seed=3)
    copy = pickle.loads(pickle.dumps(sampler))
    values = []
    for each in (sampler, copy):
        study = optuna.create_study(directions=["maximize", "maximize"], sampler=each)
        study.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)), 12)
        values.append([t.params for t in study.trials])
    assert values[0] == values[1]
