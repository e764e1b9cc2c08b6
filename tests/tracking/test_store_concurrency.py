"""Two sweeps that open one new SQLite store at the same moment (cron and a terminal, two
terminals) both get the one experiment: neither dies in MLflow's table migration or on an
experiment the other created a moment before."""

from __future__ import annotations

import multiprocessing

from mlflow.tracking import MlflowClient

from sparsetune.tracking.mlflow_store import MlflowStore


def _open(uri: str, start, results) -> None:
    start.wait()  # all processes open the store at once
    results.put(MlflowStore.open(uri, "shared", None).experiment_id)


def test_processes_opening_one_new_store_at_once_share_its_experiment(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    processes = [context.Process(target=_open, args=(uri, start, results)) for _ in range(3)]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(timeout=240)
    assert [process.exitcode for process in processes] == [0, 0, 0]
    ids = {results.get(timeout=5) for _ in processes}
    assert len(ids) == 1
    assert MlflowClient(uri).get_experiment_by_name("shared").experiment_id in ids
