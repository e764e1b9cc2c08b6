"""`sparsetune.session()`: one local Ray for several sweeps of a process, with each next sweep's
trial workers started and loaded while nothing else runs.

A sweep on its own starts Ray for itself, its trial workers importing torch, Ray Tune and MLflow's
store (about 3 CPU-seconds each) while it sets up (`local_ray.started_early`), and stops it at
its end. A session starts Ray once, with one Python worker a CPU, each importing those modules as
it starts and kept waiting for the first sweep (`local_ray.start_local_ray`), and after each
sweep has Ray start as many new ones as that sweep ran at once (`local_ray.start_waiting_workers`):
the next sweep's trials begin in processes that are ready, with nothing to start. Only for a Ray
the session starts, so never on a cluster.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import ray

from sparsetune.search.local_ray import (
    driver_modules,
    start_local_ray,
    start_waiting_workers,
    stop_ray,
    trial_modules,
)

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
            start_local_ray(  # its first sweep's trials: at most one a CPU
                gpus,
                preload=trial_modules(None),
                meanwhile=driver_modules(None),
                workers=os.cpu_count() or 1,
            )
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
    if _active:
        start_waiting_workers(workers)
