"""Ray Tune's side of a sweep: join or start Ray, build the Tuner (or restore a killed sweep's),
and run it to the end, or until a stop signal (`interrupt.py`) ends it with its state saved."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import ray
from ray import tune
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher
from ray.tune.stopper import CombinedStopper, Stopper

from sparsetune.search import private_api
from sparsetune.search.interrupt import StopSignals
from sparsetune.search.local_ray import RAY_OPTIONS, start_sweep_ray
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
            progress_reporter=tune.CLIReporter(),  # silent at verbose=0; Jupyter's clears cells
            failure_config=tune.FailureConfig(max_failures=TRIAL_RETRIES, fail_fast=False),
            # One checkpoint per trial is all a restart needs; and a trial checkpointing
            # `num_to_keep` times makes Ray save its experiment state at once, so what a
            # resumed sweep restores lags the trials by at most the round in progress.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        )

    @property
    def experiment(self) -> str:
        return f"{self.storage.rstrip('/')}/{self.name}"


# How a run of the Tuner ended: every trial ran; a stop signal ended it (Ray's state saved with
# the unfinished trials unfinished); a stop signal came before it started (nothing ran).
TunerEnd = Literal["finished", "interrupted", "not started"]


class StopForwarder(tune.Callback):
    """Passes a stop signal that `StopSignals` recorded on to Tune, at the start of Tune's next
    step: Tune's handler is installed by then, whenever the signal came."""

    def __init__(self, stop: StopSignals | None) -> None:
        self.stop = stop

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles the Tuner's callbacks when it starts (`tuner.pkl`); signal handlers are
        # this process's. A restored sweep runs this process's forwarder (`restored_tuner`).
        return {"stop": None}

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if self.stop is not None:
            self.stop.forward_to_tune()

    def get_state(self) -> None:  # nothing of it is saved with Ray's state
        return None


def run_tuner(
    plan: TunerPlan,
    *,
    resume: bool,
    fail_unsaved: Callable[[], None] | None = None,
    stop: StopSignals | None = None,
    own_ray: bool = False,
) -> TunerEnd:
    """Run the plan's trials: a new Tuner, or when `resume` and Ray saved the experiment, the
    restored one. A resume that finds nothing saved (the sweep was killed before Ray saved
    anything) calls `fail_unsaved()` first: nothing will run the study's RUNNING trials now.
    With `stop`, a signal it records ends the run as Tune's own Ctrl-C does. `own_ray`: Ray is
    the local one this process started, whose waiting workers the trials can take
    (`private_api.trial_actors_on_started_workers`)."""
    if stop is not None and stop.requested:
        return "not started"
    if stop is not None:
        plan = replace(plan, callbacks=[*plan.callbacks, StopForwarder(stop)])
    if resume and tune.Tuner.can_restore(plan.experiment):
        tuner = restored_tuner(plan)
    else:
        if resume and fail_unsaved is not None:
            fail_unsaved()
        tuner = tune.Tuner(
            plan.trainable, tune_config=plan.tune_config(), run_config=plan.run_config()
        )
    with (
        without_tune_loggers(),
        private_api.trial_actors_on_started_workers() if own_ray else contextlib.nullcontext(),
    ):
        tuner.fit()
    return "interrupted" if stop is not None and stop.forwarded else "finished"


# Ray Tune writes, unless this variable is "1" as `fit` starts, a JSON, a CSV and a TensorBoard
# log of every result and the trial's parameters into each trial's folder, and syncs them with
# its state. Nothing reads them (MLflow holds the trials' records), and on the driver they sit
# between a trial's end and the next one's start: a 300-trial sweep of 1-epoch trials took 111 s
# with them, 93 s without (benchmarks/README.md, `sweep_throughput.py`).
TUNE_LOGGERS_OFF = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"
_LOGGERS = threading.Lock()
_logger_users = 0  # sweeps of this process running (`search_async` may overlap them)
_loggers_set_here = False


@contextlib.contextmanager
def without_tune_loggers() -> Iterator[None]:
    """Ray Tune's own per-trial logs off while the block runs (`TUNE_LOGGERS_OFF`); a value the
    user set stays as it is."""
    global _logger_users, _loggers_set_here
    with _LOGGERS:
        if _logger_users == 0 and TUNE_LOGGERS_OFF not in os.environ:
            os.environ[TUNE_LOGGERS_OFF] = "1"
            _loggers_set_here = True
        _logger_users += 1
    try:
        yield
    finally:
        with _LOGGERS:
            _logger_users -= 1
            if _logger_users == 0 and _loggers_set_here:
                os.environ.pop(TUNE_LOGGERS_OFF, None)
                _loggers_set_here = False


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


def cluster_line() -> str:
    """What a sweep that did not start its own Ray says it runs on: `--address`, RAY_ADDRESS
    (a Ray job's entrypoint), or a Ray this process had joined already."""
    resources = ray.cluster_resources()
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    address = ray.get_runtime_context().gcs_address
    return (
        f"ray: joined the Ray cluster at {address}: {nodes} node{'s' if nodes != 1 else ''}, "
        f"{resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs"
    )


def start_ray(sweep: SweepConfig) -> bool:
    """Join `--address`, or start a local Ray sized to this machine (`local_ray`). True if we
    started it."""
    if ray.is_initialized():
        return False
    if sweep.address:
        ray.init(address=sweep.address, **RAY_OPTIONS)
        return True
    start_sweep_ray(sweep)
    return True
