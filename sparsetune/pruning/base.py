"""The interface every pruning method implements.

A trial calls a method in this order:
1. `attach(model, masks)` once, after masks are attached and before any optimiser is built
   (a method that adds gates or buffers does it here);
2. its `schedule()` drives the rounds (see `sparsetune.pruning.schedule`): it calls
   `at_init` (pruning at initialisation), `begin_round` before a during-training round,
   `compute_masks` at each pruning step, and trains;
3. during every training step the loop calls `penalty` (added to the loss), `after_backward`
   (gradient shaping) and `on_step_end`.
Only `compute_masks` is required. A method returns numbers and masks; it never logs or reports:
the search layer does that.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

if TYPE_CHECKING:
    from sparsetune.config import TrainConfig
    from sparsetune.pruning.masking import MaskSet
    from sparsetune.pruning.schedule import RoundInfo, Schedule


class MethodConfig(BaseModel):
    """Base of each method's knobs: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainingHooks:
    """The per-step hooks of the training loop; no-ops unless a method overrides them."""

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        """A term added to the loss at each step (e.g. L0's expected gate count)."""
        return None

    def after_backward(self, model: nn.Module) -> None:
        """Called after `loss.backward()`, before the optimiser step (gradient shaping)."""

    def on_step_end(self, model: nn.Module) -> None:
        """Called after each optimiser step (e.g. clamping gate parameters)."""


class PruningMethod(TrainingHooks, ABC):
    Config: ClassVar[type[MethodConfig]]
    #: key hyperparameters shown in the Pareto table, in order
    key_params: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: MethodConfig):
        self.config = config

    @abstractmethod
    def schedule(self) -> Schedule:
        """The schedule that drives this method's rounds."""

    def check_layers(self, weight_names: list[str]) -> None:
        """One-line ValueError if a per-layer knob names no prunable weight of this model; called
        before the dense stage, so that a typo costs no training."""

    def attach(self, model: nn.Module, masks: MaskSet) -> None:
        """Called once before any optimiser is built."""

    def begin_round(self, round_info: RoundInfo) -> None:
        """Called by during-training schedules before each round's training (e.g. a rate that
        anneals over the rounds)."""

    def at_init(self, model: nn.Module, masks: MaskSet, batch: tuple[torch.Tensor, ...]) -> None:
        """Called by at-initialisation schedules before training (SNIP, GraSP)."""

    def retrain_recipe(self, dense: TrainConfig) -> TrainConfig:
        """The recipe for training after a pruning step; by default the dense one."""
        return dense

    @abstractmethod
    def compute_masks(
        self, model: nn.Module, masks: MaskSet, round_info: RoundInfo
    ) -> dict[str, torch.Tensor]:
        """New masks (any subset of `masks`' names); pruned weights must stay pruned."""
