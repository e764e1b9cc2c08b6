"""A sweep on a real two-node Ray cluster on this machine, joined with --address, with its result
folders under --storage, that loses a node in the middle and still accounts for every trial.

The nodes are `ray start --block` processes, each in a session of its own, so that the test
stops exactly what it started: the worker node's process group is killed with SIGKILL (a machine
that dies, not one that shuts down), the head's is stopped at the end, whatever happens."""

from __future__ import annotations

import csv
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from cli_helpers import SYNTHETIC_RUN, sweep_runs
from cluster_helpers import free_port, ray_node, short_temp_dir, stop, wait_for_nodes

pytestmark = pytest.mark.slow

# Long enough trials (two rounds of two retraining epochs) for the kill to land in one.
LONG_TRIAL_SPACE = """
train: {optimizer: sgd, lr: 0.05, epochs: 1, batch_size: 128}
methods:
  magnitude:
    criterion: global
    sparsity: {low: 0.3, high: 0.95}
    rounds: 2
    retrain_epochs: 2
"""
TRIALS = 3


def test_a_sweep_on_two_nodes_survives_losing_one(tmp_path):
    port = free_port()
    address = f"127.0.0.1:{port}"
    token = {"RAY_AUTH_TOKEN": secrets.token_hex(32)}
    # A dead node is noticed after a few missed health checks: a second apart, not Ray's default.
    node_env = {
        **os.environ,
        **token,
        "RAY_AUTH_MODE": "token",
        "RAY_health_check_period_ms": "1000",
        "RAY_health_check_failure_threshold": "3",
    }
    ray_temp = short_temp_dir()
    (tmp_path / "space.yaml").write_text(LONG_TRIAL_SPACE)
    storage = tmp_path / "shared"  # what would be an NFS mount on real machines
    head = worker = sweep = None
    stderr_lines: list[str] = []
    both_running = threading.Event()
    try:
        head = ray_node(
            "--head",
            f"--port={port}",
            "--include-dashboard=false",  # a head-only option: a worker node refuses it
            f"--temp-dir={ray_temp}",
            env=node_env,
        )
        worker = ray_node(f"--address={address}", f"--temp-dir={ray_temp}", env=node_env)
        wait_for_nodes(address, 2, node_env)
        sweep = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sparsetune.cli",
                "search",
                *SYNTHETIC_RUN,
                "--trials",
                str(TRIALS),
                "--max-concurrent",
                "2",
                # Two CPUs a trial on nodes of two: one trial per node, so two running trials
                # means one of them runs on the worker node.
                "--cpus-per-trial",
                "2",
                "--space",
                str(tmp_path / "space.yaml"),
                "--experiment",
                "cluster-loss",
                "--address",
                address,
                "--storage",
                str(storage),
            ],
            cwd=tmp_path,
            env={**os.environ, **token, "SPARSETUNE_OFFLINE": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

        def read_progress() -> None:
            for line in sweep.stderr:
                stderr_lines.append(line)
                if re.search(r"\b2 running\b", line):
                    both_running.set()

        reader = threading.Thread(target=read_progress, daemon=True)
        reader.start()
        assert both_running.wait(150), "two trials never ran at once:\n" + "".join(stderr_lines)
        time.sleep(1.5)  # into the trials' training
        stop(worker, signal.SIGKILL)

        sweep.wait(240)
        reader.join(30)  # the reader holds stderr: it reads to the end once the sweep exits
        log = "".join(stderr_lines)
        assert sweep.returncode == 0, log[-4000:]
    finally:
        if sweep is not None and sweep.poll() is None:
            sweep.kill()
            sweep.wait(30)
        stop(worker, signal.SIGKILL)
        stop(head, signal.SIGTERM)
        shutil.rmtree(ray_temp, ignore_errors=True)

    # --storage holds the sweep folder, the dense cache and Ray's results.
    out = storage / "cluster-loss"
    assert (out / "pareto.json").is_file() and (out / "ray").is_dir()
    assert len([p for p in (storage / "cache" / "dense").iterdir() if p.is_dir()]) == 1

    # Every trial accounted for: finished, or failed with a reason; none lost.
    meta = json.loads((out / "pareto.json").read_text())
    counts = meta["trials"]
    assert counts["finished"] + counts["failed"] == TRIALS, (counts, log[-3000:])
    with (out / "trials.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    finished = {r["trial_id"] for r in rows if r["status"] == "ok"}
    failed = {r["trial_id"]: r["error"] for r in rows if r["status"] == "failed"}
    assert len(failed) == counts["failed"]
    assert all(reason.strip() for reason in failed.values()), failed
    assert len(finished | set(failed)) == TRIALS, rows
    # The kill hit a running trial: it failed with its reason, or Ray retried it (FailureConfig)
    # and wrote the loss into the trial's error file first. Ray words the loss of a trial's
    # actor with its node in two ways, depending on which it notices first: the node died, or
    # the actor is unavailable (ActorUnavailableError; seen once under load).
    errors = [f.read_text() for f in (out / "ray").rglob("error.txt")]
    lost = ("node has died", "is unavailable")
    assert failed or any(words in text for text in errors for words in lost), (errors, log[-3000:])
    assert f"{counts['finished']} done, 0 running, {counts['failed']} failed of {TRIALS}" in log

    # Each trial trained with as many torch threads as it holds CPUs, read inside the worker.
    _, _, children = sweep_runs(out, "cluster-loss")
    assert len(children) >= TRIALS
    assert {c.data.tags["torch_threads"] for c in children} == {"2"}
