"""Ray's recommended way to run Tune remotely, the Jobs API: `ray job submit -- sparsetune sweep
spec.yaml` (and `-- sparsetune search ...`) against a real head on this machine, started as
docs/cluster.md says (`ray start --head`, dashboard on, token authentication on). The entrypoint
runs on the cluster with RAY_ADDRESS set by Ray, and the sweep joins that cluster (no
`--address` needed) instead of starting a Ray of its own."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import MAGNITUDE_GLOBAL_SPACE, sweep_runs
from cluster_helpers import RAY_CLI, free_port, ray_node, short_temp_dir, stop

pytestmark = pytest.mark.slow

# Token authentication on, as docs/cluster.md asks: the head and `ray job` both need it.
TOKEN = {"RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_AUTH_MODE": "token"}
VENV_BIN = str(Path(sys.executable).parent)  # where `sparsetune` is installed


@pytest.fixture(scope="module")
def jobs_address():
    """A head with its dashboard (the Jobs API server) on free ports; stopped afterwards."""
    port, dashboard_port = free_port(), free_port()
    ray_temp = short_temp_dir()
    # The cluster's own environment: `sparsetune` on its PATH, data read offline.
    env = {
        **os.environ,
        **TOKEN,
        "SPARSETUNE_OFFLINE": "1",
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    head = ray_node(
        "--head",
        f"--port={port}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
        f"--temp-dir={ray_temp}",
        env=env,
    )
    address = f"http://127.0.0.1:{dashboard_port}"
    try:
        _wait_for_jobs_api(address)
        yield address
    finally:
        stop(head, signal.SIGTERM)
        shutil.rmtree(ray_temp, ignore_errors=True)


# How long submissions are retried while the head's job agent starts (it registers after the
# Jobs API first answers; slowly on a loaded machine).
AGENT_WAIT_S = 120


def _wait_for_jobs_api(address: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    listed = None
    while time.monotonic() < deadline:
        listed = _ray_job("list", "--address", address, timeout=60)
        if listed.returncode == 0:
            return
        time.sleep(2)
    raise AssertionError(f"the Jobs API never answered at {address}:\n{listed and listed.stderr}")


def _ray_job(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`ray job ARGS` as a user types it, with the cluster's token."""
    return subprocess.run(
        [RAY_CLI, "job", *args],
        env={**os.environ, **TOKEN},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _submit(address: str, *command: str) -> str:
    """`ray job submit -- sparsetune COMMAND`, waited for: the job's logs, once it succeeded."""
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        submitted = _ray_job("submit", "--address", address, "--", "sparsetune", *command)
        logs = submitted.stdout + submitted.stderr
        # A head answers `ray job list` before its node's job agent has registered; Ray says
        # to try again later, and a user would.
        if "No available agent to submit job" not in logs or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert submitted.returncode == 0, logs[-4000:]
    assert "succeeded" in logs.lower(), logs[-4000:]
    return logs


def test_ray_job_submit_runs_a_sweep_spec_and_a_search_on_the_cluster(tmp_path, jobs_address):
    (tmp_path / "space.yaml").write_text(MAGNITUDE_GLOBAL_SPACE)
    out = tmp_path / "nightly"
    (tmp_path / "spec.yaml").write_text(
        f"model: lenet300\ndataset: synthetic\nval_size: 500\nspace: {tmp_path / 'space.yaml'}\n"
        f"trials: 2\nmax_concurrent: 2\nseed: 0\nout: {out}\ncache_dir: {tmp_path / 'cache'}\n"
        "experiment: by-job\n"
    )
    logs = _submit(jobs_address, "sweep", str(tmp_path / "spec.yaml"))
    # The sweep joined the job's cluster: it says so, and started no Ray of its own.
    assert "2 done, 0 running, 0 failed of 2" in logs
    assert "joined the Ray cluster" in logs, logs[-4000:]
    meta = json.loads((out / "pareto.json").read_text())
    assert meta["trials"]["finished"] == 2 and meta["front"]
    assert json.loads((out / "sweep-state.json").read_text())["status"] == "finished"
    _, parents, children = sweep_runs(out, "by-job")
    assert len(parents) == 1 and len(children) == 2

    # `search` the same way, its result as one JSON object in the job's logs.
    searched = tmp_path / "searched"
    logs = _submit(
        jobs_address,
        "search",
        *("--model", "lenet300", "--dataset", "synthetic", "--val-size", "500"),
        *("--space", str(tmp_path / "space.yaml"), "--trials", "1", "--seed", "0"),
        *("--out", str(searched), "--cache-dir", str(tmp_path / "cache"), "--json"),
    )
    (line,) = [line for line in logs.splitlines() if line.startswith('{"sweep_dir"')]
    printed = json.loads(line)
    assert printed["sweep_dir"] == str(searched) and printed["trials"]["finished"] == 1
