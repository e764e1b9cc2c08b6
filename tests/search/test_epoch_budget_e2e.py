"""End to end, real Ray trials: `--budget-epochs E` ends a sweep once its trials' training
epochs (spent by ended trials, planned by running ones) reach E, the records say what was
spent, and a resumed sweep counts the epochs spent before it stopped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest
from cli_helpers import run_cli, run_sweep_cli, sweep_arguments, sweep_rows, sweep_runs
from sweep_helpers import (
    completed_trials,
    kill_processes_under,
    magnitude_space,
    start_search,
    trials_with_a_round,
)

pytestmark = pytest.mark.slow

BUDGET = 5


def spent_by_trial(out: Path) -> dict[str, int]:
    spent: dict[str, int] = {}
    for row in sweep_rows(out):
        trial, trained = row["trial_id"], int(row["epochs_trained"])
        spent[trial] = max(spent.get(trial, 0), trained)
    return spent


def test_the_epoch_budget_ends_the_sweep_and_the_records_say_what_was_spent(tmp_path):
    # Magnitude only (a dense trial trains nothing, so it spends no budget): 1-3 rounds of one
    # retraining epoch, i.e. 1-3 planned epochs a trial.
    space = magnitude_space("{low: 1, high: 3}")
    result, out = run_sweep_cli(tmp_path, space, 60, "epochs", "--budget-epochs", str(BUDGET))
    report = json.loads((out / "pareto.json").read_text())
    rows = sweep_rows(out)
    assert all(row["status"] == "ok" for row in rows)
    # Each round carries the trial's epochs so far: round r of one-epoch rounds trained r.
    assert all(int(row["epochs_trained"]) == int(row["round"]) for row in rows)
    spent = spent_by_trial(out)
    total = sum(spent.values())
    assert report["budget_epochs"] == BUDGET
    assert report["epochs_spent"] == total
    # Trials start only while the committed epochs are below E, and run their whole plan: the
    # sweep reaches E and ends above it by less than the last trial's plan (at most 3).
    assert BUDGET <= total < BUDGET + 3
    assert report["budget_spent"] is True
    assert report["trials"]["finished"] == len(spent) < 60
    assert f"--budget-epochs {BUDGET} spent ({total} training epochs)" in result.stdout

    client, (parent,), children = sweep_runs(out, "epochs")
    assert parent.data.params["budget_epochs"] == str(BUDGET)
    assert parent.data.metrics["epochs_spent"] == total
    for child in children:
        assert child.data.metrics["epochs_trained"] == spent[child.data.tags["ray_trial_id"]]


def test_a_resumed_sweep_counts_the_epochs_spent_before_it_stopped(tmp_path):
    """Trials of exactly 3 epochs and a budget of 6: two trials in all. Stopped (SIGTERM) once
    one has ended and the other is mid-way, the resumed sweep finishes the second and starts no
    third: a budget counted anew would start two more. One trial at a time, 3,000 examples in
    batches of 8 (rounds of half a second or more on 2 cores), so that the second trial is
    mid-way for a second or more: run two at a time, the two can end together."""
    ray_temp = Path(tempfile.mkdtemp(prefix="st-epochs-", dir="/tmp"))
    space = magnitude_space("3", batch_size=8)
    arguments, out = sweep_arguments(tmp_path, space, 20, "epochs")
    arguments += ["--budget-epochs", "6", "--subset", "3000", "--max-concurrent", "1"]
    log = tmp_path / "stopped.log"
    driver = start_search(arguments, tmp_path, ray_temp, log)
    try:
        deadline = time.monotonic() + 240
        while not 1 <= completed_trials(out) < trials_with_a_round(out):
            assert driver.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        os.kill(driver.pid, signal.SIGTERM)
        assert driver.wait(120) == 143, log.read_text()[-3000:]
        resumed = run_cli(
            "search", "--resume", str(out), cwd=tmp_path, env={"RAY_TMPDIR": str(ray_temp)}
        )
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        kill_processes_under(ray_temp)
        shutil.rmtree(ray_temp, ignore_errors=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert sorted(spent_by_trial(out).values()) == [3, 3]
    report = json.loads((out / "pareto.json").read_text())
    assert report["epochs_spent"] == 6 and report["trials"]["finished"] == 2
