"""The stoppers' rules, by hand: the time budget and the dominance-based stop."""

from __future__ import annotations

import time

from sparsetune.search.objectives import OBJECTIVES
from sparsetune.search.stopping import BudgetStopper, DominanceStopper


def result(acc: float, compression: float) -> dict:
    return {"val_acc": acc, "compression": compression, "flops_ratio": 1 / compression}


def test_the_budget_stops_each_trial_at_its_next_report_and_never_all_at_once():
    spent = BudgetStopper(time.time() - 1)
    assert spent("a", result(0.9, 2.0)) is True
    assert spent.stop_all() is False  # running rounds are never cut
    assert BudgetStopper(time.time() + 3600)("a", result(0.9, 2.0)) is False


def test_dominance_stops_a_trial_whose_last_rounds_are_all_beaten_by_a_margin():
    stopper = DominanceStopper(OBJECTIVES["pareto"], num_classes=10, patience=2)
    assert not stopper("leader", result(0.95, 20.0))
    # Beaten by 2+ points and far more compression, twice: stop after the second round.
    assert not stopper("weak", result(0.90, 2.0))
    assert stopper("weak", result(0.91, 4.0))


def test_within_the_margin_or_ahead_on_one_axis_a_trial_goes_on():
    stopper = DominanceStopper(OBJECTIVES["pareto"], num_classes=10, patience=2)
    stopper("leader", result(0.95, 20.0))
    # 0.5 points behind: inside the 1-point accuracy margin.
    assert not stopper("close", result(0.945, 2.0))
    assert not stopper("close", result(0.945, 4.0))
    # Far behind on accuracy but more compressed than the leader: not dominated.
    assert not stopper("sparse", result(0.50, 30.0))
    assert not stopper("sparse", result(0.50, 40.0))


def test_a_trial_is_not_stopped_by_its_own_points_or_before_patience_rounds():
    stopper = DominanceStopper(OBJECTIVES["pareto"], num_classes=10, patience=2)
    assert not stopper("alone", result(0.95, 20.0))
    assert not stopper("alone", result(0.50, 2.0))  # beaten only by its own first round
    stopper = DominanceStopper(OBJECTIVES["pareto"], num_classes=10, patience=3)
    stopper("leader", result(0.99, 50.0))
    assert not stopper("weak", result(0.5, 2.0))
    assert not stopper("weak", result(0.5, 2.0))
    assert stopper("weak", result(0.5, 2.0))


def test_a_resumed_sweep_stops_against_the_reports_of_before_the_kill():
    """The progress callback's restored rows (`history`) count as reported points: a trial of
    the resumed sweep dominated by a point from before the kill stops as it would have."""

    class Restored:  # what SweepProgress holds after Ray gave its state back
        rows = [
            {"trial_id": "leader", "round": 1, **result(0.95, 20.0)},
            {"trial_id": "failed", "round": 1, "val_acc": None, "compression": None},
        ]

    fresh = DominanceStopper(OBJECTIVES["pareto"], num_classes=10, patience=1)
    assert not fresh("weak", result(0.90, 2.0))  # nothing to compare with: goes on
    resumed = DominanceStopper(OBJECTIVES["pareto"], num_classes=10, patience=1, history=Restored)
    assert resumed("weak", result(0.90, 2.0))
    # The leader's own restored rounds are its own: they do not stop it.
    assert not resumed("leader", result(0.90, 2.0))


def test_dominance_counts_flops_as_a_minimised_metric():
    stopper = DominanceStopper(OBJECTIVES["pareto-flops"], num_classes=10, patience=1)
    stopper("leader", {"val_acc": 0.95, "flops_ratio": 0.05})
    assert stopper("weak", {"val_acc": 0.90, "flops_ratio": 0.5})
    assert not stopper("lean", {"val_acc": 0.90, "flops_ratio": 0.01})


def test_asha_ranks_the_objectives_metric_over_pruning_rounds():
    from sparsetune.search.stopping import asha

    scheduler = asha(OBJECTIVES["max-compression"])
    assert (scheduler._metric, scheduler._mode) == ("compression", "max")
    assert scheduler._time_attr == "training_iteration"  # one report = one pruning round
    assert asha(OBJECTIVES["max-acc"])._metric == "val_acc"


class Progress:
    """What EpochBudget reads of the progress callback: rows and the trials that ended."""

    def __init__(self):
        self.rows: list[dict] = []
        self.done: set[str] = set()
        self.failures: dict[str, str] = {}


class Template:
    """Builds a magnitude trial of `rounds` rounds of one retraining epoch."""

    def trial_config(self, flat):
        from sparsetune.config import DataConfig, TrialConfig

        params = {"rounds": flat["rounds"], "retrain_epochs": 1}
        return TrialConfig(model="lenet300", data=DataConfig(name="mnist"), params=params)


def test_the_epoch_budget_counts_what_ended_trials_spent_and_running_ones_plan():
    from sparsetune.search.stopping import EpochBudget, epochs_spent

    progress = Progress()
    budget = EpochBudget(10, Template(), progress)
    budget.start("a", {"rounds": 4})
    budget.start("b", {"rounds": 3})
    assert budget.committed() == 7 and not budget.exhausted()
    assert budget.running() == ["a", "b"]
    # a reports 2 of its 4 epochs and is stopped early; b runs on
    progress.rows += [{"trial_id": "a", "round": r, "epochs_trained": r} for r in (1, 2)]
    assert budget.committed() == 7  # a may still train its 2 planned epochs
    progress.done.add("a")
    assert budget.committed() == 5 and sum(epochs_spent(progress.rows).values()) == 2
    budget.start("c", {"rounds": 5})
    assert budget.committed() == 10 and budget.exhausted()
    # a trial that failed without a report spent nothing
    progress.failures["c"] = "RuntimeError"
    assert budget.committed() == 5 and budget.running() == ["b"]
