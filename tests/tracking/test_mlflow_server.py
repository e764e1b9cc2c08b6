"""A sweep logged to a real MLflow tracking server (`mlflow server`, SQLite backend, artifacts on
local disk), through `sparsetune search --tracking-uri http://127.0.0.1:PORT`: everything the
review needs arrives on the server, and nothing lands in the sweep folder's own store."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cli_helpers import MAGNITUDE_GLOBAL_SPACE, run_sweep_cli, sweep_rows
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"mlflow server exited: {log.read_text()[-2000:]}"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    pytest.fail(f"mlflow server did not answer in {timeout} s: {log.read_text()[-2000:]}")


def test_a_sweep_logged_to_a_real_tracking_server(tmp_path):
    port = free_port()
    store = tmp_path / "server"
    store.mkdir()
    artifacts = store / "artifacts"
    log = store / "server.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                f"sqlite:///{store / 'mlflow.db'}",
                "--artifacts-destination",
                str(artifacts),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            cwd=store,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            start_new_session=True,
        )
    try:
        uri = f"http://127.0.0.1:{port}"
        wait_until_up(uri, server, log)
        result, out = run_sweep_cli(
            tmp_path, MAGNITUDE_GLOBAL_SPACE, 3, "served", "--tracking-uri", uri
        )
        assert f"MLflow:  {uri}" in result.stdout
        # The sweep folder keeps its result files but no store of its own.
        assert (out / "pareto.png").is_file()
        assert not (out / "mlflow.db").exists() and not (out / "mlartifacts").exists()

        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("served")
        # The server's artifact store, not a file:// path on the sweep's machine.
        assert experiment.artifact_location.startswith("mlflow-artifacts:")
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
        runs = client.search_runs([experiment.experiment_id])
        (parent,) = [r for r in runs if r.data.tags.get("sparsetune.role") == "sweep"]
        children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        assert len(children) == 3 and len(runs) == 4
        assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
        assert all(c.info.status == "FINISHED" for c in children)

        summary = json.loads((out / "pareto.json").read_text())
        assert summary["parent_run_id"] == parent.info.run_id
        # The review: artifacts on the parent, stored where the server keeps artifacts.
        review = {a.path for a in client.list_artifacts(parent.info.run_id, "review")}
        assert review == {"review/pareto.png", "review/pareto.html", "review/front.csv"}
        png = client.download_artifacts(parent.info.run_id, "review/pareto.png", str(tmp_path))
        assert Path(png).read_bytes().startswith(b"\x89PNG")
        assert list(artifacts.rglob("review/pareto.png"))
        assert (
            "![Pareto front](get-artifact?path=review%2Fpareto.png"
            in (parent.data.tags["mlflow.note.content"])
        )
        # The hypervolume: a metric whose latest value is the sweep's.
        assert parent.data.metrics["hypervolume"] == pytest.approx(summary["hypervolume"])
        history = client.get_metric_history(parent.info.run_id, "hypervolume")
        assert max(m.step for m in history) == 3  # one point per finished trial
        # Front members filterable by tag.
        on_front = client.search_runs(
            [experiment.experiment_id], filter_string="tags.pareto = 'true'"
        )
        assert {r.info.run_id for r in on_front} == {p["run_id"] for p in summary["front"]}
        off_front = {c.info.run_id for c in children} - {r.info.run_id for r in on_front}
        assert all(client.get_run(run_id).data.tags["pareto"] == "false" for run_id in off_front)
        # Child runs: curves per round, the architecture as a tag, the tickets, the timings.
        rows = sweep_rows(out)
        for child in children:
            own = [r for r in rows if r["run_id"] == child.info.run_id]
            assert child.data.tags["architecture"] == own[-1]["architecture"]
            history = client.get_metric_history(child.info.run_id, "val_acc")
            assert [m.step for m in history] == [int(r["round"]) for r in own]
            files = {a.path for a in client.list_artifacts(child.info.run_id)}
            assert files == {"ticket"}  # no per-trial picture: MLflow charts the rounds
            # Where the trial's time went, recorded with its end (trial/clock.py).
            assert {"time_eval_s", "time_tracking_s"} <= set(child.data.metrics)
    finally:
        stop(server)


def stop(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (mlflow and the uvicorn under it), then SIGKILL to
    whatever is left in it."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    try:
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.wait(30)
