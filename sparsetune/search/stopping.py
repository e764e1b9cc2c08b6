"""When trials and sweeps stop early. (No new trial once the budget is spent: that is the
searcher's part, `searcher.SweepSearch`.)

- `BudgetStopper`: once the budget is spent, each running trial stops at its next report, i.e.
  after the pruning round it is in; the sweep then ends and reports its front.
- `DominanceStopper` (Pareto objectives): stops a trial whose last `patience` rounds all lie
  behind the current front by a margin. Off by default: whether it pays is measured in
  benchmarks/search_efficiency.py (docs/search.md).
- `asha`: Ray's ASHA over pruning rounds, for single-objective sweeps.
- `EpochBudget` (`--budget-epochs`): the training epochs a sweep has committed, which the
  searcher reads before it starts a trial. No trial is stopped for it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from ray.tune.schedulers import ASHAScheduler
from ray.tune.stopper import Stopper

from sparsetune.pruning.epochs import planned_epochs
from sparsetune.search.hypervolume import axis_value
from sparsetune.search.objectives import Objective


class BudgetStopper(Stopper):
    def __init__(self, deadline: float):
        self.deadline = deadline

    def __call__(self, trial_id: str, result: dict) -> bool:
        return time.time() >= self.deadline

    def stop_all(self) -> bool:
        # Not here: stopping all would cut running trials mid-round.
        return False


def epochs_spent(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Trial id -> the training epochs it has spent: the `epochs_trained` of its last round
    (the largest: the count only grows) among `rows` (progress rows or trials.csv's)."""
    spent: dict[str, int] = {}
    for row in rows:
        trained = row.get("epochs_trained")
        if row.get("trial_id") and trained is not None:
            spent[row["trial_id"]] = max(spent.get(row["trial_id"], 0), int(trained))
    return spent


class EpochBudget:
    """`--budget-epochs E`: the sweep starts a trial only while the epochs it has committed are
    below E. Committed = the epochs that ended trials spent (their last round's
    `epochs_trained`: early-stopped and failed trials count what they trained) + what running
    trials plan (`pruning.epochs.planned_epochs`, known from the configuration before it runs).
    A trial that starts below E runs its whole plan, so the sweep may end above E by at most one
    trial's plan; `epochs_spent` (pareto.json) says what was trained. Counting planned epochs,
    not time, makes the budget the same on any machine.

    `history`: the sweep's progress callback, whose rows and ended trials are what was spent;
    a resumed sweep gets them back from Ray's saved state, so its spent epochs carry over.
    `template`: builds a trial's config from the flat config the searcher suggests."""

    def __init__(self, limit: int, template: Any, history: Any):
        self.limit = limit
        self.template = template
        self.history = history
        self.planned: dict[str, int] = {}  # trial id -> its planned epochs, for started trials

    def __getstate__(self) -> dict[str, Any]:
        # Pickled with the searcher in Ray's experiment state: the planned epochs are what a
        # resume needs of it (`SweepSearch.restore`); the progress callback is saved on its own.
        return {**self.__dict__, "history": None}

    def start(self, trial_id: str, flat: Mapping[str, Any]) -> None:
        """Count a trial the searcher has just suggested (`flat`: its config)."""
        self.planned[trial_id] = planned_epochs(self.template.trial_config(dict(flat)))

    def running(self) -> list[str]:
        """The started trials that have not ended."""
        ended = set(self.history.done) | set(self.history.failures)
        return [trial_id for trial_id in self.planned if trial_id not in ended]

    def committed(self) -> int:
        spent = epochs_spent(self.history.rows)
        ahead = sum(
            max(0, self.planned[trial_id] - spent.get(trial_id, 0)) for trial_id in self.running()
        )
        return sum(spent.values()) + ahead

    def exhausted(self) -> bool:
        return self.committed() >= self.limit


def oriented_point(result: Mapping[str, Any], metrics: Sequence[str], num_classes: int) -> tuple:
    """The result on the hypervolume axes (larger is better on each)."""
    return tuple(axis_value(m, float(result[m]), num_classes) for m in metrics)


class DominanceStopper(Stopper):
    """Stop a trial when each of its last `patience` rounds is beaten by some reported point of
    another trial by at least `margin` on every axis (hypervolume axes: accuracy points above
    chance, log10 compression, log10 FLOPs reduction).

    `history`: an object whose `rows` hold the sweep's earlier reports (the progress callback).
    A resumed sweep's callback gets the rows of before the kill back from Ray's saved state
    before the first new result; the stopper reads them then, so it does not start from an empty
    memory and let dominated trials run on."""

    def __init__(
        self,
        objective: Objective,
        num_classes: int,
        *,
        margins: Sequence[float] | None = None,
        patience: int = 2,
        history: Any = None,
    ):
        self.metrics = objective.metrics
        self.num_classes = num_classes
        # 1 accuracy point; 10% in compression or FLOPs (log10 1.1 = 0.041)
        default = {"val_acc": 0.01, "compression": 0.041, "flops_ratio": 0.041}
        self.margins = tuple(margins or [default[m] for m in self.metrics])
        self.patience = patience
        self.points: dict[str, list[tuple]] = defaultdict(list)
        self._history = history

    def _read_history(self) -> None:
        history, self._history = self._history, None  # once: later reports come here directly
        for row in getattr(history, "rows", None) or []:
            if row.get("trial_id") and all(row.get(m) is not None for m in self.metrics):
                point = oriented_point(row, self.metrics, self.num_classes)
                self.points[row["trial_id"]].append(point)

    def __call__(self, trial_id: str, result: dict) -> bool:
        if self._history is not None:
            self._read_history()
        if any(result.get(m) is None for m in self.metrics):
            return False
        self.points[trial_id].append(oriented_point(result, self.metrics, self.num_classes))
        recent = self.points[trial_id][-self.patience :]
        if len(recent) < self.patience:
            return False
        others = [p for other, points in self.points.items() if other != trial_id for p in points]
        return all(self._beaten(point, others) for point in recent)

    def _beaten(self, point: tuple, others: list[tuple]) -> bool:
        return any(
            all(q >= p + m for q, p, m in zip(other, point, self.margins, strict=True))
            for other in others
        )

    def stop_all(self) -> bool:
        return False


def asha(objective: Objective) -> ASHAScheduler:
    """ASHA over pruning rounds (each `tune.report` is one round), on the objective's metric."""
    return ASHAScheduler(
        time_attr="training_iteration",
        metric=objective.metrics[0],
        mode=objective.modes[0],
        max_t=100,  # above any space's rounds: rungs at 1, 2, 4, ... rounds
        grace_period=1,
        reduction_factor=2,
    )
