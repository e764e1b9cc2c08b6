"""The training loop: short enough to read in one sitting.

It knows nothing of pruning methods beyond its three per-step hooks (`train.hooks`), so every
method trains through the same code. Deterministic on CPU under a seed: the batch order comes from
the loader's own generator, and the model's initial weights from the caller's seed. The data is
held (`TensorSet`) or streamed (`StreamSet`): both give batches through `batches` and `in_order`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sparsetune.config import TrainConfig
from sparsetune.data.tensors import Examples
from sparsetune.train.hooks import TrainingHooks

NO_HOOKS = TrainingHooks()


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the trial is recorded as failed with this reason."""


@dataclass(frozen=True)
class EpochDone:
    """What `fit` tells its `on_epoch` callback after each epoch: a long phase (L0's 200 epochs)
    otherwise runs for hours with nothing to show."""

    epoch: int  # 1-based
    epochs: int
    mean_loss: float
    seconds: float  # since the phase started

    def describe(self) -> str:
        return f"epoch {self.epoch}/{self.epochs}, loss {self.mean_loss:.4f} ({self.seconds:.0f} s)"


def make_optimizer(model: nn.Module, recipe: TrainConfig) -> torch.optim.Optimizer:
    parameters = [p for p in model.parameters() if p.requires_grad]
    if recipe.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.SGD(
        parameters, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
    )


def make_scheduler(optimizer: torch.optim.Optimizer, recipe: TrainConfig):
    """A per-epoch learning-rate schedule, or None for a constant rate."""
    if recipe.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, recipe.step_epochs, recipe.step_gamma)
    if recipe.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(recipe.epochs, 1))
    return None


def fit(
    model: nn.Module,
    data: Examples,
    recipe: TrainConfig,
    *,
    seed: int,
    hooks: TrainingHooks = NO_HOOKS,
    on_epoch: Callable[[EpochDone], None] | None = None,
) -> float:
    """Train `model` on `data` for `recipe.epochs`; returns the last epoch's mean loss."""
    started = time.perf_counter()
    optimizer = make_optimizer(model, recipe)
    scheduler = make_scheduler(optimizer, recipe)
    loader = data.batches(recipe.batch_size, shuffle=True, seed=seed)
    mean_loss = math.nan
    for epoch in range(recipe.epochs):
        model.train()
        # Summed on the device and read once per epoch: a NaN anywhere in the epoch survives
        # the sum, and no per-step .item() stalls a GPU.
        loss_sum = torch.zeros((), device=data.device)
        for inputs, targets in loader:
            loss = F.cross_entropy(model(inputs), targets)
            penalty = hooks.penalty(model)
            if penalty is not None:
                loss = loss + penalty
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            hooks.after_backward(model)
            optimizer.step()
            hooks.on_step_end(model)
            loss_sum += loss.detach()
        mean_loss = float(loss_sum) / max(len(loader), 1)
        if not math.isfinite(mean_loss):
            raise TrainingDiverged(f"training loss became {mean_loss} in epoch {epoch + 1}")
        if scheduler is not None:
            scheduler.step()
        if on_epoch is not None:
            on_epoch(EpochDone(epoch + 1, recipe.epochs, mean_loss, time.perf_counter() - started))
    return mean_loss


@torch.no_grad()
def evaluate(model: nn.Module, data: Examples, batch_size: int = 1000) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of `model` on `data`, in eval mode."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=data.device)
    loss_sum = torch.zeros((), device=data.device)
    for inputs, targets in data.in_order(batch_size):
        logits = model(inputs)
        loss_sum += F.cross_entropy(logits, targets, reduction="sum")
        correct += (logits.argmax(1) == targets).sum()
    model.train(was_training)
    count = max(len(data), 1)
    return int(correct) / count, float(loss_sum) / count
