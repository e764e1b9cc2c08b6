"""One trial, start to finish, with no Ray or MLflow: the core that every front end calls.

`run_trial(config, ...)` loads the data, gets the dense stage from the cache (training it only if
no trial has), builds the method, attaches masks, and lets the method's schedule drive. Each
round's point goes to `on_round`; the search layer turns those into Ray reports and MLflow
metrics, a single-run command prints them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from sparsetune.atomic import atomic_file
from sparsetune.config import TrialConfig
from sparsetune.data import load_splits
from sparsetune.data.tensors import Splits
from sparsetune.export.header import encode_header
from sparsetune.identity import dense_key, trial_hash
from sparsetune.models import build_model
from sparsetune.pruning import METHODS
from sparsetune.pruning.base import PruningMethod, TrainingHooks
from sparsetune.pruning.masking import (
    MaskSet,
    attach_masks,
    prunable_parameters,
    squashed_state_dict,
)
from sparsetune.train.dense_cache import (
    REWIND_ITERATIONS,
    CachedDense,
    DenseCache,
    DenseCheckpoint,
)
from sparsetune.train.loop import EpochDone, evaluate, fit
from sparsetune.train.metrics import SparsityReport, layer_macs, sparsity_report

# Told of each finished epoch, with the phase it belongs to: "dense" or "training".
EpochCallback = Callable[[str, EpochDone], None]


@dataclass(frozen=True)
class RoundResult:
    """One reported point of a trial: a candidate for the Pareto front."""

    round: int
    val_acc: float
    val_loss: float
    test_acc: float
    compression: float
    flops_ratio: float
    remaining_weights: int
    total_weights: int
    architecture: str
    seconds: float  # wall time since the trial started
    report: SparsityReport
    ticket_path: Path | None = None

    def metrics(self) -> dict[str, float | int | str]:
        """The flat numbers a tracker or a searcher records for this round."""
        values = asdict(self)
        del values["report"], values["ticket_path"]
        return values


def resolve_device(device: str) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was asked for but no CUDA device is visible; use cpu")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class TrialContext:
    """What a schedule works with: the model, its masks, the method, the data, and two verbs,
    `retrain` and `report`."""

    def __init__(
        self,
        config: TrialConfig,
        model: nn.Module,
        masks: MaskSet,
        method: PruningMethod,
        splits: Splits,
        dense: CachedDense,
        workdir: Path | None,
        on_round: Callable[[RoundResult], None],
        on_epoch: EpochCallback | None = None,
    ):
        self.config = config
        self.model = model
        self.masks = masks
        self.method = method
        self.splits = splits
        self.dense = dense
        self.workdir = workdir
        self._on_round = on_round
        self._on_epoch = on_epoch
        self._macs = layer_macs(model, splits.input_shape)
        self._started = time.perf_counter()
        self._retrain_count = 0
        self.resume_after = 0  # the round a restarted trial continues after (0: from the start)
        self.results: list[RoundResult] = []

    def retrain(self, epochs: int | None = None) -> None:
        """Train the masked model with the method's recipe; `epochs` None keeps its length."""
        recipe = self.method.retrain_recipe(self.config.train)
        if epochs is not None:
            recipe = recipe.model_copy(update={"epochs": epochs})
        # A new seed per retraining phase: each phase sees its own batch order, reproducibly.
        self._retrain_count += 1
        fit(
            self.model,
            self.splits.train,
            recipe,
            seed=self.config.seed + 1000 * self._retrain_count,
            hooks=self.method,
            on_epoch=_in_phase(self._on_epoch, "training"),
        )

    def run(self) -> list[RoundResult]:
        """Let the method's schedule drive the trial; returns every reported round."""
        self.method.schedule().run(self)
        return self.results

    def round_state(self) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
        """What a restarted trial needs to continue after the round just reported: the model's
        whole state (weights, mask buffers, any parameters a method attached) and counters."""
        state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        return state, {"retrain_count": self._retrain_count}

    @torch.no_grad()
    def restore_round(
        self, state: dict[str, torch.Tensor], counters: dict[str, int], round_index: int
    ) -> None:
        """Back to the state `round_state` returned after reporting `round_index`; the schedule
        then continues after that round. The retraining counter seeds each phase's batch order,
        so the rounds that follow are the ones an uninterrupted trial would have run."""
        self.model.load_state_dict(state)
        self._retrain_count = int(counters.get("retrain_count", round_index))
        self.resume_after = round_index

    @torch.no_grad()
    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Set the model to a plain (unmasked) state dict, e.g. theta_0 or a rewind point theta_j,
        keeping the masks: pruned weights stay exactly zero."""
        for name in self.masks:
            self.masks.stored_weight(name).copy_(state[name])
        plain = {key: value for key, value in state.items() if key not in self.masks}
        # strict=False: the masked weights live under parametrizations.* and were set above.
        unexpected = self.model.load_state_dict(plain, strict=False).unexpected_keys
        if unexpected:
            raise KeyError(f"state has keys the model lacks: {unexpected[:5]}")
        self.masks.commit()

    def fresh_initialisation(self, seed: int) -> dict[str, torch.Tensor]:
        """A new draw of the model's initial weights (the re-initialisation control)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(self.config.model, self.splits.input_shape, self.splits.num_classes)
        return model.state_dict()

    def scoring_batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`size` training examples drawn under the trial's seed: what at-initialisation
        criteria (SNIP, GraSP) score on."""
        generator = torch.Generator().manual_seed(self.config.seed)
        count = min(size, len(self.splits.train))
        index = torch.randperm(len(self.splits.train), generator=generator)[:count]
        index = index.to(self.splits.train.x.device)
        return self.splits.train.x[index], self.splits.train.y[index]

    def report(self, round_index: int) -> RoundResult:
        val_acc, val_loss = evaluate(self.model, self.splits.val)
        test_acc, _ = evaluate(self.model, self.splits.test)
        report = sparsity_report(self.model, self._macs)
        seconds = time.perf_counter() - self._started
        summary = {
            "round": round_index,
            "val_acc": val_acc,
            "test_acc": test_acc,
            "compression": report.compression,
            "flops_ratio": report.flops_ratio,
            "architecture": report.architecture,
        }
        result = RoundResult(
            round=round_index,
            val_acc=val_acc,
            val_loss=val_loss,
            test_acc=test_acc,
            compression=report.compression,
            flops_ratio=report.flops_ratio,
            remaining_weights=report.remaining_weights,
            total_weights=report.total_weights,
            architecture=report.architecture,
            seconds=seconds,
            report=report,
            ticket_path=self._save_ticket(round_index, summary),
        )
        self.results.append(result)
        self._on_round(result)
        return result

    def _save_ticket(self, round_index: int, summary: dict[str, Any]) -> Path | None:
        """The round's masks and trained weights; the initial weights are saved once per trial.

        The file's safetensors header says how to rebuild the model and what the round scored
        (`sparsetune.export.header`), so that `sparsetune export` and `sparsetune.load` need the
        ticket file alone."""
        if self.workdir is None:
            return None
        self.workdir.mkdir(parents=True, exist_ok=True)
        initial = self.workdir / "init.safetensors"
        if not initial.exists():
            _atomic_save(self.dense.checkpoint.init, initial)
        tensors = {f"mask.{name}": mask for name, mask in self.masks.state().items()}
        tensors |= {
            f"weight.{name}": value for name, value in squashed_state_dict(self.model).items()
        }
        path = self.workdir / f"round-{round_index}.safetensors"
        info = {
            "format": "ticket",
            "model": self.config.model,
            "input_shape": list(self.splits.input_shape),
            "num_classes": self.splits.num_classes,
            "dataset": self.config.data.name,
            "method": self.config.method,
            "config_hash": trial_hash(self.config),
            **summary,
        }
        _atomic_save(tensors, path, metadata=encode_header(info))
        return path


def _atomic_save(
    tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None
) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_file(path) as staging:
        save_file(tensors, staging, metadata=metadata)


class _RewindSnapshots(TrainingHooks):
    """Copies the weights after the optimiser steps listed in REWIND_ITERATIONS."""

    def __init__(self) -> None:
        self.steps = 0
        self.taken: dict[int, dict[str, torch.Tensor]] = {}

    def on_step_end(self, model: nn.Module) -> None:
        self.steps += 1
        if self.steps in REWIND_ITERATIONS:
            self.taken[self.steps] = {k: v.detach().clone() for k, v in model.state_dict().items()}


def _in_phase(on_epoch: EpochCallback | None, phase: str) -> Callable[[EpochDone], None] | None:
    if on_epoch is None:
        return None
    return lambda done: on_epoch(phase, done)


def train_dense(
    config: TrialConfig,
    splits: Splits,
    device: torch.device,
    on_epoch: EpochCallback | None = None,
) -> DenseCheckpoint:
    """The dense stage: seeded initialisation, then the dense recipe, keeping theta_j on the way."""
    torch.manual_seed(config.seed)
    model = build_model(config.model, splits.input_shape, splits.num_classes).to(device)
    init = {name: value.detach().clone() for name, value in model.state_dict().items()}
    snapshots = _RewindSnapshots()
    fit(
        model,
        splits.train,
        config.train,
        seed=config.seed,
        hooks=snapshots,
        on_epoch=_in_phase(on_epoch, "dense"),
    )
    val_acc, val_loss = evaluate(model, splits.val)
    return DenseCheckpoint(
        init=init,
        final=model.state_dict(),
        metrics={"val_acc": val_acc, "val_loss": val_loss},
        rewind=snapshots.taken,
    )


def check_method(config: TrialConfig, splits: Splits) -> PruningMethod:
    """The trial's method, its per-layer knobs checked against the model's prunable layers (one-line
    ValueError), before any training."""
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
) -> TrialContext:
    """Everything before the method's schedule runs: data, the shared dense stage (trained only if
    no trial has), the model at its trained dense weights with masks attached, and the method."""
    device = resolve_device(config.device)
    splits = load_splits(config.data).to(device)
    method = check_method(config, splits)
    dense = DenseCache(cache_dir).get_or_train(
        dense_key(config), lambda: train_dense(config, splits, device, on_epoch)
    )
    on_dense(dense)
    torch.manual_seed(config.seed)
    model = build_model(config.model, splits.input_shape, splits.num_classes).to(device)
    model.load_state_dict(dense.checkpoint.final)
    masks = attach_masks(model)
    method.attach(model, masks)
    return TrialContext(config, model, masks, method, splits, dense, workdir, on_round, on_epoch)


def run_trial(config: TrialConfig, **options) -> list[RoundResult]:
    """Run one configuration (`options` as for `start_trial`); returns every reported round."""
    return start_trial(config, **options).run()
