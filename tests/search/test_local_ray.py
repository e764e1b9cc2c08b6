"""The local Ray a sweep starts: the trials run in the workers Ray started ahead of them (not in
new ones, each with a runtime env of Tune's), and Ray starts none of the processes a sweep does
not use (dashboard head, autoscaler monitor, log monitor). A real Ray and a real Tuner."""

from __future__ import annotations

import os
import time

import psutil
import pytest
import ray
from ray import tune

from sparsetune.search import private_api
from sparsetune.search.options import SweepConfig
from sparsetune.search.tuner import mlflow_store_module, start_ray, stop_ray

pytestmark = pytest.mark.slow


def ray_processes(kind: str) -> list[psutil.Process]:
    """This process's Ray processes whose command line holds `kind`."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if kind in " ".join(process.cmdline()):
                found.append(process)
        except psutil.NoSuchProcess:
            pass
    return found


def still_running(processes: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Those of `processes` still running after up to `timeout_s` (an exited one whose parent
    is gone may stay a zombie until the machine's init reaps it: that one has ended)."""
    _, alive = psutil.wait_procs(processes, timeout=timeout_s)
    running = []
    for process in alive:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                running.append(process)
        except psutil.NoSuchProcess:
            pass
    return running


def test_trials_run_in_the_workers_started_ahead(tmp_path):
    sweep = SweepConfig(model="lenet300", max_concurrent=os.cpu_count(), device="cpu")

    def probe(config: dict) -> None:
        tune.report({"pid": os.getpid()})

    assert start_ray(sweep)
    try:
        # Python workers, by their title once up ("ray::IDLE") or their script before that
        started_ahead = {
            process.pid
            for kind in ("ray::IDLE", "default_worker.py")
            for process in ray_processes(kind)
            if process.name() != "raylet"  # whose command line names the worker's script
        }
        assert started_ahead, "Ray started no worker ahead of the trials"
        with private_api.trial_actors_on_started_workers():
            results = tune.Tuner(
                probe,
                tune_config=tune.TuneConfig(num_samples=2, max_concurrent_trials=1),
                run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
            ).fit()
        started = " ".join(" ".join(p.cmdline()) for p in ray_processes("ray"))
        assert "raylet" in started and "gcs_server" in started  # the probe's processes
        for left_out in ("dashboard/dashboard.py", "monitor.py", "log_monitor.py"):
            assert left_out not in started
        everything = ray_processes("ray")
    finally:
        stop_ray()
    assert not ray.is_initialized()
    assert not still_running(everything, timeout_s=20)
    rows = [result.metrics for result in results]
    assert len(rows) == 2 and not results.errors
    assert {row["pid"] for row in rows} <= started_ahead


def test_ray_is_as_before_once_the_lean_start_is_over():
    from ray._private import node as ray_node
    from ray._private import services

    before = (ray_node.Node.__init__, services.get_node, ray_node.Node.start_api_server)
    with private_api.lean_local_node():
        assert ray_node.Node.__init__ is not before[0]
    assert (ray_node.Node.__init__, services.get_node, ray_node.Node.start_api_server) == before


def test_tunes_own_trial_env_is_back_after_the_sweep():
    from ray.tune.execution import class_cache

    before = (dict(class_cache.DEFAULT_ENV_VARS), set(class_cache.ENV_VARS_TO_PROPAGATE))
    with private_api.trial_actors_on_started_workers():
        with private_api.trial_actors_on_started_workers():  # two sweeps of one process
            assert class_cache.DEFAULT_ENV_VARS == {}
        assert class_cache.DEFAULT_ENV_VARS == {}  # the first sweep still runs
    assert (class_cache.DEFAULT_ENV_VARS, class_cache.ENV_VARS_TO_PROPAGATE) == before
    assert before[0]  # Tune's own: the patch had something to take away


@pytest.mark.parametrize(
    ("uri", "module"),
    [
        (None, "mlflow.store.tracking.sqlalchemy_store"),
        ("sqlite:////tmp/x/mlflow.db", "mlflow.store.tracking.sqlalchemy_store"),
        ("http://127.0.0.1:5000", "mlflow.store.tracking.rest_store"),
    ],
)
def test_the_mlflow_store_the_driver_imports_early_is_the_one_its_client_loads(uri, module):
    assert mlflow_store_module(uri) == module


def test_workers_started_ahead_on_request_have_imported_the_preloaded_modules():
    import sys

    from sparsetune.search.tuner import start_local_ray

    @ray.remote(num_cpus=0)  # as many at once as there are waiting workers
    class Probe:
        def where(self) -> tuple[int, bool]:
            return os.getpid(), "sparsetune.search.trainable" in sys.modules

    start_local_ray(0, mlflow_store_module(None), preload=("sparsetune.search.trainable",))
    try:
        waiting: set[int] = set()
        for _ in range(300):  # the ones Ray starts with itself, one per CPU, once up
            waiting = {process.pid for process in ray_processes("ray::IDLE")}
            if len(waiting) >= (os.cpu_count() or 1):
                break
            time.sleep(0.1)
        private_api.prestart_workers(1, keep_alive_s=60)
        started = set()
        for _ in range(100):  # the raylet starts it in the background
            started = {process.pid for process in ray_processes("ray::IDLE")} - waiting
            if started:
                break
            time.sleep(0.1)
        assert len(started) == 1
        probes = [Probe.remote() for _ in range(len(waiting | started))]
        placed = ray.get([probe.where.remote() for probe in probes])
    finally:
        stop_ray()
    assert started <= {pid for pid, _ in placed}  # an actor took the worker started ahead
    assert all(preloaded for _, preloaded in placed)
