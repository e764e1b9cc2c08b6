"""Everything before a trial's plan runs: device, data, method, the trial's one model, the
shared dense stage (trained only if no trial has), masks and the method's hooks attached."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from sparsetune.config import TrialConfig
from sparsetune.data import load_splits
from sparsetune.data.tensors import Splits
from sparsetune.identity import dense_key
from sparsetune.models import build_model
from sparsetune.pruning import METHODS
from sparsetune.pruning.base import PruningMethod
from sparsetune.pruning.masking import attach_masks, prunable_parameters
from sparsetune.train.dense_cache import CachedDense, DenseCache
from sparsetune.trial.clock import PhaseClock
from sparsetune.trial.context import EpochCallback, RoundResult, TrialContext
from sparsetune.trial.dense import train_dense


def resolve_device(device: str) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was asked for but no CUDA device is visible; use cpu")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def check_method(config: TrialConfig, splits: Splits) -> PruningMethod:
    """The trial's method, its per-layer knobs checked against the model's prunable layers (one-line
    ValueError), before any training: the CLI's check before it starts a trial."""
    method = METHODS[config.method](config.method_config())
    model = build_model(config.model, splits.input_shape, splits.num_classes)
    method.check_layers(prunable_parameters(model))
    return method


def start_trial(
    config: TrialConfig,
    *,
    cache_dir: Path,
    workdir: Path | None = None,
    on_round: Callable[[RoundResult], None] = lambda result: None,
    on_dense: Callable[[CachedDense], None] = lambda dense: None,
    on_epoch: EpochCallback | None = None,
    clock: PhaseClock | None = None,
) -> TrialContext:
    """Everything before the method's plan runs: data, the shared dense stage (trained only if
    no trial has), the model at its trained dense weights with masks attached, and the method."""
    clock = clock or PhaseClock()
    device = resolve_device(config.device)
    with clock.phase("data"):
        splits = load_splits(config.data).to(device)
    method = METHODS[config.method](config.method_config())
    # The trial's one model, built under its seed. Its per-layer knobs are checked before the
    # dense stage (a typo costs no training), and its weights are overwritten by the dense ones.
    torch.manual_seed(config.seed)
    model = build_model(config.model, splits.input_shape, splits.num_classes)
    after_build = torch.get_rng_state()
    method.check_layers(prunable_parameters(model))
    with clock.phase("dense"):
        dense = DenseCache(cache_dir).get_or_train(
            dense_key(config), lambda: train_dense(config, splits, device, on_epoch)
        )
    on_dense(dense)
    # Whether the dense stage trained here (drawing from torch's generators) or came from the
    # cache, the method's own draws (L0's gate locations, its gate noise) continue from the
    # state right after the build under the seed.
    torch.manual_seed(config.seed)
    torch.set_rng_state(after_build)
    model = model.to(device)
    model.load_state_dict(dense.checkpoint.final)
    masks = attach_masks(model)
    method.bind_data(len(splits.train))
    method.attach(model, masks)
    return TrialContext(
        config, model, masks, method, splits, dense, workdir, on_round, on_epoch, clock
    )


def run_trial(config: TrialConfig, **options) -> list[RoundResult]:
    """Run one configuration (`options` as for `start_trial`); returns every reported round."""
    return start_trial(config, **options).run()
