"""The interface every pruning method implements.

A method says WHAT happens to a model: which plan its rounds follow (`plan()`, data from
`sparsetune.pruning.plans`) and which weights each pruning step keeps (`compute_masks`). The trial
driver runs the plan and calls the hooks below, in this order:
1. `check_layers(weight_names)` before the dense stage, so that a typo costs no training;
2. `bind_data(train_size)` once (a method whose loss is per training example, like L0's,
   keeps N here);
3. `attach(model, masks)` once, after masks are attached and before any optimiser is built
   (a method that adds gates or buffers does it here);
4. the rounds of its plan (each plan kind's docstring lists its steps): `at_init` (pruning at
   initialisation), `begin_round` before a during-training round, `compute_masks` at each pruning
   step, and training at the recipe `retrain_recipe(dense recipe)` returns;
5. during every training step the loop calls `penalty(model)` after the forward pass (a tensor
   added to the loss, or None), `after_backward(model)` before the optimiser step (gradient
   shaping) and `on_step_end(model)` after it (inherited no-ops of `train.hooks.TrainingHooks`).
Only `plan` and `compute_masks` are required. Random draws start from `RoundInfo.seed`, the
trial's seed, never from torch's global generator. A method returns numbers and masks; it never
logs or reports: the search layer does that.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from sparsetune.train.hooks import TrainingHooks

if TYPE_CHECKING:
    from sparsetune.config import TrainConfig
    from sparsetune.pruning.masking import MaskSet
    from sparsetune.pruning.plans import Plan, RoundInfo


# A batch of examples as the data holds them: (inputs, targets).
Batch = tuple[torch.Tensor, ...]


class MethodConfig(BaseModel):
    """Base of each method's knobs: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PruningMethod(TrainingHooks, ABC):
    Config: ClassVar[type[MethodConfig]]
    #: key hyperparameters shown in the Pareto table, in order
    key_params: ClassVar[tuple[str, ...]] = ()
    #: a method from another package: its search-space fragment, a YAML path relative to its
    #: module (built-in methods keep theirs in search_spaces/methods/<name>.yaml instead)
    search_space: ClassVar[str | None] = None
    #: knobs that are a rate per training step, by the `*epochs` knob whose steps they act
    #: over: a run shortened to fewer epochs (`--epochs`, `MethodRecipe.scaled_to`) raises
    #: them by the same factor, so the method still regularises as much in all (L0's gate
    #: rate, sensitivity's decay per step)
    per_step_knobs: ClassVar[dict[str, str]] = {}

    def __init__(self, config: MethodConfig):
        self.config = config

    @abstractmethod
    def plan(self) -> Plan:
        """The plan this method's rounds follow (`sparsetune.pruning.plans`); the driver runs it."""

    def round_equivalent(self, round_index: int) -> dict[str, Any] | None:
        """The knob values under which this method's config would end at round `round_index`
        with exactly the result it reports there (its schedule is prefix-consistent: nothing
        before a round depends on how many rounds follow), as overrides of this config; None
        where no config does. The search tells Optuna each such round as a trial of its own
        (`search.rounds`), so every round teaches the sampler."""
        return None

    def check_layers(self, weight_names: list[str]) -> None:
        """One-line ValueError if a per-layer knob names no prunable weight of this model; called
        before the dense stage, so that a typo costs no training."""

    def length_note(self, train_size: int) -> str | None:
        """One plain line when this configuration cannot show its method working in a run on
        `train_size` training examples (too few steps for its rates: `sparsetune prune` says it
        before training), else None."""
        return None

    def bind_data(self, train_size: int) -> None:
        """Called once per trial, before `attach`, with the number of training examples (N)."""

    def attach(self, model: nn.Module, masks: MaskSet) -> None:
        """Called once before any optimiser is built."""

    def begin_round(self, round_info: RoundInfo) -> None:
        """Called by the `PruneDuringTraining` plan before each round's training (e.g. a rate
        that anneals over the rounds)."""

    def at_init(self, model: nn.Module, masks: MaskSet, batch: Batch, info: RoundInfo) -> None:
        """Called by the `AtInitialisation` plan with the scoring batch, before `compute_masks`
        of the same round (`info`); SNIP and GraSP score here."""

    def retrain_recipe(self, dense: TrainConfig) -> TrainConfig:
        """The recipe for training after a pruning step; by default the dense one."""
        return dense

    @abstractmethod
    def compute_masks(
        self, model: nn.Module, masks: MaskSet, round_info: RoundInfo
    ) -> dict[str, torch.Tensor]:
        """New masks (any subset of `masks`' names); pruned weights must stay pruned."""
