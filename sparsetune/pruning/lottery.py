"""Lottery tickets by iterative magnitude pruning with rewinding (Frankle & Carbin, "The Lottery
Ticket Hypothesis", ICLR 2019; Frankle et al., "Linear Mode Connectivity and the Lottery Ticket
Hypothesis", ICML 2020).

1. theta_0 is initialised and trained for j iterations to theta_j (j = 0: theta_0 itself);
2. the network is trained to the end and p of the surviving weights are pruned by magnitude,
   per layer or globally (the output layer at half the rate in the paper, or not at all as in
   open_lth);
3. the survivors are reset to theta_j and step 2 repeats. After R rounds a layer pruned at rate p
   keeps (1 - p)^R of its weights. The ticket is (theta_j, mask).
theta_0, theta_j and the first trained network all come from the shared dense run (the dense
cache keeps theta_j at the iterations in REWIND_ITERATIONS), so no trial trains the dense model
again. The paper's controls run with `control`: `reinit` (the same mask, fresh random weights)
and `shuffle` (a random mask with each layer's sparsity).

Deviations, on purpose:
- j is one of the dense cache's rewind points (0, 100, 200, 500, 1000, 2000 iterations), so that
  every trial shares one dense training; the paper sweeps j more finely.
- After rewinding to j > 0 each round trains the full dense recipe from theta_j again, learning
  rate schedule restarted; Frankle et al. 2020 resume at iteration j and train T - j iterations.
- The magnitude scored is that of the weights at the end of the round's training (the paper's),
  the output layer's rate is p / 2 (`output_rate: half`), p, or 0.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from sparsetune.pruning.base import MethodConfig, PruningMethod
from sparsetune.pruning.masking import MaskSet
from sparsetune.pruning.plans import Control, IterativePruning, RoundInfo
from sparsetune.pruning.scoring import exclude_pruned, global_top, layerwise_top
from sparsetune.train.dense_cache import REWIND_ITERATIONS

# j = 0 (theta_0) or one of the dense run's rewind points: validated as a choice of those.
RewindIteration = Literal[(0, *REWIND_ITERATIONS)]  # type: ignore[valid-type]


class LotteryConfig(MethodConfig):
    prune_fraction: float = Field(0.2, gt=0, lt=1, description="p: share of survivors cut a round")
    rounds: int = Field(5, ge=1, le=40)
    rewind_iteration: RewindIteration = 0
    criterion: Literal["layerwise", "global"] = "layerwise"
    output_rate: Literal["half", "same", "none"] = "half"
    train_epochs: int | None = Field(
        None, ge=1, le=500, description="training per round; default the dense recipe's length"
    )
    control: Control = "none"


class LotteryTicket(PruningMethod):
    Config = LotteryConfig
    key_params = (
        "prune_fraction",
        "rounds",
        "train_epochs",
        "rewind_iteration",
        "criterion",
        "control",
    )
    config: LotteryConfig

    def plan(self) -> IterativePruning:
        config = self.config
        return IterativePruning(
            rounds=config.rounds,
            targets=(None,) * config.rounds,  # the rates are per layer group, set below
            retrain_epochs=config.train_epochs,
            rewind_to=config.rewind_iteration,
            control=config.control,
        )

    def round_equivalent(self, round_index: int) -> dict[str, Any] | None:
        """Round r of R is the last round of the same config with `rounds: r`: a round's rate
        depends on its index only, rewinding reads the same theta_j, controls are seeded by
        their round."""
        return {"rounds": round_index}

    def _sparsity_after(self, round_index: int, rate: float) -> float:
        return 1 - (1 - rate) ** round_index

    @torch.no_grad()
    def compute_masks(
        self, model: nn.Module, masks: MaskSet, round_info: RoundInfo
    ) -> dict[str, torch.Tensor]:
        output = f"{getattr(model, 'output_layer', '')}.weight"
        scores = exclude_pruned({name: masks.effective_weight(name).abs() for name in masks}, masks)
        hidden = {name: score for name, score in scores.items() if name != output}
        sparsity = self._sparsity_after(round_info.index, self.config.prune_fraction)
        if self.config.criterion == "global":
            new = global_top(hidden, sparsity)
        else:
            new = layerwise_top(hidden, sparsity)
        output_rate = {"half": self.config.prune_fraction / 2, "same": self.config.prune_fraction}
        if output in scores and self.config.output_rate in output_rate:
            rate = output_rate[self.config.output_rate]
            new |= layerwise_top(
                {output: scores[output]}, self._sparsity_after(round_info.index, rate)
            )
        return new
