"""The training loop's hooks protocol: what `fit` calls at fixed points of every step.

The loop knows nothing else of what it trains: a pruning method, the dense stage's rewind
snapshots or a test's recorder all plug in here. Every hook is a no-op until overridden.
"""

from __future__ import annotations

import torch
from torch import nn


class TrainingHooks:
    """Per-step hooks of `sparsetune.train.loop.fit`, in the order it calls them each step:
    forward, `penalty`, backward, `after_backward`, optimiser step, `on_step_end`."""

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        """Called after the forward pass: a term added to the step's loss before backward
        (e.g. L0's expected gate count); None adds nothing."""
        return None

    def after_backward(self, model: nn.Module) -> None:
        """Called after `loss.backward()`, before the optimiser step (gradient shaping)."""

    def on_step_end(self, model: nn.Module) -> None:
        """Called after each optimiser step (e.g. clamping gate parameters, taking snapshots)."""
