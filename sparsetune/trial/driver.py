"""The one trial driver: runs each kind of plan (`sparsetune.pruning.plans`) on a trial.

A plan is data that says what happens each round; the runner for its kind (`RUNNERS`, looked up
by the plan's type, never by the method's name) does it: calls the method's hooks, trains and
reports through the trial's verbs. Every random draw here is seeded by the trial's seed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

from sparsetune.data.tensors import Splits
from sparsetune.pruning.base import PruningMethod
from sparsetune.pruning.masking import MaskSet
from sparsetune.pruning.plans import (
    AtInitialisation,
    Control,
    IterativePruning,
    NoPruning,
    Plan,
    PruneDuringTraining,
    RoundInfo,
    TrainThenPrune,
)
from sparsetune.train import loop
from sparsetune.train.dense_cache import CachedDense

log = logging.getLogger(__name__)


class Trial(Protocol):
    """What the runners use of a trial (`TrialContext` is the real one)."""

    seed: int
    model: nn.Module
    masks: MaskSet
    method: PruningMethod
    splits: Splits
    dense: CachedDense
    resume_after: int  # the round a restarted trial continues after (0: from the start)

    def retrain(self, epochs: int | None = None) -> None:
        """Train the masked model with the method's recipe; `epochs` None keeps its length."""

    def report(self, round_index: int) -> object:
        """Evaluate the model as it is and report it as round `round_index`."""

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Set the model to a plain state dict, keeping the masks."""

    def fresh_initialisation(self, seed: int) -> dict[str, torch.Tensor]:
        """A new draw of the model's initial weights under `seed`."""

    def scoring_batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`size` training examples drawn under the trial's seed."""


def run_plan(plan: Plan, trial: Trial) -> None:
    """Run `plan` on `trial`, reporting each round worth reporting."""
    for kind in type(plan).__mro__:  # a plan subclass runs as the kind it extends
        if kind in RUNNERS:
            RUNNERS[kind](plan, trial)
            return
    known = ", ".join(kind.__name__ for kind in RUNNERS)
    raise TypeError(f"no runner for the plan {type(plan).__name__}; the plan kinds are {known}")


def _no_pruning(plan: NoPruning, trial: Trial) -> None:
    trial.report(0)


def _iterative(plan: IterativePruning, trial: Trial) -> None:
    for index in range(trial.resume_after + 1, plan.rounds + 1):
        info = RoundInfo(index, plan.rounds, plan.targets[index - 1], seed=trial.seed)
        previous = trial.masks.state()
        trial.masks.update(trial.method.compute_masks(trial.model, trial.masks, info))
        if plan.rewind_to is not None:
            weights = trial.dense.checkpoint.weights_at(plan.rewind_to)
            trial.load_weights(weights)
            apply_control(trial, plan.control, previous, weights, salt=index)
        trial.retrain(plan.retrain_epochs)
        trial.report(index)


def _at_initialisation(plan: AtInitialisation, trial: Trial) -> None:
    init = trial.dense.checkpoint.init
    trial.load_weights(init)
    batch = trial.scoring_batch(plan.scoring_examples)
    info = RoundInfo(1, 1, plan.target, seed=trial.seed)
    trial.method.at_init(trial.model, trial.masks, batch, info)
    previous = trial.masks.state()
    trial.masks.update(trial.method.compute_masks(trial.model, trial.masks, info))
    apply_control(trial, plan.control, previous, init, salt=1)
    trial.retrain(None)
    trial.report(1)


def _train_then_prune(plan: TrainThenPrune, trial: Trial) -> None:
    if plan.from_init:
        trial.load_weights(trial.dense.checkpoint.init)
    trial.retrain(plan.epochs)
    info = RoundInfo(1, 1, None, seed=trial.seed)
    trial.masks.update(trial.method.compute_masks(trial.model, trial.masks, info))
    trial.report(1)


def _prune_during_training(plan: PruneDuringTraining, trial: Trial) -> None:
    floor = trial.dense.checkpoint.metrics["val_acc"] - plan.tolerance
    # state_dict holds the masks as buffers, so one snapshot restores weights and masks.
    accepted = _snapshot(trial.model)
    reported, misses = False, 0
    for index in range(1, plan.rounds + 1):
        info = RoundInfo(index, plan.rounds, None, seed=trial.seed)
        trial.method.begin_round(info)
        trial.retrain(plan.epochs_per_round)
        trial.masks.update(trial.method.compute_masks(trial.model, trial.masks, info))
        # Through the module: a test scripts the accuracies by patching `loop.evaluate`.
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
            if misses >= plan.patience:
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


# The runner of each plan kind: a new kind of plan adds its runner here.
RUNNERS: dict[type[Plan], Callable[[Any, Trial], None]] = {
    NoPruning: _no_pruning,
    IterativePruning: _iterative,
    AtInitialisation: _at_initialisation,
    TrainThenPrune: _train_then_prune,
    PruneDuringTraining: _prune_during_training,
}


def apply_control(
    trial: Trial,
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
    seed = trial.seed * 7919 + salt
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


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}
