"""The Ray Tune function trainable: flat config in, one `tune.report` per pruning round out.

It parses the flat config into a typed `TrialConfig` before any work, so a bad value fails the
trial at once with a readable reason. A failure (an exception, or a loss gone NaN) marks the
MLflow child run FAILED with the reason as a tag and is re-raised: Ray records the trial as
errored, Optuna as failed, and the sweep goes on.
"""

from __future__ import annotations

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


def sparsetune_trial(flat: dict[str, Any], template: TrialTemplate) -> None:
    torch.set_num_threads(template.threads)
    config = template.trial_config(flat)
    config_hash = trial_hash(config)
    trial_id = tune.get_context().get_trial_id()
    workdir = template.sweep_dir / "trials" / trial_id
    run = _start_child_run(template, config, config_hash, trial_id, workdir)

    def on_round(result: RoundResult) -> None:
        if run is not None:
            run.record_round(result)
        tune.report(
            result.metrics()
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
            run.finish()
    except BaseException as error:
        if run is not None:
            run.fail(error)
        raise


def _start_child_run(
    template: TrialTemplate, config: TrialConfig, config_hash: str, trial_id: str, workdir: Path
):
    if template.tracking_uri is None or template.experiment_id is None:
        return None
    from sparsetune.tracking.mlflow_store import MlflowStore
    from sparsetune.tracking.trial_run import TrialRun

    return TrialRun.start(
        MlflowStore(template.tracking_uri, template.experiment_id),
        f"{config.method}-{trial_id}",
        config,
        config_hash,
        workdir,
        parent=template.parent_run_id,
        tags={"ray_trial_id": trial_id},
    )
