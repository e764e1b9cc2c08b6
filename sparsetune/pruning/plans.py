"""Plans: what happens in each round of a trial, as data.

A method owns the criterion (`PruningMethod.compute_masks`) and names the plan its rounds follow
(`PruningMethod.plan()`); the trial driver (`sparsetune.trial.driver`) runs every kind of plan
the same way, whatever the method. So iterative pruning, with or without rewinding, wraps any
criterion, and nothing branches on a method's name. Each plan's docstring says, step by step,
what the driver does in its rounds and which of the method's hooks it calls; a round is
"reported" when its model is evaluated and becomes a candidate for the Pareto front.

Resuming: a trial restarted after its worker died gets back the state of its last reported round.
Before running the plan, the trial asks `finished_after(round)` (nothing left to do: the trial
ends) and `continues_after(round)` (the plan then runs from the round after it). A plan that says
no to both runs again from the start; its rounds come out the same under the same seeds, and the
search layer ignores rounds it has already recorded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Control = Literal["none", "shuffle", "reinit"]
RateSchedule = Literal["constant", "cosine"]


@dataclass(frozen=True)
class RoundInfo:
    """What a method is told of the round it works in (`compute_masks`, `at_init`,
    `begin_round`)."""

    index: int  # 1-based
    total: int
    target_sparsity: float | None = None  # None: the criterion sets the sparsity itself
    # The trial's seed: a method's random draws start from it (`init_scoring.trial_generator`),
    # never from torch's global generator. The driver always passes it.
    seed: int = 0


@dataclass(frozen=True)
class Plan:
    """Base of the plan kinds below: the resume predicates, both False (run from the start)."""

    def finished_after(self, round_index: int) -> bool:
        """True if a trial that reported `round_index` has nothing left to do."""
        return False

    def continues_after(self, round_index: int) -> bool:
        """True if the plan can continue from the model and masks as they were after reporting
        `round_index`."""
        return False


@dataclass(frozen=True)
class NoPruning(Plan):
    """The dense baseline: the trained dense model is reported as round 0; no hook is called."""

    def finished_after(self, round_index: int) -> bool:
        return True


@dataclass(frozen=True)
class IterativePruning(Plan):
    """Start from the trained dense model; each round prunes, then trains the survivors.

    Without rewinding (Han et al. 2015) the survivors keep their trained values and retrain for
    `retrain_epochs` at the method's retraining recipe. With `rewind_to` = j (Frankle & Carbin
    2019; Frankle et al. 2020) the survivors are reset to theta_j of the shared dense run before
    training again (`retrain_epochs` None: the full recipe). `targets` gives each round's sparsity,
    or None per round when the criterion decides (Han's C x std threshold). `control` replaces the
    found mask or weights with the paper's controls before training (see the driver's
    `apply_control`).

    Round i of `rounds`: `compute_masks(model, masks, RoundInfo(i, rounds, targets[i - 1]))`
    narrows the masks; with `rewind_to`, the survivors go back to theta_j and `control` applies;
    the masked model trains (`retrain_recipe`, `retrain_epochs`), and round i is reported.
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


@dataclass(frozen=True)
class AtInitialisation(Plan):
    """Pruning at initialisation (SNIP, GraSP, random): reset to theta_0 of the shared dense run,
    let the method score on a batch, prune once to `target`, then train the sparse network with
    the full dense recipe and report it as round 1.

    The one round: `at_init(model, masks, batch, info)` with `scoring_examples` training examples
    drawn under the trial's seed, then `compute_masks(model, masks, info)` with
    info = RoundInfo(1, 1, target); `control` applies; the masked model trains and is reported.
    """

    target: float
    scoring_examples: int
    control: Control = "none"

    def finished_after(self, round_index: int) -> bool:
        return round_index >= 1


@dataclass(frozen=True)
class TrainThenPrune(Plan):
    """Methods that learn their masks while training (L0's hard-concrete gates): start from
    theta_0 of the shared dense run (`from_init`; those papers train from scratch) or keep the
    trained dense weights, train once with the method's recipe and hooks (`epochs` None: the
    recipe's length), then let the method turn what it learnt into masks
    (`compute_masks(model, masks, RoundInfo(1, 1, None))`) and report round 1."""

    epochs: int | None = None
    from_init: bool = True

    def finished_after(self, round_index: int) -> bool:
        return round_index >= 1


@dataclass(frozen=True)
class PruneDuringTraining(Plan):
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

    Round i: `begin_round(RoundInfo(i, rounds))`, training, then
    `compute_masks(model, masks, RoundInfo(i, rounds))` and the validation check.
    """

    rounds: int
    epochs_per_round: int
    tolerance: float
    patience: int = 1

    # No resume predicates: which round comes last depends on the rounds that were not reported,
    # and the state of those is not kept, so a restarted trial runs again from the start.


def rate_factor(schedule: RateSchedule, index: int, total: int) -> float:
    """The factor on a method's rate in round `index` (1-based) of `total`: 1 throughout, or a
    cosine from 1 in the first round towards 0 (0.5 (1 + cos(pi (index - 1) / total))), held for
    the round: the loop's schedulers step per epoch, and a round is often one epoch."""
    if schedule == "constant":
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * (index - 1) / total))
