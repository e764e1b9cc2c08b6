"""A running trial: its model, masks, method, data and shared dense stage, and the verbs the
driver's plan runners use (`retrain`, `report`, `load_weights`, `fresh_initialisation`,
`scoring_batch`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sparsetune.config import TrialConfig
from sparsetune.data.tensors import Splits
from sparsetune.export.formats import memory_footprint
from sparsetune.identity import trial_hash
from sparsetune.models import build_model
from sparsetune.pruning.base import PruningMethod
from sparsetune.pruning.masking import MaskSet
from sparsetune.pruning.metrics import SparsityReport, layer_macs, sparsity_report
from sparsetune.results import RoundMetrics
from sparsetune.train.dense_cache import CachedDense
from sparsetune.train.loop import EpochDone, evaluate, fit
from sparsetune.trial.clock import PhaseClock
from sparsetune.trial.driver import run_plan
from sparsetune.trial.tickets import write_ticket

# Told of each finished epoch, with the phase it belongs to: "dense" or "training".
EpochCallback = Callable[[str, EpochDone], None]


@dataclass(frozen=True)
class RoundResult(RoundMetrics):
    """One reported point of a trial: its numbers (`RoundMetrics`, whose `metrics()` a tracker or
    a searcher records), the per-layer sparsity report and the round's ticket file."""

    report: SparsityReport | None = None
    ticket_path: Path | None = None


def in_phase(on_epoch: EpochCallback | None, phase: str) -> Callable[[EpochDone], None] | None:
    """`on_epoch` as `fit` calls it, told which phase the epochs belong to."""
    if on_epoch is None:
        return None
    return lambda done: on_epoch(phase, done)


class TrialContext:
    """What a plan runs on: the model, its masks, the method, the data and the shared dense stage,
    with the verbs `retrain` and `report` and the weight loaders the runners use."""

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
        clock: PhaseClock | None = None,
    ):
        self.config = config
        self.clock = clock or PhaseClock()
        self.seed = config.seed  # every random draw of the trial starts from it
        self.config_hash = trial_hash(config)  # once per trial: each ticket's header carries it
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
        # Training epochs of this trial so far (the dense stage excluded): each round reports it.
        self.epochs_trained = 0
        self.resume_after = 0  # the round a restarted trial continues after (0: from the start)
        self.results: list[RoundResult] = []

    def run(self) -> list[RoundResult]:
        """Run the method's plan (`sparsetune.trial.driver`); returns every reported round."""
        run_plan(self.method.plan(), self)
        return self.results

    def retrain(self, epochs: int | None = None) -> None:
        """Train the masked model with the method's recipe; `epochs` None keeps its length."""
        recipe = self.method.retrain_recipe(self.config.train)
        if epochs is not None:
            recipe = recipe.model_copy(update={"epochs": epochs})
        # A new seed per retraining phase: each phase sees its own batch order, reproducibly.
        self._retrain_count += 1
        with self.clock.phase("train"):
            fit(
                self.model,
                self.splits.train,
                recipe,
                seed=self.seed + 1000 * self._retrain_count,
                hooks=self.method,
                on_epoch=in_phase(self._on_epoch, "training"),
            )
        self.epochs_trained += recipe.epochs

    def round_state(self) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
        """What a restarted trial needs to continue after the round just reported: the model's
        whole state (weights, mask buffers, any parameters a method attached) and counters."""
        state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        return state, {"retrain_count": self._retrain_count, "epochs_trained": self.epochs_trained}

    @torch.no_grad()
    def restore_round(
        self, state: dict[str, torch.Tensor], counters: dict[str, int], round_index: int
    ) -> None:
        """Back to the state `round_state` returned after reporting `round_index`; the plan
        then continues after that round. The retraining counter seeds each phase's batch order,
        so the rounds that follow are the ones an uninterrupted trial would have run."""
        self.model.load_state_dict(state)
        self._retrain_count = int(counters.get("retrain_count", round_index))
        self.epochs_trained = int(counters.get("epochs_trained", 0))
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
        generator = torch.Generator().manual_seed(self.seed)
        count = min(size, len(self.splits.train))
        index = torch.randperm(len(self.splits.train), generator=generator)[:count]
        return self.splits.train.take(index)

    def report(self, round_index: int) -> RoundResult:
        """Evaluate the model as it is, write its ticket (with a workdir) and tell `on_round`."""
        with self.clock.phase("eval"):
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
        ticket_path = footprint = None
        if self.workdir is not None:
            with self.clock.phase("ticket"):
                ticket_path = write_ticket(
                    self.workdir,
                    round_index,
                    init=self.dense.checkpoint.init,
                    masks=self.masks,
                    model=self.model,
                    header=self._ticket_header() | summary,
                )
                footprint = memory_footprint(ticket_path)
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
            epochs_trained=self.epochs_trained,
            memory_footprint_bytes=footprint,
            report=report,
            ticket_path=ticket_path,
        )
        self.results.append(result)
        self._on_round(result)
        return result

    def _ticket_header(self) -> dict[str, object]:
        """What every ticket of this trial says about how to rebuild its model."""
        return {
            "format": "ticket",
            "model": self.config.model,
            "input_shape": list(self.splits.input_shape),
            "num_classes": self.splits.num_classes,
            "dataset": self.config.data.name,
            "method": self.config.method,
            "config_hash": self.config_hash,
        }
