"""Shared vocabulary for turning scores into masks.

Higher score = more worth keeping. Positions already pruned score -inf, so no rule here can
revive them (the never-revive rule lives in one place, not in every method).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from sparsetune.pruning.masking import MaskSet


def exclude_pruned(scores: Mapping[str, torch.Tensor], masks: MaskSet) -> dict[str, torch.Tensor]:
    """Scores with already-pruned positions set to -inf."""
    return {
        name: torch.where(masks[name] != 0, score.float(), torch.tensor(-math.inf))
        for name, score in scores.items()
    }


def keep_above(scores: Mapping[str, torch.Tensor], thresholds: Mapping[str, float]) -> dict:
    """Keep the positions whose score is at least the layer's threshold."""
    return {name: (score >= thresholds[name]) for name, score in scores.items()}


def _keep_top(flat: torch.Tensor, keep: int) -> torch.Tensor:
    mask = torch.zeros_like(flat, dtype=torch.bool)
    if keep > 0:
        mask[torch.topk(flat, keep, sorted=False).indices] = True
    return mask & torch.isfinite(flat)


def layerwise_top(scores: Mapping[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """In each layer keep the round((1 - sparsity) * size) highest scores."""
    return {
        name: _keep_top(score.flatten(), round((1 - sparsity) * score.numel())).view_as(score)
        for name, score in scores.items()
    }


def global_top(scores: Mapping[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """Keep the round((1 - sparsity) * total) highest scores across all layers together."""
    names = list(scores)
    flat = torch.cat([scores[name].flatten() for name in names])
    keep = _keep_top(flat, round((1 - sparsity) * flat.numel()))
    out, start = {}, 0
    for name in names:
        size = scores[name].numel()
        out[name] = keep[start : start + size].view_as(scores[name])
        start += size
    return out


def sparsity_schedule(final_sparsity: float, rounds: int) -> list[float]:
    """Per-round targets that remove the same fraction of survivors each round:
    s_r = 1 - (1 - s)^(r / R), as iterative magnitude pruning does (Frankle & Carbin 2019)."""
    return [1 - (1 - final_sparsity) ** (r / rounds) for r in range(1, rounds + 1)]
