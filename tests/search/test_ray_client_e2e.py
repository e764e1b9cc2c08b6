"""`--address ray://HOST:PORT`: a sweep through Ray Client against a real head node on this
machine, started with its client server. The sweep's driver runs on the head (search/client.py),
its progress reaches the terminal that typed the command, and its results land where a local
sweep's would; bad data on the cluster is still one line and exit code 2."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal

import pytest
from cli_helpers import MAGNITUDE_GLOBAL_SPACE, run_cli, run_sweep_cli, sweep_runs
from cluster_helpers import free_port, ray_node, short_temp_dir, stop, wait_for_nodes

pytestmark = pytest.mark.slow

TRIALS = 3


# Token authentication on, as docs/cluster.md asks; the sweep sends the token it is given.
TOKEN = {"RAY_AUTH_TOKEN": secrets.token_hex(32)}


@pytest.fixture(scope="module")
def client_address():
    """A head node whose Ray Client server listens on a free port; stopped afterwards."""
    port, client_port = free_port(), free_port()
    ray_temp = short_temp_dir()
    # The cluster's own environment: the offline switch is read where the data is read.
    env = {**os.environ, **TOKEN, "RAY_AUTH_MODE": "token", "SPARSETUNE_OFFLINE": "1"}
    head = ray_node(
        "--head",
        f"--port={port}",
        f"--ray-client-server-port={client_port}",
        "--include-dashboard=false",
        f"--temp-dir={ray_temp}",
        env=env,
    )
    try:
        wait_for_nodes(f"127.0.0.1:{port}", 1, env)
        yield f"ray://127.0.0.1:{client_port}"
    finally:
        stop(head, signal.SIGTERM)
        shutil.rmtree(ray_temp, ignore_errors=True)


def test_a_sweep_through_ray_client_runs_on_the_head_and_reports_back(tmp_path, client_address):
    result, out = run_sweep_cli(
        tmp_path,
        MAGNITUDE_GLOBAL_SPACE,
        TRIALS,
        "through-client",
        "--address",
        client_address,
        env=TOKEN,
        timeout=400,
    )
    # The driver task's progress reaches this terminal, prefixed by Ray with the task's name;
    # Ray's per-round checkpoint lines and Tune's experiment box do not.
    assert "_dense_stage" in result.stderr and "_sweep_driver" in result.stderr
    assert f"{TRIALS} done, 0 running, 0 failed of {TRIALS}" in result.stderr
    assert "Checkpoint successfully created" not in result.stderr
    assert "Configuration for experiment" not in result.stdout + result.stderr
    # The front comes back to this process and is printed here.
    assert "Pareto front: through-client" in result.stdout
    assert f"results: {out / 'pareto.json'}" in result.stdout

    meta = json.loads((out / "pareto.json").read_text())
    assert meta["trials"]["finished"] == TRIALS and meta["trials"]["failed"] == 0
    _, parents, children = sweep_runs(out, "through-client")
    assert len(parents) == 1 and len(children) == TRIALS
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert parents[0].info.status == "FINISHED"


def test_data_missing_on_the_cluster_is_one_line_and_writes_nothing(tmp_path, client_address):
    out = tmp_path / "sweep"
    result = run_cli(
        "search",
        "--model",
        "lenet300",
        "--dataset",
        "mnist",
        "--data-dir",
        str(tmp_path / "no-data"),
        "--trials",
        "2",
        "--out",
        str(out),
        "--address",
        client_address,
        cwd=tmp_path,
        env=TOKEN,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    error_lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and "Traceback" not in result.stderr
    assert "on the cluster: dataset 'mnist'" in error_lines[0]
    assert str(tmp_path / "no-data") in error_lines[0]
    assert not out.exists()
