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
from sparsetune.train import optimizers
from sparsetune.train.hooks import TrainingHooks

NO_HOOKS = TrainingHooks()


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the trial is recorded as failed with this reason."""


@dataclass(frozen=True)
class EpochDone:
    """What `fit` tells its `on_epoch` callback after each epoch, and within an epoch at most
    every STEP_NEWS_SECONDS (`finished` False: the steps so far, no loss yet): a long phase (L0's
    200 epochs, a ResNet's minutes-long epoch) otherwise runs with nothing to show."""

    epoch: int  # 1-based
    epochs: int
    mean_loss: float  # NaN within an epoch: reading it would stall a GPU every step
    seconds: float  # since the phase started
    step: int = 0  # steps done in this epoch; `steps` once it has finished
    steps: int = 0

    @property
    def finished(self) -> bool:
        return self.step >= self.steps

    @property
    def fraction(self) -> float:
        """The share of the phase's steps done."""
        within = self.step / self.steps if self.steps else 1.0
        return (self.epoch - 1 + within) / self.epochs if self.epochs else 1.0

    @property
    def eta_seconds(self) -> float | None:
        """The phase's time left at its pace so far (None before any step)."""
        fraction = self.fraction
        return self.seconds * (1 - fraction) / fraction if fraction > 0 else None

    def describe(self) -> str:
        if not self.finished:
            return (
                f"epoch {self.epoch}/{self.epochs}, step {self.step}/{self.steps} ({_clock(self)})"
            )
        return f"epoch {self.epoch}/{self.epochs}, loss {self.mean_loss:.4f} ({_clock(self)})"


# The most often `fit` tells its callback how far an epoch has got.
STEP_NEWS_SECONDS = 1.0


def _clock(done: EpochDone) -> str:
    eta = done.eta_seconds
    left = f", ETA {duration(eta)}" if eta is not None and not done.fraction >= 1 else ""
    return f"{done.seconds:.0f} s{left}"


def duration(seconds: float) -> str:
    """42 s, 3m05s, 2h07m: an elapsed time or an ETA, as progress shows it."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def make_optimizer(model: nn.Module, recipe: TrainConfig) -> torch.optim.Optimizer:
    parameters = [p for p in model.parameters() if p.requires_grad]
    if recipe.optimizer == "adam":
        return optimizers.Adam(parameters, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return optimizers.SGD(
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
    steps = len(loader)
    mean_loss = math.nan
    news_at = started + STEP_NEWS_SECONDS
    for epoch in range(recipe.epochs):
        model.train()
        # Summed on the device and read once per epoch: a NaN anywhere in the epoch survives
        # the sum, and no per-step .item() stalls a GPU.
        loss_sum = torch.zeros((), device=data.device)
        for step, (inputs, targets) in enumerate(loader, start=1):
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
            if on_epoch is not None and step < steps and time.perf_counter() >= news_at:
                now = time.perf_counter()
                news_at = now + STEP_NEWS_SECONDS
                on_epoch(EpochDone(epoch + 1, recipe.epochs, math.nan, now - started, step, steps))
        mean_loss = float(loss_sum) / max(steps, 1)
        if not math.isfinite(mean_loss):
            raise TrainingDiverged(f"training loss became {mean_loss} in epoch {epoch + 1}")
        if scheduler is not None:
            scheduler.step()
        if on_epoch is not None:
            seconds = time.perf_counter() - started
            on_epoch(EpochDone(epoch + 1, recipe.epochs, mean_loss, seconds, steps, steps))
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
