"""Schedules: how a method's pruning steps and training interleave.

A schedule owns the order of events in a trial; a method owns the criterion. So iterative
pruning, with or without rewinding, can wrap any criterion, and the trial never branches on a
method's name. Each schedule calls `trial.report(round_index)` once per point worth reporting;
every reported round is a candidate for the Pareto front.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sparsetune.trial import TrialContext


@dataclass(frozen=True)
class RoundInfo:
    index: int  # 1-based
    total: int
    target_sparsity: float | None = None  # None: the criterion sets the sparsity itself


class Schedule(ABC):
    @abstractmethod
    def run(self, trial: TrialContext) -> None:
        """Prune and train `trial.model`, calling `trial.report` after each round."""


class NoPruning(Schedule):
    """The dense baseline: report the dense model as round 0."""

    def run(self, trial: TrialContext) -> None:
        trial.report(0)


@dataclass(frozen=True)
class IterativePruning(Schedule):
    """Start from the trained dense model; each round prunes, then retrains the survivors
    (Han et al. 2015). `targets` gives each round's sparsity, or None per round when the
    criterion decides (Han's C x std threshold)."""

    rounds: int
    targets: tuple[float | None, ...]
    retrain_epochs: int

    def run(self, trial: TrialContext) -> None:
        for index in range(1, self.rounds + 1):
            info = RoundInfo(index, self.rounds, self.targets[index - 1])
            trial.masks.update(trial.method.compute_masks(trial.model, trial.masks, info))
            trial.retrain(self.retrain_epochs)
            trial.report(index)
