"""The Ray Tune function trainable: flat config in, one `tune.report` per pruning round out.

It parses the flat config into a typed `TrialConfig` before any work, so a bad value fails the
trial at once with a readable reason. A failure (an exception, or a loss gone NaN) marks the
MLflow child run FAILED with the reason as a tag and is re-raised: Ray records the trial as
errored, Optuna as failed, and the sweep goes on.

Faults: each round's report carries a checkpoint (the model's state after the round). A trial
that Ray restarts (its worker died and FailureConfig allows a retry, or the sweep was resumed
after its driver was killed) gets that checkpoint back, continues after that round where its
plan can (`Plan.continues_after`), and records into the MLflow run it started before.
An error the trial raised itself is not worth retrying: see `_record_failure`.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import socket
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from ray import tune

from sparsetune.atomic import atomic_write_bytes
from sparsetune.config import DataConfig, TrainConfig, TrialConfig
from sparsetune.data.shared import adopt_payload
from sparsetune.identity import trial_hash
from sparsetune.pruning import METHODS
from sparsetune.search.objects import Shipped, register_shipped, shipped_for
from sparsetune.search.records import RAY_TRIAL_TAG
from sparsetune.search.space import params_from_flat
from sparsetune.train.allocator import keep_freed_memory
from sparsetune.train.dense_cache import CachedDense
from sparsetune.trial import RoundResult, TrialContext, start_trial
from sparsetune.trial.clock import PhaseClock

# When this process loaded the trial's code: at its start in a worker `sparsetune.session()`
# readied, else as its first trial began (the `worker_loaded` tag of each trial's run).
LOADED_AT = time.time()


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
    weights: Path | None = None  # --weights: the dense stage is this file (models.weights)
    # The Python objects (`model=`, `data=` of the API) that `model` and `data` name, as bytes a
    # worker registers under the same names (search.objects); filled from this process's.
    objects: tuple[Shipped, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.objects:
            object.__setattr__(self, "objects", shipped_for((self.model, self.data.name)))

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
            weights=self.weights,
        )


def trial_identity(flat: dict[str, Any], template: TrialTemplate) -> tuple[TrialConfig, str]:
    """The trial's typed config, built once per trial, and its hash: the one `DefineByRun`
    computed from the same flat config on the driver, which Ray's trial config carries (so the
    Optuna trial, Ray's config and the MLflow run are tagged with one value by construction), or
    computed here for a config that came without it."""
    config = template.trial_config(flat)
    carried = flat.get("config_hash")
    return config, carried if isinstance(carried, str) and carried else trial_hash(config)


def quiet_ray_logs() -> None:
    """Ray's INFO lines in a worker ("Checkpoint successfully created ...", one a round) reach
    the user under Ray Client, which forwards workers' logs; a local sweep's driver sets Ray's
    level to ERROR the same way (`ray.init(logging_level=...)`)."""
    logging.getLogger("ray").setLevel(logging.ERROR)


def sparsetune_trial(
    flat: dict[str, Any], template: TrialTemplate, data: dict[str, Any] | None = None
) -> None:
    """One trial in a Ray worker. `data`: the sweep's splits from the object store
    (`data/shared.py`), or None where each worker loads its own (streamed data)."""
    clock = PhaseClock()
    torch.set_num_threads(template.threads)
    keep_freed_memory()  # the worker process trains: reuse freed blocks
    quiet_ray_logs()
    register_shipped(template.objects)  # before the config names them
    with clock.phase("data"):
        adopt_payload(template.data, data)
    config, config_hash = trial_identity(flat, template)
    trial_id = tune.get_context().get_trial_id()
    workdir = template.sweep_dir / "trials" / trial_id
    _raise_recorded_failure(workdir)
    restored = _restored_round(tune.get_checkpoint())
    with clock.phase("tracking"):
        run = _child_run(template, config, config_hash, trial_id, workdir)
    plan = METHODS[config.method](config.method_config()).plan()
    if restored is not None and plan.finished_after(restored[0]):
        # Killed after its last report, before Ray saw it end: Ray's last result is that
        # report (restored with the checkpoint), so there is nothing to run again.
        if run is not None:
            run.finish()
        return
    context: TrialContext | None = None

    def on_round(result: RoundResult) -> None:
        if run is not None:
            with clock.phase("tracking"):
                run.record_round(result)
        metrics = result.metrics() | {
            "config_hash": config_hash,
            "run_id": run.run_id if run else "",
            "method": config.method,
        }
        assert context is not None  # on_round is only called from context.run()
        with clock.phase("report"):
            _report_with_checkpoint(metrics, result.round, *context.round_state())

    def on_dense(dense: CachedDense) -> None:
        if run is not None:  # shows that trials share the cached dense stage
            run.set_tags(
                {"dense_stage": f"{'trained' if dense.trained_here else 'cache'}:{dense.key}"}
            )

    try:
        context = start_trial(
            config,
            cache_dir=template.cache_dir,
            workdir=workdir,
            on_round=on_round,
            on_dense=on_dense,
            clock=clock,
        )
        if restored is not None and plan.continues_after(restored[0]):
            context.restore_round(restored[1], restored[2], restored[0])
        context.run()
        if run is not None:
            run.finish(clock)
    except BaseException as error:
        if isinstance(error, Exception):
            _record_failure(workdir, error)
        if run is None:
            raise
        if isinstance(error, SystemExit) and not error.code:
            # Ray stops a trial with sys.exit(0) at its next report: an early stop or the sweep's
            # own stop, not a failure. The run stays RUNNING: a stopped sweep's resume continues
            # it, and a finished sweep ends it (`SweepRecords.close`).
            run.run.log_metrics(clock.metrics())
        else:
            run.fail(error, clock)
        raise


CHECKPOINT_STATE = "state.pt"
CHECKPOINT_ROUND = "round.json"
FAILURE_FILE = "failure.pickle"


def _report_with_checkpoint(
    metrics: dict[str, Any],
    round_index: int,
    state: dict[str, torch.Tensor],
    counters: dict[str, int],
) -> None:
    """Report a round to Ray with the trial's state as its checkpoint: a trial whose worker
    dies, or whose sweep's driver is killed, continues after its last reported round
    (CheckpointConfig(num_to_keep=1) in the sweep also makes each checkpoint save Ray's
    experiment state at once)."""
    with tempfile.TemporaryDirectory(prefix="sparsetune-round-") as folder:
        torch.save(state, Path(folder) / CHECKPOINT_STATE)
        (Path(folder) / CHECKPOINT_ROUND).write_text(json.dumps({"round": round_index, **counters}))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def _restored_round(
    checkpoint: tune.Checkpoint | None,
) -> tuple[int, dict[str, torch.Tensor], dict[str, int]] | None:
    """(round, model state, counters) of the checkpoint Ray restarted this trial from, if any."""
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        counters = json.loads((Path(folder) / CHECKPOINT_ROUND).read_text())
        state = torch.load(Path(folder) / CHECKPOINT_STATE, weights_only=True)
    return int(counters.pop("round")), state, counters


def _record_failure(workdir: Path, error: Exception) -> None:
    """Keep the trial's own error (a bad config, a loss gone NaN) in its folder.

    Ray retries a failed trial up to FailureConfig(max_failures) times, and cannot tell a worker
    that died (worth retrying from the checkpoint) from an error the trial raised (the same again
    on every try). So the trial tells: a retry that finds this file raises the same error at
    once, without training, and the trial ends failed with its reason."""
    try:
        payload = pickle.dumps(error)
        pickle.loads(payload)
    except Exception:
        payload = pickle.dumps(RuntimeError(f"{type(error).__name__}: {error}"))
    workdir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(workdir / FAILURE_FILE, payload)


def _raise_recorded_failure(workdir: Path) -> None:
    path = workdir / FAILURE_FILE
    if path.is_file():
        raise pickle.loads(path.read_bytes())


def _child_run(
    template: TrialTemplate, config: TrialConfig, config_hash: str, trial_id: str, workdir: Path
):
    """The trial's MLflow child run: the one it started before, when Ray restarted it (same Ray
    trial id, tag `ray_trial_id`), else a new one. So a retried or resumed trial never records
    a second run."""
    if template.tracking_uri is None or template.experiment_id is None:
        return None
    from sparsetune.tracking.mlflow_store import MlflowStore
    from sparsetune.tracking.trial_run import TrialRun

    store = MlflowStore(template.tracking_uri, template.experiment_id)
    name = f"{config.method}-{trial_id}"
    if template.parent_run_id is not None:
        earlier = store.find_child(template.parent_run_id, RAY_TRIAL_TAG, trial_id)
        if earlier is not None:
            return TrialRun.resume(earlier, workdir, name)
    return TrialRun.start(
        store,
        name,
        config,
        config_hash,
        workdir,
        parent=template.parent_run_id,
        # Read back in the worker: the thread count the trial really trains with (its CPU share).
        tags={
            RAY_TRIAL_TAG: trial_id,
            "torch_threads": str(torch.get_num_threads()),
            # Which process ran it: a reused worker runs several trials.
            "worker": f"{socket.gethostname()}:{os.getpid()}",
            "worker_loaded": datetime.fromtimestamp(LOADED_AT, UTC).isoformat("T", "milliseconds"),
        },
    )
