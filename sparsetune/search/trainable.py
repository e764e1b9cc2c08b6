"""The Ray Tune function trainable: flat config in, one `tune.report` per pruning round out.

It parses the flat config into a typed `TrialConfig` before any work, so a bad value fails the
trial at once with a readable reason. A failure (an exception, or a loss gone NaN) marks the
MLflow child run FAILED with the reason as a tag and is re-raised: Ray records the trial as
errored, Optuna as failed, and the sweep goes on.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from ray import tune

from sparsetune.config import DataConfig, TrainConfig, TrialConfig
from sparsetune.identity import trial_hash
from sparsetune.search.space import params_from_flat
from sparsetune.train.dense_cache import CachedDense
from sparsetune.trial import RoundResult, run_trial


@dataclass(frozen=True)
class TrialTemplate:
    """The parts of every trial's config that the sweep fixes (picklable, sent to workers)."""

    model: str
    data: DataConfig
    train: TrainConfig
    seed: int
    device: str
    threads: int
    sweep_dir: Path
    cache_dir: Path
    tracking_uri: str | None
    experiment_id: str | None
    parent_run_id: str | None

    def trial_config(self, flat: dict[str, Any]) -> TrialConfig:
        method, params = params_from_flat(flat)
        return TrialConfig(
            model=self.model,
            data=self.data,
            train=self.train,
            method=method,
            params=params,
            seed=self.seed,
            device=self.device,
        )


def write_round_files(result: RoundResult, folder: Path) -> list[Path]:
    """The per-layer table and the architecture string of one round, next to its ticket."""
    folder.mkdir(parents=True, exist_ok=True)
    table = folder / f"round-{result.round}-layers.csv"
    rows = [layer.as_row() for layer in result.report.layers]
    with table.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    architecture = folder / f"round-{result.round}-architecture.json"
    architecture.write_text(
        json.dumps({"architecture": result.architecture, "layers": rows}, indent=2)
    )
    return [table, architecture]


def sparsetune_trial(flat: dict[str, Any], template: TrialTemplate) -> None:
    torch.set_num_threads(template.threads)
    config = template.trial_config(flat)
    config_hash = trial_hash(config)
    trial_id = tune.get_context().get_trial_id()
    workdir = template.sweep_dir / "trials" / trial_id
    run = _start_child_run(template, config, config_hash, trial_id)

    def on_round(result: RoundResult) -> None:
        metrics = result.metrics()
        if run is not None:
            files = [result.ticket_path, *write_round_files(result, workdir)]
            run.log_metrics(metrics, step=result.round)
            run.log_files([f for f in files if f is not None], artifact_path="ticket")
        tune.report(
            metrics
            | {
                "config_hash": config_hash,
                "run_id": run.run_id if run else "",
                "method": config.method,
            }
        )

    def on_dense(dense: CachedDense) -> None:
        if run is not None:  # shows that trials share the cached dense stage
            run.set_tags(
                {"dense_stage": f"{'trained' if dense.trained_here else 'cache'}:{dense.key}"}
            )

    try:
        run_trial(
            config,
            cache_dir=template.cache_dir,
            workdir=workdir,
            on_round=on_round,
            on_dense=on_dense,
        )
        if run is not None:
            run.log_files([workdir / "init.safetensors"], artifact_path="ticket")
            run.finish()
    except BaseException as error:
        if run is not None:
            run.set_tags({"error": f"{type(error).__name__}: {error}"[:5000]})
            run.finish(failed=True)
        raise


def _start_child_run(template: TrialTemplate, config: TrialConfig, config_hash: str, trial_id: str):
    if template.tracking_uri is None or template.experiment_id is None:
        return None
    from sparsetune.tracking.mlflow_store import MlflowStore

    store = MlflowStore(template.tracking_uri, template.experiment_id)
    run = store.start_run(
        f"{config.method}-{trial_id}",
        parent=template.parent_run_id,
        tags={"config_hash": config_hash, "method": config.method, "ray_trial_id": trial_id},
    )
    run.log_params({"method": config.method, **config.method_config().model_dump()})
    return run
