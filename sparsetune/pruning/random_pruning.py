"""Random pruning at initialisation: the control SNIP, GraSP and lottery tickets must beat
(papers.md section 7; Frankle et al., "Pruning Neural Networks at Initialization: Why Are We
Missing the Mark?", ICLR 2021, use it the same way).

At theta_0 of the shared dense run, remove weights uniformly at random, then train the sparse
network with the full dense recipe (the `AtInitialisation` plan, as SNIP and GraSP):
- `layerwise`: every layer keeps exactly round((1 - s) * n_l) of its n_l weights;
- `global`: exactly round((1 - s) * sum_l n_l) weights survive over all layers together, each
  weight equally likely, so a layer keeps (1 - s) of its weights only in expectation.
Both are implemented as i.i.d. uniform scores followed by the shared layer-wise or global top-k.

The draws come from a generator seeded by the trial (`init_scoring.trial_generator`), so the same
seed gives the same mask. The `shuffle` and `reinit` controls are offered for symmetry with the
other methods; for a random mask they change nothing in distribution (`shuffle` draws another
random mask with the same per-layer counts, `reinit` another theta_0).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from sparsetune.pruning.init_scoring import AtInitConfig, AtInitMethod, trial_generator
from sparsetune.pruning.masking import MaskSet
from sparsetune.pruning.plans import RoundInfo
from sparsetune.pruning.scoring import exclude_pruned, global_top, layerwise_top

RANDOM_SALT = 3


class RandomPruningConfig(AtInitConfig):
    distribution: Literal["layerwise", "global"] = "layerwise"


class RandomPruning(AtInitMethod):
    """Uniformly random masks at initialisation, at one ratio per layer or one ratio overall."""

    Config = RandomPruningConfig
    key_params = ("sparsity", "distribution", "control")
    config: RandomPruningConfig

    # No data is scored: `scoring_examples` stays 0 and `at_init` is the base no-op.

    @torch.no_grad()
    def compute_masks(
        self, model: nn.Module, masks: MaskSet, round_info: RoundInfo
    ) -> dict[str, torch.Tensor]:
        target = round_info.target_sparsity
        if target is None:
            target = self.config.sparsity
        # Drawn on the CPU, in the MaskSet's order: the same mask whatever the device.
        generator = trial_generator(round_info.seed, RANDOM_SALT)
        scores = {
            name: torch.rand(mask.shape, generator=generator).to(mask.device)
            for name, mask in masks.items()
        }
        scores = exclude_pruned(scores, masks)
        if self.config.distribution == "global":
            return global_top(scores, target)
        return layerwise_top(scores, target)
