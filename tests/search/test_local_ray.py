"""The local Ray a sweep starts: the trials run in the workers Ray started ahead of them (not in
new ones, each with a runtime env of Tune's), and Ray starts none of the processes a sweep does
not use (dashboard head, autoscaler monitor, log monitor). `sparsetune search` starts it before
the sweep's set-up, its workers importing the trial's modules meanwhile, and stops it where the
sweep never runs. A real Ray and a real Tuner."""

from __future__ import annotations

import os
import sys
import time

import psutil
import pytest
import ray
from cli_helpers import MAGNITUDE_GLOBAL_SPACE
from python_script import script_json
from ray import tune

from sparsetune.search import private_api
from sparsetune.search.local_ray import (
    mlflow_store_module,
    start_local_ray,
    started_early,
    stop_ray,
    trial_modules,
)
from sparsetune.search.options import SweepConfig
from sparsetune.search.tuner import start_ray

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


def idle_workers(count: int) -> set[int]:
    """The pids of the Python workers waiting for work, once `count` of them are up."""
    waiting: set[int] = set()
    for _ in range(300):
        waiting = {process.pid for process in ray_processes("ray::IDLE")}
        if len(waiting) >= count:
            break
        time.sleep(0.1)
    return waiting


def test_trials_run_in_the_workers_started_ahead(tmp_path):
    slots = os.cpu_count() or 1
    sweep = SweepConfig(model="lenet300", max_concurrent=slots, device="cpu")

    def probe(config: dict) -> None:
        tune.report({"pid": os.getpid()})

    assert start_ray(sweep)
    try:
        # one a trial at once, kept waiting for them (here longer than Ray keeps idle ones)
        started_ahead = idle_workers(slots)
        time.sleep(3)
        assert len(started_ahead) == slots, "Ray started no worker ahead of the trials"
        with private_api.trial_actors_on_started_workers():
            results = tune.Tuner(
                probe,
                tune_config=tune.TuneConfig(num_samples=slots, max_concurrent_trials=1),
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
    assert len(rows) == slots and not results.errors
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
    @ray.remote(num_cpus=0)  # as many at once as there are waiting workers
    class Probe:
        def where(self) -> tuple[int, bool]:
            return os.getpid(), "sparsetune.search.trainable" in sys.modules

    start_local_ray(0, preload=("sparsetune.search.trainable",))
    try:
        waiting = idle_workers(os.cpu_count() or 1)  # Ray's own, one per CPU
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


RAY_START_IMPORTS = """
import json, sys
import ray
from sparsetune.search import private_api

if sys.argv[1] == "first":
    private_api.import_ray_start_modules()
before = set(sys.modules)
options = private_api.worker_options((), own_prestart=False)
with private_api.lean_local_node():
    ray.init(num_cpus=1, num_gpus=0, include_dashboard=False, log_to_driver=False, **options)
    private_api.prestart_workers(1, keep_alive_s=60)
imported = sorted(set(sys.modules) - before)
ray.shutdown()
print(json.dumps(imported))
"""


@pytest.mark.parametrize("first", ["first", "not first"])
def test_starting_ray_imports_nothing_once_its_modules_are_in(tmp_path, first):
    # A new process (its first ray.init). While ray.init and prestart_workers run, a thread
    # imports the driver's modules (`local_ray.start_local_ray`); MLflow imports opentelemetry,
    # as ray.init does.
    imported = script_json(RAY_START_IMPORTS, first, cwd=tmp_path, timeout=120)
    if first == "first":
        assert imported == []
    else:  # what the call leaves out: there is something to import first
        assert any(name.startswith("opentelemetry") for name in imported)


def test_a_sweeps_ray_started_early_readies_its_workers_and_stops_with_the_block(tmp_path):
    @ray.remote(num_cpus=0)
    class Probe:
        def loaded(self, modules: list[str]) -> tuple[int, list[str]]:
            return os.getpid(), [name for name in modules if name in sys.modules]

    sweep = SweepConfig(model="lenet300", device="cpu", out=tmp_path / "sweep")
    modules = list(trial_modules(sweep.tracking_uri))
    assert not ray.is_initialized()
    with started_early(sweep) as started:
        assert started and ray.is_initialized()
        assert ray.cluster_resources().get("CPU") == os.cpu_count()
        waiting = idle_workers(os.cpu_count() or 1)
        probes = [Probe.remote() for _ in waiting]
        placed = ray.get([probe.loaded.remote(modules) for probe in probes])
        everything = ray_processes("ray")
    assert not ray.is_initialized()  # the sweep never took it: the block stopped it
    assert not still_running(everything, timeout_s=20)
    assert waiting and {pid for pid, _ in placed} <= waiting
    assert all(loaded == modules for _, loaded in placed)  # the trial's modules, before any trial
    assert not (tmp_path / "sweep").exists()


def test_a_sweeps_early_ray_stops_when_the_block_fails(tmp_path):
    sweep = SweepConfig(model="lenet300", device="cpu", out=tmp_path / "sweep")
    with pytest.raises(KeyboardInterrupt), started_early(sweep) as started:
        assert started
        raise KeyboardInterrupt  # Ctrl-C while the sweep sets up
    assert not ray.is_initialized()


def test_no_early_ray_where_the_sweep_would_not_start_one(tmp_path):
    on_cluster = SweepConfig(model="lenet300", device="cpu", address="127.0.0.1:6379")
    with started_early(on_cluster) as started:  # a cluster's: joined later, as before
        assert not started and not ray.is_initialized()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        with started_early(SweepConfig(model="lenet300", device="cpu")) as started:
            assert not started  # a Ray of this process's (a session's, the user's) serves
        assert ray.is_initialized()  # and is left up
    finally:
        ray.shutdown()


def synthetic_search(folder, space: str, **options):
    """`sparsetune.search` of LeNet-300-100 on synthetic data in this process, outside a session
    (Ray not up before it), with the `space` text."""
    import sparsetune

    (folder / "space.yaml").write_text(space)
    assert not ray.is_initialized()
    return sparsetune.search(
        "lenet300",
        data="synthetic",
        val_size=500,
        space=folder / "space.yaml",
        out=folder / "sweep",
        cache_dir=folder / "cache",
        device="cpu",
        **options,
    )


def test_a_sweep_refused_after_its_ray_started_leaves_no_ray_up(tmp_path):
    from sparsetune.app.errors import BadInput

    diverging = "train: {lr: 10.0, epochs: 2}\nmethods:\n  dense: {}\n"
    with pytest.raises(BadInput, match="the dense stage diverged"):  # trained once Ray is up
        synthetic_search(tmp_path, diverging, trials=1, quiet=True)
    assert not ray.is_initialized()
    assert not (tmp_path / "sweep").exists()


def test_a_local_sweep_runs_on_the_ray_it_started_early_and_stops_it(tmp_path, capsys):
    run = synthetic_search(
        tmp_path, MAGNITUDE_GLOBAL_SPACE, trials=2, max_concurrent=1, enqueue="none"
    )
    said = capsys.readouterr()
    assert len(run.front) >= 1
    # its own Ray, not one it joined: no cluster line, and down when the call returns
    assert "joined the Ray cluster" not in said.out + said.err
    assert "trials: 2 done" in said.out + said.err
    assert not ray.is_initialized()
