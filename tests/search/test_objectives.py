"""Each objective's metrics, directions and constraint, and how they reach a real Optuna study
through the sweep's searcher (Ray's OptunaSearch plus constraints and the time budget)."""

from __future__ import annotations

import time

import optuna
import pytest
from ray.tune.search import Searcher

from sparsetune.search.objectives import OBJECTIVES, resolve_objective
from sparsetune.search.private_api import searcher_study
from sparsetune.search.samplers import make_sampler
from sparsetune.search.searcher import SweepSearch

D = optuna.study.StudyDirection
EXPECTED = {
    "pareto": ({"val_acc": D.MAXIMIZE, "compression": D.MAXIMIZE}),
    "pareto-flops": ({"val_acc": D.MAXIMIZE, "flops_ratio": D.MINIMIZE}),
    "pareto3": ({"val_acc": D.MAXIMIZE, "compression": D.MAXIMIZE, "flops_ratio": D.MINIMIZE}),
    "max-acc": ({"val_acc": D.MAXIMIZE}),
    "max-compression": ({"compression": D.MAXIMIZE}),
}


def space(trial) -> dict:
    trial.suggest_float("magnitude.c_fc", 0.5, 2.0)
    return {"method": "magnitude"}


def searcher(objective, sampler: str = "tpe", **options) -> SweepSearch:
    multi = objective.is_multi
    return SweepSearch(
        space=space,
        metric=list(objective.metrics) if multi else objective.metrics[0],
        mode=list(objective.modes) if multi else objective.modes[0],
        sampler=make_sampler(sampler, trials=8, seed=0),
        objective=objective,
        **options,
    )


def resolved(name: str):
    return resolve_objective(name, min_compression=10.0, max_drop=1.0, dense_val_acc=0.9)


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_each_objective_reaches_optuna_with_its_directions(name):
    objective = resolved(name)
    study = searcher_study(searcher(objective))
    assert dict(zip(objective.metrics, study.directions, strict=True)) == EXPECTED[name]


def test_bounds_are_filled_in_from_the_options_and_the_dense_model():
    max_acc = resolved("max-acc").bound
    assert (max_acc.metric, max_acc.minimum) == ("compression", 10.0)
    max_compression = resolved("max-compression").bound
    assert max_compression.metric == "val_acc"
    assert max_compression.minimum == pytest.approx(0.89)  # 0.9 - 1 point
    assert resolved("pareto").bound is None
    with pytest.raises(ValueError, match="needs --min-compression"):
        resolve_objective("max-acc")
    with pytest.raises(ValueError, match="needs --max-drop"):
        resolve_objective("max-compression", dense_val_acc=0.9)


def test_feasibility_follows_the_bound():
    objective = resolved("max-compression")  # val_acc >= 0.89
    assert objective.feasible({"val_acc": 0.89, "compression": 3.0})
    assert not objective.feasible({"val_acc": 0.8899, "compression": 30.0})
    assert not objective.feasible({"val_acc": None, "compression": 30.0})
    assert resolved("pareto").feasible({"val_acc": 0.1, "compression": 1.0})


def complete(search: SweepSearch, trial_id: str, result: dict) -> None:
    assert search.suggest(trial_id) is not None
    search.on_trial_complete(trial_id, result)


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "gp"])
def test_the_constraint_reaches_optuna_as_a_constraint_not_a_penalty(sampler):
    objective = resolved("max-acc")  # compression >= 10
    search = searcher(objective, sampler)
    complete(search, "a", {"val_acc": 0.95, "compression": 5.0})  # more accurate, infeasible
    complete(search, "b", {"val_acc": 0.90, "compression": 12.0})
    study = searcher_study(search)
    first, second = study.trials
    # The values Optuna holds are the metric itself; the violation is stored beside it.
    assert first.values == [0.95] and second.values == [0.90]
    assert first.constraints == {"compression>=10": 5.0}  # 10 - 5: violated
    assert second.constraints == {"compression>=10": -2.0}  # 10 - 12: feasible
    assert study.best_trial.number == second.number  # best among the feasible


def test_an_unconstrained_objective_sets_no_constraint():
    objective = resolved("pareto")
    search = searcher(objective)
    complete(search, "a", {"val_acc": 0.95, "compression": 5.0})
    assert searcher_study(search).trials[0].values == [0.95, 5.0]
    assert searcher_study(search).trials[0].constraints == {}  # an unconstrained objective


@pytest.mark.parametrize("name", ["pareto", "pareto-flops", "pareto3"])
def test_the_chance_floor_keeps_chance_level_tickets_off_the_front(name):
    """Ten classes: chance 0.1, floor 0.19. A 27x ticket at 0.12 is infeasible: out of the front
    (progress.front keeps feasible rows) and out of Optuna's best trials, told as a constraint."""
    objective = resolve_objective(name, num_classes=10)
    assert objective.floor.minimum == pytest.approx(0.19)
    assert resolve_objective(name, num_classes=100).floor.minimum == pytest.approx(0.109)
    chance_level = {"val_acc": 0.12, "compression": 27.0, "flops_ratio": 0.04}
    useful = {"val_acc": 0.85, "compression": 9.0, "flops_ratio": 0.2}
    assert not objective.feasible(chance_level) and objective.feasible(useful)
    search = searcher(objective)
    complete(search, "a", chance_level)
    complete(search, "b", useful)
    study = searcher_study(search)
    assert study.trials[0].constraints == {"val_acc>=0.19": pytest.approx(0.07)}
    assert study.trials[1].constraints == {"val_acc>=0.19": pytest.approx(-0.66)}
    assert [t.number for t in study.best_trials] == [1]  # the 27x ticket would be on it alone


def test_single_objectives_have_no_chance_floor():
    assert resolve_objective("max-acc", min_compression=10, num_classes=10).floor is None
    assert resolve_objective("pareto").floor is None  # without classes: no floor to set


def test_no_new_trial_once_the_budget_is_spent():
    objective = resolved("pareto")
    spent = searcher(objective, deadline=time.time() - 1)
    assert spent.suggest("a") == Searcher.FINISHED
    assert searcher_study(spent).trials == []
    running = searcher(objective, deadline=time.time() + 3600)
    assert isinstance(running.suggest("a"), dict)


def test_enqueued_points_are_asked_first_in_order():
    objective = resolved("pareto")
    points = [{"magnitude.c_fc": 1.7}, {"magnitude.c_fc": 0.6}]
    search = searcher(objective, "random", points_to_evaluate=points)
    assert search.suggest("a")["magnitude.c_fc"] == 1.7
    assert search.suggest("b")["magnitude.c_fc"] == 0.6
    assert search.suggest("c")["magnitude.c_fc"] not in (1.7, 0.6)
