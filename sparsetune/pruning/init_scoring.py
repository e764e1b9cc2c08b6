"""Shared pieces of the pruning-at-initialisation methods (SNIP, GraSP, random).

Each of them follows the `AtInitialisation` plan: the model is reset to theta_0 of the
shared dense run, the method scores once (`at_init`), one global or layer-wise top-k gives the
mask, and the sparse network trains with the full dense recipe. What they share lives here: the
knobs every one of them has (target sparsity, the Frankle et al. 2021 control), the class-balanced
batch of GraSP's official code, the gradients with respect to the masked weights, and a seeded
generator for the random draws.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from pydantic import Field
from torch import nn

from sparsetune.pruning.base import MethodConfig, PruningMethod
from sparsetune.pruning.masking import MaskSet
from sparsetune.pruning.plans import AtInitialisation, Control, RoundInfo
from sparsetune.pruning.scoring import exclude_pruned, global_top


class AtInitConfig(MethodConfig):
    """The knobs every pruning-at-initialisation method has."""

    sparsity: float = Field(0.9, gt=0, lt=1, description="fraction of prunable weights removed")
    # Frankle et al. 2021 ("Missing the Mark"): `shuffle` permutes the found mask within each
    # layer, `reinit` draws new initial values for the kept weights (driver.apply_control).
    control: Control = "none"


def scored_weights(masks: MaskSet) -> list[torch.Tensor]:
    """The stored weights under the masks, in the MaskSet's order: what gradients are taken of.

    With w_eff = w * m the chain rule gives dL/dw = m * dL/dw_eff, so w * dL/dw equals
    w_eff * dL/dw_eff for a binary mask: scoring through the stored weight scores the
    effective weight, and already-pruned positions score exactly zero."""
    return [masks.stored_weight(name) for name in masks]


def loss_gradients(
    loss: torch.Tensor, weights: Sequence[torch.Tensor], create_graph: bool = False
) -> tuple[torch.Tensor, ...]:
    """dL/dw for each weight, without touching `.grad` (scoring leaves no trace in the model)."""
    return torch.autograd.grad(loss, list(weights), create_graph=create_graph)


def class_balanced(
    inputs: torch.Tensor, targets: torch.Tensor, per_class: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `per_class` examples of each class in the order given, grouped by class in
    ascending label order, as GraSP's `GraSP_fetch_data` builds its batch from a shuffled loader.

    A class with fewer than `per_class` examples in the input contributes all it has (the
    official loop would keep drawing from the loader instead)."""
    chosen = []
    for label in torch.unique(targets).tolist():
        positions = torch.nonzero(targets == label).flatten()
        chosen.append(positions[:per_class])
    index = torch.cat(chosen) if chosen else targets.new_zeros(0)
    return inputs[index], targets[index]


def trial_generator(seed: int, salt: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator for a method's random draws, seeded by the trial's `seed` (`RoundInfo.seed`)
    and a `salt` per kind of draw; a generator of its own keeps the draws reproducible without
    consuming the global stream the rest of the trial uses."""
    return torch.Generator(device=device).manual_seed(seed * 7919 + salt)


@contextmanager
def model_mode(model: nn.Module, training: bool) -> Iterator[None]:
    """The model in train (`True`) or eval mode for the block, then back in the mode it had."""
    was_training = model.training
    model.train(training)
    try:
        yield
    finally:
        model.train(was_training)


class AtInitMethod(PruningMethod):
    """A criterion that scores every prunable weight once at initialisation (`at_init`) and keeps
    the global top-k of `keep_scores` (higher = keep). Subclasses set `scores` in `at_init`."""

    config: AtInitConfig

    def __init__(self, config: AtInitConfig):
        super().__init__(config)
        # The normalised scores of the last `at_init`, by parameter name; None before it ran.
        self.scores: dict[str, torch.Tensor] | None = None

    def scoring_examples(self) -> int:
        """How many training examples the plan hands to `at_init`."""
        return 0

    def plan(self) -> AtInitialisation:
        return AtInitialisation(self.config.sparsity, self.scoring_examples(), self.config.control)

    def keep_scores(self, scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The scores in the "higher is kept" sense of `scoring.global_top`."""
        return scores

    @torch.no_grad()
    def compute_masks(
        self, model: nn.Module, masks: MaskSet, round_info: RoundInfo
    ) -> dict[str, torch.Tensor]:
        if self.scores is None:
            raise RuntimeError(
                f"{type(self).__name__}.compute_masks ran before at_init: it prunes on the scores "
                "at_init computes (the AtInitialisation plan calls both, in that order)"
            )
        target = round_info.target_sparsity
        if target is None:  # the plan always passes config.sparsity; a bare call may not
            target = self.config.sparsity
        return global_top(exclude_pruned(self.keep_scores(self.scores), masks), target)
