"""Running the real `sparsetune` command in a subprocess, as a user would."""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

import warm_cli

# A small LeNet-300-100 search on synthetic data: what the CLI tests run unless they test names.
SYNTHETIC_RUN = ["--model", "lenet300", "--dataset", "synthetic", "--val-size", "500"]


def run_cli(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    fresh: bool = False,
):
    """Run `sparsetune ARGS` with the test's interpreter; returns the CompletedProcess. Each
    command has a process of its own, forked from one that has imported torch and torchvision
    (warm_cli.py says how that matches a new interpreter); `fresh`: a new interpreter."""
    env = {**os.environ, "SPARSETUNE_OFFLINE": "1", **(env or {})}
    return warm_cli.run(list(args), cwd=cwd, env=env, timeout=timeout, fresh=fresh)


def run_cli_many(calls: dict[str, dict]) -> dict[str, subprocess.CompletedProcess]:
    """Many short `sparsetune` commands, a few at a time: {name: run_cli's keywords, `args` for
    its arguments} -> {name: CompletedProcess}. For tables of refusals."""
    from concurrent.futures import ThreadPoolExecutor

    def run(name: str) -> tuple[str, subprocess.CompletedProcess]:
        call = dict(calls[name])
        return name, run_cli(*call.pop("args"), **call)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return dict(pool.map(run, calls))


# The e2e tests' spaces: one dense epoch and one-epoch retraining, so a trial takes seconds.
# SMALL_SPACE searches magnitude's criterion too; MAGNITUDE_GLOBAL_SPACE only its sparsity.
SMALL_SPACE = """
train: {optimizer: sgd, lr: 0.05, epochs: 1, batch_size: 128}
methods:
  dense: {}
  magnitude:
    criterion: {choices: [std, global]}
    c_fc: {low: 0.5, high: 2.0, when: {criterion: std}}
    sparsity: {low: 0.5, high: 0.95, when: {criterion: global}}
    rounds: {low: 1, high: 2}
    retrain_epochs: 1
"""
MAGNITUDE_GLOBAL_SPACE = """
train: {optimizer: sgd, lr: 0.05, epochs: 1, batch_size: 128}
methods:
  dense: {}
  magnitude:
    criterion: global
    sparsity: {low: 0.3, high: 0.95}
    rounds: {low: 1, high: 2}
    retrain_epochs: 1
"""

# A sweep as the e2e tests run it: two trials at a time, seeded.
SWEEP_COMMON = [*SYNTHETIC_RUN, "--max-concurrent", "2", "--seed", "0"]


def sweep_arguments(
    tmp_path: Path, space: str, trials: int, experiment: str
) -> tuple[list[str], Path]:
    """Write the space text to `tmp_path`; the `search` arguments of a sweep over it (seeded,
    synthetic data, its own out and cache folders under `tmp_path`) and its out folder."""
    (tmp_path / "space.yaml").write_text(space)
    out = tmp_path / "sweep"
    arguments = [
        *SWEEP_COMMON,
        *("--trials", str(trials), "--space", str(tmp_path / "space.yaml")),
        *("--out", str(out), "--cache-dir", str(tmp_path / "cache")),
        *("--experiment", experiment),
    ]
    return arguments, out


def run_sweep_cli(
    tmp_path: Path,
    space: str,
    trials: int,
    experiment: str,
    *extra: str,
    env: dict[str, str] | None = None,
    timeout: float = 600,
):
    """`sparsetune search` over the space text `space`; asserts success, returns (result, out)."""
    arguments, out = sweep_arguments(tmp_path, space, trials, experiment)
    result = run_cli("search", *arguments, *extra, cwd=tmp_path, env=env, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, out


def sweep_runs(out: Path, experiment: str):
    """(client, parent runs, child runs) of the sweep's MLflow store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def sweep_rows(out: Path) -> list[dict]:
    with (out / "trials.csv").open() as handle:
        return list(csv.DictReader(handle))


def assert_one_error_line(result, words) -> None:
    """The CLI refused its input as it must: exit code 2, one `sparsetune: error:` line on stderr
    holding each of `words`, and no traceback anywhere."""
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sparsetune: error: ")
    for word in words:
        assert word in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def run_enqueued_sweep(
    tmp_path: Path, space: str, points: str, trials: int, experiment: str, *extra: str
):
    """`run_sweep_cli` one trial at a time, the YAML `points` enqueued first."""
    (tmp_path / "points.yaml").write_text(points)
    enqueue = ("--max-concurrent", "1", "--enqueue", str(tmp_path / "points.yaml"))
    return run_sweep_cli(tmp_path, space, trials, experiment, *extra, *enqueue)
