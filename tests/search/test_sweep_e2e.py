"""End to end: the real CLI runs real Ray Tune trials chosen by a real Optuna sampler and recorded
in a real MLflow store, on synthetic data small enough for CI."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest
import torch
from cli_helpers import (
    SMALL_SPACE,
    SYNTHETIC_RUN,
    assert_one_error_line,
    run_cli,
    run_sweep_cli,
    sweep_rows,
    sweep_runs,
)
from cluster_helpers import wait_for_nodes
from safetensors.torch import load_file
from sweep_helpers import ray_trials

from sparsetune.search.pareto import dominates

pytestmark = pytest.mark.slow


DIVERGING_SPACE = """
train: {optimizer: sgd, lr: 10.0, epochs: 0}
methods:
  magnitude:
    criterion: global
    sparsity: 0.5
    rounds: 1
    retrain_epochs: 1
    retrain_lr_factor: {choices: [1.0, 0.001]}
"""


def test_four_trial_pareto_search_records_everything(tmp_path):
    result, out = run_sweep_cli(tmp_path, SMALL_SPACE, trials=4, experiment="e2e")
    assert "Pareto front" in result.stdout
    assert "4 done, 0 running, 0 failed of 4" in result.stderr
    assert "dense: epoch 1/1, loss " in result.stderr  # the driver's dense stage, as it trains
    # No terminal here: a plain line per change, with the time elapsed and the time left, and
    # no escape codes (tests/test_progress_display.py has the terminal's live bar).
    progress = [line for line in result.stderr.splitlines() if line.startswith("trials: ")]
    assert progress and all(" elapsed" in line for line in progress)
    assert any(", ETA " in line for line in progress)
    assert "\x1b[" not in result.stderr + result.stdout

    # MLflow: one parent, four children linked to it, each with params, tags, metrics, ticket.
    client, parents, children = sweep_runs(out, "e2e")
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {
        "pareto.json",
        "trials.csv",
    }
    rows = sweep_rows(out)
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["method"] in ("dense", "magnitude")
        assert len(child.data.tags["config_hash"]) == 16
        assert child.data.params["method"] == child.data.tags["method"]
        history = client.get_metric_history(child.info.run_id, "compression")
        own_rows = [r for r in rows if r["run_id"] == child.info.run_id]
        assert [m.step for m in history] == [int(r["round"]) for r in own_rows]
        for name in ("val_acc", "flops_ratio", "memory_footprint_bytes"):
            assert len(client.get_metric_history(child.info.run_id, name)) == len(own_rows)
        assert all(int(r["memory_footprint_bytes"]) > 0 for r in own_rows)
        files = {a.path for a in client.list_artifacts(child.info.run_id, "ticket")}
        last = own_rows[-1]["round"]
        assert {
            "ticket/init.safetensors",
            f"ticket/round-{last}.safetensors",
            f"ticket/round-{last}-layers.csv",
            f"ticket/round-{last}-architecture.json",
        } <= files
        ticket = load_file(
            client.download_artifacts(
                child.info.run_id, f"ticket/round-{last}.safetensors", str(tmp_path)
            )
        )
        for key, mask in ticket.items():
            if key.startswith("mask."):
                weight = ticket["weight." + key.removeprefix("mask.")]
                assert mask.dtype == torch.bool
                assert (weight[~mask] == 0).all()
        architecture = json.loads(
            Path(
                client.download_artifacts(
                    child.info.run_id, f"ticket/round-{last}-architecture.json", str(tmp_path)
                )
            ).read_text()
        )
        assert architecture["architecture"] == own_rows[-1]["architecture"]

    # pareto.json is exactly the non-dominated set of every (trial, round) in trials.csv.
    front = json.loads((out / "pareto.json").read_text())["front"]
    assert front
    points = [(float(r["val_acc"]), float(r["compression"])) for r in rows if r["status"] == "ok"]
    front_points = {(p["val_acc"], p["compression"]) for p in front}
    for point in front_points:
        assert not any(dominates(other, point) for other in points)
    for point in points:
        if not any(dominates(other, point) for other in points):
            assert point in front_points
    for record in front:
        assert {
            "val_acc",
            "test_acc",
            "test_error",
            "compression",
            "flops_ratio",
            "method",
            "params",
            "run_id",
        } <= set(record)
        assert record["memory_footprint_bytes"] > 0

    # The dense stage was trained once, in one cache entry, for all four trials.
    entries = [p for p in (tmp_path / "cache" / "dense").iterdir() if p.is_dir()]
    assert len(entries) == 1
    assert "trained now" in result.stderr
    assert {c.data.tags["dense_stage"] for c in children} == {f"cache:{entries[0].name}"}

    # Optuna holds the four trials, tagged with the same config hashes as MLflow.
    storage = f"sqlite:///{out / 'optuna.db'}"
    (study_name,) = optuna.get_all_study_names(storage)
    study = optuna.load_study(study_name=study_name, storage=storage)
    assert len(ray_trials(study)) == 4
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert {t.user_attrs["config_hash"] for t in study.trials} == {
        c.data.tags["config_hash"] for c in children
    }


def test_a_diverging_trial_fails_with_its_reason_and_the_sweep_goes_on(tmp_path):
    result, out = run_sweep_cli(tmp_path, DIVERGING_SPACE, trials=4, experiment="nan")
    rows = sweep_rows(out)
    failed = [r for r in rows if r["status"] == "failed"]
    finished = [r for r in rows if r["status"] == "ok"]
    assert failed and finished, rows
    assert all("training loss became nan" in r["error"] for r in failed)
    assert (
        "failed: TrainingDiverged" in result.stderr or "training loss became nan" in result.stderr
    )

    _, _, children = sweep_runs(out, "nan")
    statuses = sorted(c.info.status for c in children)
    assert statuses.count("FAILED") == len(failed)
    assert statuses.count("FINISHED") == len({r["trial_id"] for r in finished})
    for child in children:
        if child.info.status == "FAILED":
            assert "training loss became nan" in child.data.tags["error"]
    # Each failed row points at its own MLflow child run, found by its Ray trial id.
    failed_runs = {c.data.tags["ray_trial_id"]: c.info.run_id for c in children}
    assert {r["trial_id"]: r["run_id"] for r in failed} == {
        r["trial_id"]: failed_runs[r["trial_id"]] for r in failed
    }
    summary = json.loads((out / "pareto.json").read_text())
    assert summary["trials"]["failed"] == len(failed)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_search_joins_an_existing_cluster_with_address(tmp_path):
    """`ray start --head` with token authentication on, as the README tells users to start a
    cluster; the sweep joins it with --address and must send the token. The token travels in
    RAY_AUTH_TOKEN so the test leaves ~/.ray alone. `--block` keeps the head in the foreground
    so the test stops exactly the cluster it started, nothing else on the machine. Before the
    sweep, trials larger than the head's one node are refused against the same cluster."""
    port = _free_port()
    token = {"RAY_AUTH_TOKEN": secrets.token_hex(32)}
    # Ray's Unix sockets live under the temp dir and their paths may not exceed 107 bytes:
    # pytest's tmp_path is too deep for them, so the cluster gets a short folder of its own.
    ray_temp = Path(tempfile.mkdtemp(prefix="st-ray-", dir="/tmp"))
    ray_cli = str(Path(sys.executable).with_name("ray"))
    head = subprocess.Popen(
        [
            ray_cli,
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={ray_temp}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **token, "RAY_AUTH_MODE": "token"},
    )
    try:
        address = f"127.0.0.1:{port}"
        wait_for_nodes(address, 1, {**os.environ, **token, "RAY_AUTH_MODE": "token"})
        # A trial no node can hold is refused before anything is written, not waited for.
        for option, words in [
            (["--cpus-per-trial", "3"], ["--cpus-per-trial 3", "has 2 CPUs"]),
            (["--gpus-per-trial", "1"], ["--gpus-per-trial 1", "has 0 GPUs"]),
        ]:
            refused = run_cli(
                "search",
                *SYNTHETIC_RUN,
                *("--out", "too-big", "--cache-dir", "cache", "--address", address, *option),
                cwd=tmp_path,
                env=token,
            )
            assert_one_error_line(
                refused, [*words, f"the largest node of the cluster at {address}"]
            )
        assert list(tmp_path.iterdir()) == []
        result, out = run_sweep_cli(
            tmp_path, SMALL_SPACE, 2, "cluster", "--address", address, env=token, timeout=300
        )
        assert "2 done, 0 running, 0 failed of 2" in result.stderr
        assert json.loads((out / "pareto.json").read_text())["front"]
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(60)
        shutil.rmtree(ray_temp, ignore_errors=True)
