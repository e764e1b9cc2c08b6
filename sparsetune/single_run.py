"""`sparsetune prune`: one configuration in this process, no Ray, MLflow only when asked.

The same `run_trial` as a sweep's trials, the same dense cache (a dense stage trained here is
reused by later sweeps and runs), and the same ticket files in the output folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsetune.config import TrialConfig
from sparsetune.export import memory_footprint
from sparsetune.identity import trial_hash
from sparsetune.trial import EpochCallback, RoundResult, start_trial


@dataclass(frozen=True)
class SingleRun:
    config: TrialConfig
    rounds: list[RoundResult]
    out: Path
    run_id: str | None
    smaller_model: Path | None = None  # the physically smaller network, when units were removed
    # Bytes of the final ticket's sparse export (nonzero values + their indices, the rest whole):
    # the "memory footprint" (sparsetune.export.formats, docs/export.md).
    memory_footprint_bytes: int | None = None

    @property
    def final(self) -> RoundResult:
        return self.rounds[-1]

    def summary(self) -> dict[str, Any]:
        """What `--json` prints and `result.json` holds: the final round, and every round."""
        final = self.final
        return {
            "method": self.config.method,
            "params": self.config.method_config().model_dump(),
            "model": self.config.model,
            "dataset": self.config.data.name,
            "val_acc": final.val_acc,
            "test_acc": final.test_acc,
            "test_error": round(100 * (1 - final.test_acc), 4),
            "compression": final.compression,
            "flops_ratio": final.flops_ratio,
            "memory_footprint_bytes": self.memory_footprint_bytes,
            "remaining_weights": final.remaining_weights,
            "total_weights": final.total_weights,
            "architecture": final.architecture,
            "round": final.round,
            "run_id": self.run_id,
            "config_hash": trial_hash(self.config),
            "out": str(self.out),
            "smaller_model": str(self.smaller_model) if self.smaller_model else None,
            "rounds": [result.metrics() for result in self.rounds],
            "layers": [layer.as_row() for layer in final.report.layers],
        }


def run_single(
    config: TrialConfig,
    *,
    out: Path,
    cache_dir: Path,
    tracking_uri: str | None = None,
    experiment: str = "sparsetune-prune",
    on_round=lambda result: None,
    on_epoch: EpochCallback | None = None,
) -> SingleRun:
    """Train and prune `config`; tickets and `result.json` go to `out`, an MLflow run to
    `tracking_uri` when given (marked FAILED with the reason if the trial raises)."""
    recorder = None
    if tracking_uri is not None:
        from sparsetune.tracking.mlflow_store import MlflowStore
        from sparsetune.tracking.trial_run import TrialRun

        store = MlflowStore.open(tracking_uri, experiment, out / "mlartifacts")
        name = f"{config.method}-{config.model}-{trial_hash(config)[:8]}"
        recorder = TrialRun.start(store, name, config, trial_hash(config), out)

    def record(result: RoundResult) -> None:
        if recorder is not None:
            recorder.record_round(result)
        on_round(result)

    try:
        trial = start_trial(
            config, cache_dir=cache_dir, workdir=out, on_round=record, on_epoch=on_epoch
        )
        trial.run()
        smaller = export_smaller_model(trial.model, trial.splits.input_shape, out)
        footprint = memory_footprint(trial.results[-1].ticket_path)
    except BaseException as error:
        if recorder is not None:
            recorder.fail(error)
        raise
    if recorder is not None:
        if smaller is not None:
            recorder.run.log_files([smaller], artifact_path="ticket")
        final_round = trial.results[-1].round
        recorder.run.log_metrics({"memory_footprint_bytes": footprint}, step=final_round)
        recorder.finish()
    run_id = recorder.run_id if recorder else None
    single = SingleRun(config, trial.results, out, run_id, smaller, footprint)
    (out / "result.json").write_text(json.dumps(single.summary(), indent=2, default=str) + "\n")
    return single


def export_smaller_model(model, input_shape: tuple[int, ...], out: Path) -> Path | None:
    """Write `smaller-model.pt2`, the network with its removed neurons and channels physically
    gone (`pruning.shrink`), as a `torch.export` program: `torch.export.load(path).module()` runs
    it with no sparsetune and no pickled code. None when no unit was removed (unstructured
    sparsity leaves every layer its width) or the architecture is one `shrink` does not support."""
    import torch

    from sparsetune.pruning.shrink import plain_copy, shrink

    try:
        smaller = shrink(model, input_shape)
    except (ValueError, RuntimeError):
        return None
    # Against the plain network (masks and gates baked in): gate parameters are not the model's.
    plain = plain_copy(model)
    if sum(p.numel() for p in smaller.parameters()) >= sum(p.numel() for p in plain.parameters()):
        return None
    device = next(model.parameters()).device
    example = torch.zeros(2, *input_shape, device=device)  # batch 2: a batch of 1 would specialise
    batch = torch.export.Dim("batch")
    program = torch.export.export(smaller.eval(), (example,), dynamic_shapes=({0: batch},))
    path = out / "smaller-model.pt2"
    torch.export.save(program, path)
    return path
