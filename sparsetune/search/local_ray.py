"""The local Ray that a sweep or a session starts on this machine.

Every CPU, none of the processes a sweep does not use (`private_api.lean_local_node`), Python
workers that import the trial's modules as they start where asked, and the driver importing its
next modules while `ray.init` waits on the processes it starts. A sweep of `sparsetune search`
starts it before it loads Ray Tune and its records' libraries (`started_early`): on a 2-core
machine its workers then import what a trial needs while the driver sets the sweep up
(benchmarks/README.md, `sweep_throughput.py`, eighth step).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import ray

from sparsetune.search import private_api
from sparsetune.search.options import SweepConfig

logger = logging.getLogger(__name__)

# How long workers started ahead for trials wait for them. After that, Ray ends the idle ones
# beyond one per CPU, as it does any idle worker.
KEEP_ALIVE_S = 600

# How sparsetune starts or joins Ray: quiet (its own progress is the user's), no dashboard.
RAY_OPTIONS: dict[str, Any] = {
    "include_dashboard": False,
    "log_to_driver": False,
    "logging_level": "ERROR",
    "configure_logging": True,
}


def mlflow_store_module(tracking_uri: str | None) -> str:
    """The MLflow store module a client of `tracking_uri` loads (the SQL one for a file)."""
    remote = (tracking_uri or "").startswith(("http://", "https://", "databricks"))
    return f"mlflow.store.tracking.{'rest_store' if remote else 'sqlalchemy_store'}"


def trial_modules(tracking_uri: str | None) -> tuple[str, ...]:
    """What a trial worker imports before its first batch. Ray logs a module that fails to import
    in the worker's own log and goes on; the trial then imports it as it would anyway."""
    return (
        "torch",
        "ray.tune",
        "sparsetune.search.trainable",
        "sparsetune.tracking.trial_run",
        mlflow_store_module(tracking_uri),
    )


def start_local_ray(
    gpus: int,
    preload: Sequence[str] = (),
    meanwhile: Sequence[str] = (),
    workers: int | None = None,
) -> None:
    """A local Ray with every CPU and `gpus` GPUs, whose Python workers import `preload` as they
    start (`private_api.worker_options`); this process imports `meanwhile` in a thread while
    `ray.init` waits on the processes it starts. `ray.init` itself imports nothing then
    (`private_api.import_ray_start_modules`): two threads importing the same package at once can
    meet Python's import-lock deadlock detection. `workers`: how many Python workers to start
    for the trials, kept waiting for them (up to `KEEP_ALIVE_S`); None leaves it to Ray (one per
    CPU, ended when idle for long)."""
    options = RAY_OPTIONS | private_api.worker_options(preload, own_prestart=workers is None)
    private_api.import_ray_start_modules()
    with private_api.lean_local_node(), _importing(*meanwhile):
        ray.init(num_cpus=os.cpu_count(), num_gpus=gpus, **options)
        if workers:  # at once: they start while this process imports
            start_waiting_workers(workers)


def start_waiting_workers(count: int) -> None:
    """Start `count` Python workers for trials to come, kept up to `KEEP_ALIVE_S` if idle. A
    failure costs the trials their head start, never the sweep: logged, not raised."""
    try:
        private_api.prestart_workers(count, KEEP_ALIVE_S)
    except Exception as error:
        logger.warning("no trial workers started ahead: %s: %s", type(error).__name__, error)


def trial_slots(sweep: SweepConfig) -> int:
    """How many of the sweep's trials run at once on this machine (at most)."""
    cpus = os.cpu_count() or 1
    return max(1, min(sweep.max_concurrent, sweep.trials, int(cpus // sweep.cpus_per_trial)))


def driver_modules(tracking_uri: str | None) -> tuple[str, ...]:
    """What the driver of a sweep imports next, for its records (MLflow's store for
    `tracking_uri`, Optuna's storage)."""
    return (
        "sparsetune.tracking.mlflow_store",
        "optuna.storages",
        mlflow_store_module(tracking_uri),
    )


def stop_ray() -> None:
    """`ray.shutdown` of the Ray this process started or joined; nothing once it is down."""
    ray.shutdown()


def local_gpus(device: str) -> int:
    """The GPUs a local Ray for trials on `device` gets: every one torch sees, none for cpu."""
    if device == "cpu":
        return 0
    import torch

    return torch.cuda.device_count()


def start_sweep_ray(
    sweep: SweepConfig, preload: Sequence[str] = (), meanwhile: Sequence[str] = ()
) -> None:
    """The local Ray of `sweep`: its GPUs (`local_gpus`), a worker kept waiting for each trial it
    runs at once (`trial_slots`), and `meanwhile` then its records' libraries imported while
    `ray.init` waits (`start_local_ray`)."""
    start_local_ray(
        local_gpus(sweep.device),
        preload=preload,
        meanwhile=(*meanwhile, *driver_modules(sweep.tracking_uri)),
        workers=trial_slots(sweep),
    )


@contextlib.contextmanager
def started_early(sweep: SweepConfig) -> Iterator[bool]:
    """Start the local Ray of `sweep` now, where the sweep would start one (no `--address`, no Ray
    up in this process), before the caller loads the sweep's modules and opens its records:
    they are imported while `ray.init` waits, and Ray's workers import the trial's modules
    meanwhile, so the first trials start in workers that are ready. Yields whether it started
    Ray. The sweep takes this Ray as the one it starts (`run_sweep(ray_started=)`) and stops it
    at its end; the block stops it where the sweep never ran (an error, Ctrl-C)."""
    if sweep.address or ray.is_initialized():
        yield False
        return
    try:
        start_sweep_ray(
            sweep, preload=trial_modules(sweep.tracking_uri), meanwhile=("sparsetune.search.sweep",)
        )
        yield True
    finally:
        stop_ray()  # also a Ray that Ctrl-C left half started


@contextlib.contextmanager
def _importing(*modules: str) -> Iterator[None]:
    """Import `modules` in a thread while the block runs. A module that fails to import here
    fails again, with its error, where it is used."""

    def load() -> None:
        for name in modules:
            with contextlib.suppress(Exception):
                importlib.import_module(name)

    loader = threading.Thread(target=load, name="sparsetune-imports", daemon=True)
    loader.start()
    try:
        yield
    finally:
        loader.join()
