"""A trial's planned training epochs (`pruning.epochs`, what `--budget-epochs` counts): per plan
kind, per method at the papers' settings, and the same count as a real trial reports."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from sparsetune.config import DataConfig, TrainConfig, TrialConfig
from sparsetune.pruning import plans
from sparsetune.pruning.epochs import EPOCHS, planned_epochs, planned_round_epochs, round_epochs
from sparsetune.recipe import method_recipe
from sparsetune.trial import run_trial


def test_every_plan_kind_has_an_epoch_count():
    kinds = {
        value
        for value in vars(plans).values()
        if inspect.isclass(value) and issubclass(value, plans.Plan) and value is not plans.Plan
    }
    assert kinds == set(EPOCHS)

    @dataclasses.dataclass(frozen=True)
    class Unknown(plans.Plan):
        pass

    with pytest.raises(TypeError, match="no epoch count for the plan Unknown"):
        round_epochs(Unknown(), 3)


def test_each_plan_kind_counts_its_rounds_and_falls_back_to_the_recipe():
    assert round_epochs(plans.NoPruning(), 7) == ()
    assert round_epochs(plans.IterativePruning(3, (None,) * 3, retrain_epochs=2), 7) == (2, 2, 2)
    assert round_epochs(plans.IterativePruning(2, (None,) * 2, retrain_epochs=None), 7) == (7, 7)
    assert round_epochs(plans.AtInitialisation(target=0.9, scoring_examples=10), 7) == (7,)
    assert round_epochs(plans.TrainThenPrune(epochs=4), 7) == (4,)
    assert round_epochs(plans.TrainThenPrune(epochs=None), 7) == (7,)
    sensitivity = plans.PruneDuringTraining(rounds=3, epochs_per_round=2, tolerance=0.01)
    assert round_epochs(sensitivity, 7) == (2, 2, 2)  # at most: it may stop early


def paper(method: str, **params) -> TrialConfig:
    recipe = method_recipe("lenet300", method)
    return TrialConfig(
        model="lenet300",
        data=DataConfig(name="mnist"),
        train=recipe.train,
        method=method,
        params={**recipe.params, **params},
    )


@pytest.mark.parametrize(
    ("method", "rounds", "total"),
    [
        ("dense", (), 0),  # the dense stage is not counted
        ("magnitude", (11,) * 5, 55),  # rounds x retrain_epochs
        ("lottery", (55,) * 10, 550),  # rounds x its own recipe's 55 epochs
        ("l0", (200,), 200),  # its gated training
        ("sensitivity", (1,) * 100, 100),  # epochs // prune_every rounds of prune_every
        ("snip", (11,), 11),  # the dense recipe's epochs, once
        ("grasp", (11,), 11),
        ("random", (11,), 11),
    ],
)
def test_lenet300_paper_recipes(method, rounds, total):
    assert planned_round_epochs(paper(method)) == rounds
    assert planned_epochs(paper(method)) == total


def test_knobs_that_change_the_length_change_the_count():
    assert planned_epochs(paper("lottery", train_epochs=3, rounds=4)) == 12
    assert planned_epochs(paper("magnitude", rounds=2, retrain_epochs=0)) == 0
    assert planned_epochs(paper("sensitivity", epochs=10, prune_every=3)) == 9


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("magnitude", {"criterion": "global", "sparsity": 0.5, "rounds": 2, "retrain_epochs": 2}),
        ("lottery", {"rounds": 2, "train_epochs": 1}),
        ("snip", {"sparsity": 0.5}),
        ("l0", {"epochs": 1}),
    ],
)
def test_a_trial_reports_the_epochs_its_plan_says(small_data, tmp_path, method, params):
    config = TrialConfig(
        model="lenet300",
        data=small_data,
        train=TrainConfig(epochs=1),
        method=method,
        params=params,
        device="cpu",
    )
    results = run_trial(config, cache_dir=tmp_path / "cache")
    per_round = planned_round_epochs(config)
    cumulative = [sum(per_round[: r.round]) for r in results]
    assert [r.epochs_trained for r in results] == cumulative
    assert results[-1].epochs_trained == planned_epochs(config)
