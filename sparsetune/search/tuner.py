"""Ray Tune's side of a sweep: join or start Ray, build the Tuner (or restore a killed sweep's),
and run it to the end."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ray
import torch
from ray import tune
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher
from ray.tune.stopper import CombinedStopper, Stopper

from sparsetune.search import private_api
from sparsetune.search.options import SweepConfig

# Retries of a trial whose worker died (a node lost, the process killed): from its last round's
# checkpoint. A trial's own error is not retried (see trainable._record_failure).
TRIAL_RETRIES = 2


@dataclass(frozen=True)
class TunerPlan:
    """What one run of the Tuner is made of (this process's objects, restored or not)."""

    trainable: Any
    searcher: Searcher
    scheduler: TrialScheduler | None
    callbacks: Sequence[Any]
    stoppers: Sequence[Stopper]
    trials: int
    max_concurrent: int
    name: str  # the Ray experiment's name, from the sweep's state file
    storage: str  # where Ray keeps its experiments (`SweepConfig.ray_storage`)

    def tune_config(self) -> tune.TuneConfig:
        return tune.TuneConfig(
            search_alg=self.searcher,
            scheduler=self.scheduler,
            num_samples=self.trials,
            max_concurrent_trials=self.max_concurrent,
            reuse_actors=True,
        )

    def run_config(self) -> tune.RunConfig:
        return tune.RunConfig(
            name=self.name,
            storage_path=self.storage,
            callbacks=list(self.callbacks),
            stop=CombinedStopper(*self.stoppers) if self.stoppers else None,
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=TRIAL_RETRIES, fail_fast=False),
            # One checkpoint per trial is all a restart needs; and a trial checkpointing
            # `num_to_keep` times makes Ray save its experiment state at once, so what a
            # resumed sweep restores lags the trials by at most the round in progress.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        )

    @property
    def experiment(self) -> str:
        return f"{self.storage.rstrip('/')}/{self.name}"


def run_tuner(
    plan: TunerPlan, *, resume: bool, fail_unsaved: Callable[[], None] | None = None
) -> None:
    """Run the plan's trials to the end: a new Tuner, or when `resume` and Ray saved the
    experiment, the restored one. A resume that finds nothing saved (the sweep was killed before
    Ray saved anything) calls `fail_unsaved()` first: nothing will run the study's RUNNING
    trials now."""
    if resume and tune.Tuner.can_restore(plan.experiment):
        tuner = restored_tuner(plan)
    else:
        if resume and fail_unsaved is not None:
            fail_unsaved()
        tuner = tune.Tuner(
            plan.trainable, tune_config=plan.tune_config(), run_config=plan.run_config()
        )
    tuner.fit()


def restored_tuner(plan: TunerPlan) -> tune.Tuner:
    """`Tuner.restore` of a killed sweep, running this process's searcher, callbacks and stoppers.

    Restore alone would run the copies pickled when the sweep first started (`tuner.pkl`): a
    progress callback this function cannot read the rows of, a budget counted from the first
    start. So this run's objects take their place; Ray's restore then loads the saved searcher
    state (study, sampler, trial map: `SweepSearch.restore`) and the progress callback's state
    (`SweepProgress.set_state`) into them. Ray has no public setter for the restored configs:
    `private_api.replace_tuner_configs`."""
    tuner = tune.Tuner.restore(
        plan.experiment,
        trainable=plan.trainable,
        resume_unfinished=True,  # running trials continue from their last round's checkpoint
        resume_errored=False,  # a failed trial stays failed, with its reason
        restart_errored=False,
    )
    restored = private_api.tuner_run_config(tuner)
    run_config = plan.run_config()
    for field in ("name", "storage_path", "storage_filesystem"):
        setattr(run_config, field, getattr(restored, field))
    private_api.replace_tuner_configs(tuner, plan.tune_config(), run_config)
    return tuner


def start_ray(sweep: SweepConfig) -> bool:
    """Join `--address`, or start a local Ray sized to this machine. True if we started it."""
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": "ERROR",
        "configure_logging": True,
    }
    if sweep.address:
        ray.init(address=sweep.address, **options)
    else:
        gpus = torch.cuda.device_count() if sweep.device != "cpu" else 0
        ray.init(num_cpus=os.cpu_count(), num_gpus=gpus, **options)
    return True
