"""Schedules: how a method's pruning steps and training interleave.

A schedule owns the order of events in a trial; a method owns the criterion. So iterative
pruning, with or without rewinding, can wrap any criterion, and the trial never branches on a
method's name. Each schedule calls `trial.report(round_index)` once per point worth reporting;
every reported round is a candidate for the Pareto front.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch

if TYPE_CHECKING:
    from sparsetune.trial import TrialContext


Control = Literal["none", "shuffle", "reinit"]


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
    """Start from the trained dense model; each round prunes, then trains the survivors.

    Without rewinding (Han et al. 2015) the survivors keep their trained values and retrain for
    `retrain_epochs` at the method's retraining recipe. With `rewind_to` = j (Frankle & Carbin
    2019; Frankle et al. 2020) the survivors are reset to theta_j of the shared dense run before
    training again (`retrain_epochs` None: the full recipe). `targets` gives each round's sparsity,
    or None per round when the criterion decides (Han's C x std threshold). `control` replaces the
    found mask or weights with the paper's controls before training (see `apply_control`).
    """

    rounds: int
    targets: tuple[float | None, ...]
    retrain_epochs: int | None
    rewind_to: int | None = None
    control: Control = "none"

    def __post_init__(self) -> None:
        if self.control != "none" and self.rewind_to is None:
            raise ValueError("control: the lottery controls need rewinding (set rewind_to)")

    def run(self, trial: TrialContext) -> None:
        for index in range(1, self.rounds + 1):
            info = RoundInfo(index, self.rounds, self.targets[index - 1])
            trial.masks.update(trial.method.compute_masks(trial.model, trial.masks, info))
            if self.rewind_to is not None:
                weights = trial.dense.checkpoint.weights_at(self.rewind_to)
                trial.load_weights(weights)
                apply_control(trial, self.control, weights, salt=index)
            trial.retrain(self.retrain_epochs)
            trial.report(index)


@dataclass(frozen=True)
class AtInitialisation(Schedule):
    """Pruning at initialisation (SNIP, GraSP, random): reset to theta_0 of the shared dense run,
    let the method score on a batch (`at_init`), prune once to `target`, then train the sparse
    network with the full dense recipe and report it as round 1."""

    target: float
    scoring_examples: int
    control: Control = "none"

    def run(self, trial: TrialContext) -> None:
        init = trial.dense.checkpoint.init
        trial.load_weights(init)
        batch = trial.scoring_batch(self.scoring_examples)
        trial.method.at_init(trial.model, trial.masks, batch)
        info = RoundInfo(1, 1, self.target)
        trial.masks.update(trial.method.compute_masks(trial.model, trial.masks, info))
        apply_control(trial, self.control, init, salt=1)
        trial.retrain(None)
        trial.report(1)


def apply_control(
    trial: TrialContext, control: Control, weights: dict[str, torch.Tensor], salt: int
) -> None:
    """The controls of Frankle & Carbin 2019 and Frankle et al. 2021 ("Missing the Mark"), applied
    after a mask was found and the survivors were set to `weights` (theta_j or theta_0):
    - `shuffle`: each layer's mask permuted at random, the survivors set to `weights` again (same
      per-layer sparsity, random positions: the lottery paper's random-mask control);
    - `reinit`: the same mask, the kept weights drawn afresh from the model's initialiser;
    - `none`: the method's own mask and weights.
    Seeded by the trial's seed and `salt` (the round), so a control is reproducible."""
    if control == "none":
        return
    seed = trial.config.seed * 7919 + salt
    if control == "shuffle":
        generator = torch.Generator().manual_seed(seed)
        shuffled = {}
        for name, mask in trial.masks.items():
            order = torch.randperm(mask.numel(), generator=generator).to(mask.device)
            shuffled[name] = mask.flatten()[order].view_as(mask)
        # A control replaces the mask rather than narrowing it: the one place masks may revive.
        trial.masks.replace(shuffled)
        trial.load_weights(weights)
    else:
        trial.load_weights(trial.fresh_initialisation(seed))
