"""Magnitude pruning with retraining (Han et al., "Learning both Weights and Connections for
Efficient Neural Networks", NeurIPS 2015).

Train dense; remove each connection whose |w| falls below a threshold; retrain the survivors at a
lowered learning rate with L2 weight decay; repeat for several rounds. Two criteria:
- `std` (the paper's): threshold of a layer = C x std of the layer's weights, with C (the
  "quality parameter") separate for conv and fc layers, and per layer through `layer_c` (the
  paper's per-layer results, e.g. LeNet-300-100's output layer at 26% against fc1's 8%, need a
  C of their own);
- `layerwise` / `global`: a sparsity target reached over the rounds, s_r = 1 - (1 - s)^(r/R),
  per layer (each layer's own through `layer_sparsity`) or with one threshold across layers.

Deviations from the paper, on purpose:
- The std is that of the whole layer as it stands, pruned zeros included (Distiller's reading;
  the paper leaves the iterative threshold unspecified). Repeating a C then removes only the
  weights that retraining shrank below it, so rounds refine rather than collapse a layer; the
  survivors' std instead grows once the small weights are gone and wipes a layer by round 2.
- Retraining starts at dense lr x `retrain_lr_factor` (paper: about 0.1), constant or decayed
  to 0 (`retrain_schedule: cosine`, what the LeNet recipes use from the full dense rate: it
  measured lower error on MNIST, docs/reproduction.md). The LeNets here have no dropout, so the
  paper's dropout rescaling does not arise.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
from pydantic import Field
from torch import nn

from sparsetune.config import TrainConfig
from sparsetune.pruning.base import MethodConfig, PruningMethod
from sparsetune.pruning.masking import MaskSet, check_layer_names
from sparsetune.pruning.plans import IterativePruning, RoundInfo
from sparsetune.pruning.scoring import (
    exclude_pruned,
    global_top,
    keep_above,
    layerwise_top,
    sparsity_schedule,
)


class MagnitudeConfig(MethodConfig):
    criterion: Literal["std", "layerwise", "global"] = "std"
    c_conv: float = Field(1.0, gt=0, le=10, description="std criterion: C for conv layers")
    c_fc: float = Field(1.0, gt=0, le=10, description="std criterion: C for fc layers")
    layer_c: dict[str, Annotated[float, Field(gt=0, le=10)]] = Field(
        default_factory=dict,
        description='std criterion: C per layer by module name, e.g. {"fc3": 1.0}; overrides '
        "c_conv and c_fc",
    )
    sparsity: float = Field(0.9, gt=0, lt=1, description="layerwise/global: final sparsity")
    layer_sparsity: dict[str, Annotated[float, Field(ge=0, lt=1)]] = Field(
        default_factory=dict,
        description="layerwise criterion: final sparsity per layer by module name, e.g. "
        '{"fc3": 0.74}; overrides sparsity',
    )
    rounds: int = Field(3, ge=1, le=30)
    retrain_epochs: int = Field(2, ge=0, le=500)
    retrain_lr_factor: float = Field(0.1, gt=0, le=1)
    retrain_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="learning rate within each retraining: constant, or decayed to 0"
    )
    weight_decay: float = Field(5e-4, ge=0, le=1, description="L2 during retraining")
    prune_output_layer: bool = True


class MagnitudePruning(PruningMethod):
    Config = MagnitudeConfig
    key_params = ("criterion", "c_conv", "c_fc", "sparsity", "rounds", "retrain_epochs")
    config: MagnitudeConfig

    def plan(self) -> IterativePruning:
        config = self.config
        if config.criterion == "std":
            targets: tuple[float | None, ...] = (None,) * config.rounds
        else:
            targets = tuple(sparsity_schedule(config.sparsity, config.rounds))
        return IterativePruning(config.rounds, targets, config.retrain_epochs)

    def round_equivalent(self, round_index: int) -> dict[str, Any] | None:
        """Round r of R is the last round of the same config with `rounds: r` (the std
        threshold is the same each round; retraining's schedule restarts each round), and for a
        sparsity target with `sparsity: s_r` too: 1 - (1 - s_r)^(k/r) = 1 - (1 - s)^(k/R)."""
        config = self.config
        if config.criterion == "std":
            return {"rounds": round_index}
        if config.layer_sparsity:  # per-layer targets: no single `sparsity` says it
            return None
        return {
            "rounds": round_index,
            "sparsity": sparsity_schedule(config.sparsity, config.rounds)[round_index - 1],
        }

    def check_layers(self, weight_names: list[str]) -> None:
        check_layer_names("layer_c", self.config.layer_c, weight_names)
        check_layer_names("layer_sparsity", self.config.layer_sparsity, weight_names)

    def retrain_recipe(self, dense: TrainConfig) -> TrainConfig:
        return dense.model_copy(
            update={
                "lr": dense.lr * self.config.retrain_lr_factor,
                "weight_decay": self.config.weight_decay,
                "schedule": self.config.retrain_schedule,
            }
        )

    @torch.no_grad()
    def compute_masks(
        self, model: nn.Module, masks: MaskSet, round_info: RoundInfo
    ) -> dict[str, torch.Tensor]:
        names = [
            name for name in masks if self.config.prune_output_layer or not _is_output(model, name)
        ]
        magnitudes = {name: masks.effective_weight(name).abs() for name in names}
        if round_info.target_sparsity is None:
            return keep_above(magnitudes, self._std_thresholds(model, masks, names))
        scores = exclude_pruned(magnitudes, masks)
        if self.config.criterion == "global":
            return global_top(scores, round_info.target_sparsity)
        masks_out = {}
        for name, score in scores.items():
            target = round_info.target_sparsity
            final = self.config.layer_sparsity.get(name.rpartition(".")[0])
            if final is not None:  # this layer's own final target, on the same schedule
                target = sparsity_schedule(final, round_info.total)[round_info.index - 1]
            masks_out |= layerwise_top({name: score}, target)
        return masks_out

    def _std_thresholds(self, model: nn.Module, masks: MaskSet, names: list[str]) -> dict:
        thresholds = {}
        for name in names:
            weight = masks.effective_weight(name)
            default = self.config.c_conv if weight.dim() > 2 else self.config.c_fc
            quality = self.config.layer_c.get(name.rpartition(".")[0], default)
            std = weight.std() if weight.numel() > 1 else torch.tensor(0.0)
            thresholds[name] = float(quality * std)
        return thresholds


def _is_output(model: nn.Module, name: str) -> bool:
    output_layer = getattr(model, "output_layer", None)
    return output_layer is not None and name == f"{output_layer}.weight"
