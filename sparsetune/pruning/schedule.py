"""Schedules: how a method's pruning steps and training interleave.

A schedule owns the order of events in a trial; a method owns the criterion. So iterative
pruning, with or without rewinding, can wrap any criterion, and the trial never branches on a
method's name. Each schedule calls `trial.report(round_index)` once per point worth reporting;
every reported round is a candidate for the Pareto front.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from sparsetune.trial import TrialContext


Control = Literal["none", "shuffle", "reinit"]
RateSchedule = Literal["constant", "cosine"]


@dataclass(frozen=True)
class RoundInfo:
    index: int  # 1-based
    total: int
    target_sparsity: float | None = None  # None: the criterion sets the sparsity itself


class Schedule(ABC):
    """Resuming: a trial restarted after its worker died gets back the state of its last
    reported round (see `TrialContext.restore_round`). Before `run`, the trial asks
    `finished_after(round)` (nothing left to do: the trial ends) and `continues_after(round)`
    (`run` then starts after that round, at `trial.resume_after + 1`). A schedule that says no
    to both runs again from the start; its rounds come out the same under the same seeds, and the
    search layer ignores rounds it has already recorded."""

    @abstractmethod
    def run(self, trial: TrialContext) -> None:
        """Prune and train `trial.model`, calling `trial.report` after each round."""

    def finished_after(self, round_index: int) -> bool:
        """True if a trial that reported `round_index` has nothing left to do."""
        return False

    def continues_after(self, round_index: int) -> bool:
        """True if `run` can continue from the model and masks as they were after reporting
        `round_index`."""
        return False


class NoPruning(Schedule):
    """The dense baseline: report the dense model as round 0."""

    def run(self, trial: TrialContext) -> None:
        trial.report(0)

    def finished_after(self, round_index: int) -> bool:
        return True


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

    def finished_after(self, round_index: int) -> bool:
        return round_index >= self.rounds

    def continues_after(self, round_index: int) -> bool:
        # A round's state is the masks and weights after it, which a checkpoint restores;
        # rewinding reads theta_j from the dense cache, and each control is seeded by its round.
        return 1 <= round_index < self.rounds

    def run(self, trial: TrialContext) -> None:
        for index in range(trial.resume_after + 1, self.rounds + 1):
            info = RoundInfo(index, self.rounds, self.targets[index - 1])
            previous = trial.masks.state()
            trial.masks.update(trial.method.compute_masks(trial.model, trial.masks, info))
            if self.rewind_to is not None:
                weights = trial.dense.checkpoint.weights_at(self.rewind_to)
                trial.load_weights(weights)
                apply_control(trial, self.control, previous, weights, salt=index)
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
        previous = trial.masks.state()
        trial.masks.update(trial.method.compute_masks(trial.model, trial.masks, info))
        apply_control(trial, self.control, previous, init, salt=1)
        trial.retrain(None)
        trial.report(1)

    def finished_after(self, round_index: int) -> bool:
        return round_index >= 1


def apply_control(
    trial: TrialContext,
    control: Control,
    previous: dict[str, torch.Tensor],
    weights: dict[str, torch.Tensor],
    salt: int,
) -> None:
    """The controls of Frankle & Carbin 2019 and Frankle et al. 2021 ("Missing the Mark"), applied
    after a round's mask was found (narrowing `previous`, the mask before the round) and the
    survivors were set to `weights` (theta_j or theta_0):
    - `shuffle`: in each layer, as many survivors as the method kept, chosen at random among the
      weights `previous` kept: a random mask with the method's per-layer sparsity that is still
      nested across rounds (at initialisation, a plain random permutation of the mask);
    - `reinit`: the method's mask, the kept weights drawn afresh from the model's initialiser;
    - `none`: the method's own mask and weights.
    Seeded by the trial's seed and `salt` (the round), so a control is reproducible."""
    if control == "none":
        return
    seed = trial.config.seed * 7919 + salt
    if control == "shuffle":
        generator = torch.Generator().manual_seed(seed)
        shuffled = {}
        for name, mask in trial.masks.items():
            allowed = previous[name].flatten().nonzero().squeeze(1)
            chosen = allowed[torch.randperm(len(allowed), generator=generator)]
            flat = torch.zeros(mask.numel(), dtype=torch.bool)
            flat[chosen[: int(mask.count_nonzero())]] = True
            shuffled[name] = flat.view_as(mask).to(mask.device)
        # Not a subset of the method's new mask, only of `previous`: hence replace, not update.
        trial.masks.replace(shuffled)
        trial.load_weights(weights)
    else:
        trial.load_weights(trial.fresh_initialisation(seed))


@dataclass(frozen=True)
class TrainThenPrune(Schedule):
    """Methods that learn their masks while training (L0's hard-concrete gates): start from
    theta_0 of the shared dense run (`from_init`; those papers train from scratch) or keep the
    trained dense weights, train once with the method's recipe and hooks (`epochs` None: the
    recipe's length), then let the method turn what it learnt into masks and report round 1."""

    epochs: int | None = None
    from_init: bool = True

    def run(self, trial: TrialContext) -> None:
        if self.from_init:
            trial.load_weights(trial.dense.checkpoint.init)
        trial.retrain(self.epochs)
        info = RoundInfo(1, 1, None)
        trial.masks.update(trial.method.compute_masks(trial.model, trial.masks, info))
        trial.report(1)

    def finished_after(self, round_index: int) -> bool:
        return round_index >= 1


@dataclass(frozen=True)
class PruneDuringTraining(Schedule):
    """Regularise-and-prune (Tartaglione et al. 2018): start from the trained dense model; each
    round trains `epochs_per_round` epochs with the method's recipe and hooks (its regulariser),
    prunes by the method's criterion (never reviving), and checks validation accuracy.

    A round within `tolerance` of the dense model's validation accuracy is reported. A round below
    it is not reported, and `patience` such rounds in a row stop the run: the model and masks go
    back to the last reported round (the paper stops once accuracy worsens past the tolerance,
    keeping the last acceptable net; `patience` 1 is exactly that, more lets training recover from
    a dip, as a fresh learning rate causes in the first rounds). If no round is within the
    tolerance, the dense model is reported as round 0, so that every trial reports a point. At most
    `rounds` rounds run, and a run that ends below the tolerance also goes back.
    """

    rounds: int
    epochs_per_round: int
    tolerance: float
    patience: int = 1

    # No resume hooks: which round comes last depends on the rounds that were not reported, and
    # the state of those is not kept, so a restarted trial runs again from the start.

    def run(self, trial: TrialContext) -> None:
        # Imported here: the loop imports the pruning base, which names this module for types.
        from sparsetune.train import loop

        floor = trial.dense.checkpoint.metrics["val_acc"] - self.tolerance
        # state_dict holds the masks as buffers, so one snapshot restores weights and masks.
        accepted = _snapshot(trial.model)
        reported, misses = False, 0
        for index in range(1, self.rounds + 1):
            info = RoundInfo(index, self.rounds, None)
            trial.method.begin_round(info)
            trial.retrain(self.epochs_per_round)
            trial.masks.update(trial.method.compute_masks(trial.model, trial.masks, info))
            val_acc, _ = loop.evaluate(trial.model, trial.splits.val)
            log.info(
                "round %d: val %.4f (floor %.4f), %.1fx",
                index,
                val_acc,
                floor,
                trial.masks.compression(),
            )
            if val_acc < floor:
                misses += 1
                if misses >= self.patience:
                    break
                continue
            trial.report(index)
            reported, misses = True, 0
            accepted = _snapshot(trial.model)
        if misses:
            # In place (load_state_dict copies): weights and mask buffers return to the last
            # accepted round. Restoring a reported state, not reviving weights.
            trial.model.load_state_dict(accepted)
        if not reported:
            trial.report(0)


def rate_factor(schedule: RateSchedule, index: int, total: int) -> float:
    """The factor on a method's rate in round `index` (1-based) of `total`: 1 throughout, or a
    cosine from 1 in the first round towards 0 (0.5 (1 + cos(pi (index - 1) / total))), held for
    the round: the loop's schedulers step per epoch, and a round is often one epoch."""
    if schedule == "constant":
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * (index - 1) / total))


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}
