"""The dense stage of a trial: seeded initialisation, then the dense recipe, keeping theta_j on
the way (the rewind points lottery tickets go back to). `DenseCache` shares its result.

Under `weights` (`--weights FILE`) nothing trains: the stage's final weights are the file's, its
theta_0 the seeded initialisation of the architecture, and it has no theta_j for j > 0."""

from __future__ import annotations

import torch
from torch import nn

from sparsetune.config import TrialConfig
from sparsetune.data.tensors import Splits
from sparsetune.models import build_model
from sparsetune.models.weights import load_weights
from sparsetune.train.dense_cache import REWIND_ITERATIONS, DenseCheckpoint
from sparsetune.train.hooks import TrainingHooks
from sparsetune.train.loop import evaluate, fit
from sparsetune.trial.context import EpochCallback, in_phase


class RewindSnapshots(TrainingHooks):
    """Copies the weights after the optimiser steps listed in REWIND_ITERATIONS."""

    def __init__(self) -> None:
        self.steps = 0
        self.taken: dict[int, dict[str, torch.Tensor]] = {}

    def on_step_end(self, model: nn.Module) -> None:
        self.steps += 1
        if self.steps in REWIND_ITERATIONS:
            self.taken[self.steps] = {k: v.detach().clone() for k, v in model.state_dict().items()}


def train_dense(
    config: TrialConfig,
    splits: Splits,
    device: torch.device,
    on_epoch: EpochCallback | None = None,
) -> DenseCheckpoint:
    """The dense stage: seeded initialisation, then the dense recipe, keeping theta_j on the way;
    or under `config.weights`, the file's weights, evaluated and not trained."""
    torch.manual_seed(config.seed)
    model = build_model(config.model, splits.input_shape, splits.num_classes).to(device)
    init = {name: value.detach().clone() for name, value in model.state_dict().items()}
    if config.weights is not None:
        load_weights(model, config.weights)
        val_acc, val_loss = evaluate(model, splits.val)
        return DenseCheckpoint(
            init=init,
            final=model.state_dict(),
            metrics={"val_acc": val_acc, "val_loss": val_loss},
        )
    snapshots = RewindSnapshots()
    fit(
        model,
        splits.train,
        config.train,
        seed=config.seed,
        hooks=snapshots,
        on_epoch=in_phase(on_epoch, "dense"),
    )
    val_acc, val_loss = evaluate(model, splits.val)
    return DenseCheckpoint(
        init=init,
        final=model.state_dict(),
        metrics={"val_acc": val_acc, "val_loss": val_loss},
        rewind=snapshots.taken,
    )
