"""The dense baseline: no pruning. The reference every ratio and error is read against."""

from __future__ import annotations

import torch
from torch import nn

from sparsetune.pruning.base import MethodConfig, PruningMethod
from sparsetune.pruning.masking import MaskSet
from sparsetune.pruning.plans import NoPruning, RoundInfo


class DenseConfig(MethodConfig):
    pass


class Dense(PruningMethod):
    Config = DenseConfig

    def plan(self) -> NoPruning:
        return NoPruning()

    def compute_masks(
        self, model: nn.Module, masks: MaskSet, round_info: RoundInfo
    ) -> dict[str, torch.Tensor]:
        return {}
