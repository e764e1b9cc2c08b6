"""Sweeps through Ray Client (`--address ray://HOST:PORT`): the sweep's driver runs on the head.

Under Ray Client, Ray Tune runs the Tuner, its callbacks and the searcher on the head anyway, out
of reach of this process. So the whole driver (`run_sweep`: Tuner, Optuna study, MLflow parent
run, result files) runs there as one task, pinned to the head as Tune pins its own; this process
streams its output (Ray Client forwards the cluster's logs) and gets the `SweepOutcome` back.

The dense stage runs first as a task of its own with one trial's resources, so that it trains on
a GPU where trials will (a head often has none). Paths (`--out`, `--cache-dir`, `--data-dir`, a
SQLite tracking store) are read on the cluster: the folder every node reaches (docs/cluster.md).
"""

from __future__ import annotations

import os
import time
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from rich.console import Console

from sparsetune.search.options import SweepConfig
from sparsetune.search.space import SearchSpace
from sparsetune.search.state import SweepState
from sparsetune.search.sweep import SweepOutcome, prepare_dense, run_sweep
from sparsetune.search.trainable import quiet_ray_logs
from sparsetune.train.dense_cache import CachedDense

# The tasks print the sweep's progress to their stderr, which Ray Client prefixes and forwards.
CONSOLE_WIDTH = 160


class DataUnreadable(ValueError):
    """The dataset cannot be read on the cluster: bad input, found where the data is."""


def dense_gpus(sweep: SweepConfig) -> float:
    """GPUs for the dense stage: one where the trials get GPUs or cuda is asked for."""
    wants_cuda = sweep.device == "cuda" or (sweep.device == "auto" and bool(sweep.gpus_per_trial))
    return 1.0 if wants_cuda else 0.0


def _dense_stage(sweep: SweepConfig, space: SearchSpace) -> tuple[CachedDense, int, str]:
    """On a cluster node with one trial's resources: read the data, train (or find) the dense
    model. Returns it, the number of classes, and the device type it trained on."""
    import torch

    from sparsetune.data import load_splits
    from sparsetune.trial import resolve_device

    quiet_ray_logs()
    torch.set_num_threads(max(1, int(sweep.cpus_per_trial)))
    try:
        splits = load_splits(sweep.data_config())
        device = resolve_device(sweep.device)
    except ValueError as error:
        raise DataUnreadable(f"on the cluster: {error}") from None
    dense = prepare_dense(sweep, space, splits, Console(stderr=True, width=CONSOLE_WIDTH))
    return dense, splits.num_classes, device.type


def _sweep_driver(
    sweep: SweepConfig,
    space: SearchSpace,
    dense: CachedDense,
    num_classes: int,
    trial_gpus: float,
    enqueued: list[dict[str, Any]] | None,
    resume: SweepState | None,
) -> SweepOutcome:
    """On the head, holding no CPU (as Tune's own driver task): the sweep itself."""
    quiet_ray_logs()
    return run_sweep(
        sweep,
        space,
        dense,
        Console(stderr=True, width=CONSOLE_WIDTH),
        num_classes=num_classes,
        enqueued=enqueued,
        resume=resume,
        trial_gpus=trial_gpus,
    )


# Ray's client server starts a server process per connection, and that start fails now and then
# ("Initialization failure from server", seen on Ray 2.60 right after another client left): the
# next connection gets a fresh one.
CONNECT_ATTEMPTS = 3


def _connect(address: str, runtime_env: dict[str, Any]) -> None:
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            ray.init(
                address=address, log_to_driver=True, logging_level="ERROR", runtime_env=runtime_env
            )
            return
        except ConnectionAbortedError:
            if attempt == CONNECT_ATTEMPTS:
                raise
            time.sleep(2 * attempt)


def run_through_client(
    sweep: SweepConfig,
    space: SearchSpace,
    *,
    enqueued: list[dict[str, Any]] | None,
    resume: SweepState | None,
) -> SweepOutcome:
    """Connect to the Ray Client server at `sweep.address`, run the dense stage and then the
    sweep on the cluster, and return the outcome. Ctrl-C cancels the sweep's task, which Tune
    answers as at a driver's Ctrl-C: it saves its state, so `--resume` continues it."""
    # Tune's legacy output, as a local sweep's (cli.main): no experiment box. The tasks' trials
    # inherit the variable with the runtime environment.
    quiet = {"env_vars": {"RAY_AIR_NEW_OUTPUT": os.environ.get("RAY_AIR_NEW_OUTPUT", "0")}}
    _connect(sweep.address, runtime_env=quiet)
    running = None
    try:
        head = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        dense_task = ray.remote(_dense_stage).options(
            num_cpus=sweep.cpus_per_trial, num_gpus=dense_gpus(sweep), max_retries=0
        )
        dense, num_classes, device_type = ray.get(dense_task.remote(sweep, space))
        trial_gpus = sweep.gpus_per_trial
        if trial_gpus is None:  # as a local sweep: one GPU a trial where the dense stage had one
            trial_gpus = 1.0 if device_type == "cuda" else 0.0
        driver = ray.remote(_sweep_driver).options(
            num_cpus=0, scheduling_strategy=head, max_retries=0
        )
        running = driver.remote(sweep, space, dense, num_classes, trial_gpus, enqueued, resume)
        outcome = ray.get(running)
        running = None
        return outcome
    except KeyboardInterrupt:
        if running is not None:
            ray.cancel(running)
        raise
    finally:
        ray.shutdown()
