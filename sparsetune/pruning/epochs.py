"""A trial's training epochs, known from its plan before it runs: what `--budget-epochs` counts.

An epoch is one pass over the trial's training split (with `--subset N`, over those N examples);
the shared dense stage is not counted: it is trained once per sweep, not per trial. Each plan kind
says how many epochs each of its rounds trains (`EPOCHS`, looked up by the plan's type like the
driver's runners), from the plan and the method's retraining recipe:

- `NoPruning` (dense): no round trains; 0.
- `IterativePruning` (magnitude, lottery): `rounds` x `retrain_epochs`, or x the retraining
  recipe's epochs where the plan leaves them to it (lottery's `train_epochs` unset).
- `AtInitialisation` (SNIP, GraSP, random): one round of the retraining recipe's epochs (the dense
  recipe's for these methods).
- `TrainThenPrune` (L0): one round of the plan's `epochs`, else the recipe's.
- `PruneDuringTraining` (sensitivity): at most `rounds` x `epochs_per_round`; a run that stops
  early (its patience) trains fewer, and reports what it trained (`epochs_trained`).

The trial counts the epochs it really trains as it goes (`TrialContext.retrain`), and each
reported round carries the total so far; this module is the plan's side of the same count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sparsetune.config import TrialConfig
from sparsetune.pruning.plans import (
    AtInitialisation,
    IterativePruning,
    NoPruning,
    Plan,
    PruneDuringTraining,
    TrainThenPrune,
)


def _or(epochs: int | None, recipe_epochs: int) -> int:
    return recipe_epochs if epochs is None else epochs


# The epochs of each round of a plan kind, given the method's retraining recipe's epochs.
EPOCHS: dict[type[Plan], Callable[[Any, int], tuple[int, ...]]] = {
    NoPruning: lambda plan, recipe: (),
    IterativePruning: lambda plan, recipe: (_or(plan.retrain_epochs, recipe),) * plan.rounds,
    AtInitialisation: lambda plan, recipe: (recipe,),
    TrainThenPrune: lambda plan, recipe: (_or(plan.epochs, recipe),),
    PruneDuringTraining: lambda plan, recipe: (plan.epochs_per_round,) * plan.rounds,
}


def round_epochs(plan: Plan, recipe_epochs: int) -> tuple[int, ...]:
    """The training epochs of each of `plan`'s rounds (round 1 first; empty when none trains),
    where the method's retraining recipe runs `recipe_epochs` epochs."""
    for kind in type(plan).__mro__:  # a plan subclass counts as the kind it extends
        if kind in EPOCHS:
            return EPOCHS[kind](plan, recipe_epochs)
    known = ", ".join(kind.__name__ for kind in EPOCHS)
    raise TypeError(
        f"no epoch count for the plan {type(plan).__name__}; the plan kinds are {known}"
    )


def planned_round_epochs(config: TrialConfig) -> tuple[int, ...]:
    """The training epochs of each round `config`'s trial plans, the dense stage excluded."""
    from sparsetune.pruning import METHODS

    method = METHODS[config.method](config.method_config())
    return round_epochs(method.plan(), method.retrain_recipe(config.train).epochs)


def planned_epochs(config: TrialConfig) -> int:
    """The training epochs `config`'s trial plans in all (at most, for a plan that may stop early),
    the dense stage excluded: what it commits of a `--budget-epochs` budget when it starts."""
    return sum(planned_round_epochs(config))
