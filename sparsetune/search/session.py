"""`sparsetune.session()`: one local Ray for several sweeps of a process, with each next sweep's
trial workers started and loaded while nothing else runs.

A sweep on its own starts Ray, and each of its trial workers is a new process that imports torch,
Ray Tune and MLflow's store before its first batch (about 3 CPU-seconds; Ray Tune's trial actors
end with their sweep). A session starts Ray once, with its Python workers importing those modules
as they start (`private_api.preloading_options`), and after each sweep asks Ray for as many new
workers as that sweep ran at once (`private_api.prestart_workers`): the next sweep's trials begin
in processes that are ready. Only for a Ray the session starts, so never on a cluster.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

import ray

from sparsetune.search import private_api
from sparsetune.search.tuner import mlflow_store_module, start_local_ray, stop_ray

logger = logging.getLogger(__name__)

# What a trial worker imports before its first batch. Ray logs a module that fails to import in
# the worker's own log and goes on; the trial then imports it as it would without a session.
TRIAL_MODULES = (
    "torch",
    "ray.tune",
    "sparsetune.search.trainable",
    "sparsetune.tracking.trial_run",
    "mlflow.store.tracking.sqlalchemy_store",
)
# How long workers started for the next sweep wait for it. After that, Ray ends the idle ones
# beyond one per CPU, as it does any idle worker.
KEEP_ALIVE_S = 600

_LOCK = threading.Lock()
_active = False


def active() -> bool:
    """Whether the Ray of this process is a session's (`session`)."""
    return _active


@contextlib.contextmanager
def session(gpus: int) -> Iterator[None]:
    """A local Ray with every CPU and `gpus` GPUs, up until the block ends, for the sweeps run in
    it. Inside another session, that one serves. ValueError if Ray is up already (a Ray this
    process joined or started otherwise)."""
    global _active
    with _LOCK:
        if _active:
            nested = True
        elif ray.is_initialized():
            raise ValueError(
                "Ray is already running in this process; a session starts its own: call "
                "ray.shutdown() first, or run the sweeps without a session"
            )
        else:
            nested = False
            start_local_ray(gpus, mlflow_store_module(None), preload=TRIAL_MODULES)
            _active = True
    if nested:
        yield
        return
    try:
        yield
    finally:
        with _LOCK:
            _active = False
            stop_ray()


def prepare_next_sweep(workers: int) -> None:
    """Start `workers` trial workers for the session's next sweep; a no-op outside a session.
    A failure costs the next sweep its head start, never the sweep: it is logged, not raised."""
    if not _active:
        return
    try:
        private_api.prestart_workers(workers, KEEP_ALIVE_S)
    except Exception as error:
        logger.warning("no trial workers started ahead: %s: %s", type(error).__name__, error)
