"""End to end: a sweep whose driver is killed with SIGKILL mid-sweep, then resumed with
`--resume DIR`, ends with each of its trials counted once in Ray's results, in MLflow and in
the Optuna study, under the parent run it started with."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from cli_helpers import SWEEP_COMMON, run_cli, sweep_arguments, sweep_rows, sweep_runs
from sweep_helpers import (
    assert_each_trial_once,
    completed_trials,
    kill_processes_under,
    magnitude_space,
    trials_with_a_round,
)

pytestmark = pytest.mark.slow

TRIALS = 6
EXPERIMENT = "resume"
# Rounds of 7,500 examples in batches of 48: a trial stays mid-way long enough to be killed there.
SPACE = magnitude_space("{low: 2, high: 3}", batch_size=48)


def test_a_sweep_killed_mid_way_resumes_and_counts_each_trial_once(tmp_path):
    arguments, out = sweep_arguments(tmp_path, SPACE, TRIALS, EXPERIMENT)
    # Ray's sockets need a short path; a folder of its own also names exactly this test's Ray.
    ray_temp = Path(tempfile.mkdtemp(prefix="st-resume-", dir="/tmp"))
    env = {"RAY_TMPDIR": str(ray_temp)}
    log = (tmp_path / "killed.log").open("w")
    driver = subprocess.Popen(
        [sys.executable, "-m", "sparsetune.cli", "search", *arguments],
        cwd=tmp_path,
        env={**os.environ, "SPARSETUNE_OFFLINE": "1", **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # Killed once two trials finished and another is mid-way: it reported a round (its
        # round-1 ticket is there) and has not finished.
        deadline = time.monotonic() + 240
        while not (2 <= completed_trials(out) < trials_with_a_round(out)):
            assert driver.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no two trials finished in time"
            time.sleep(0.2)
        time.sleep(1)  # Ray saves its state at its next step after a checkpoint
        _kill_where_ray_state_is_whole(driver, out, ray_temp)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        kill_processes_under(ray_temp)
        log.close()
    state = json.loads((out / "sweep-state.json").read_text())
    assert state["status"] == "running"
    parent_before = state["parent_run_id"]
    assert completed_trials(out) < TRIALS, "the sweep ended before it was killed"

    try:
        # The same --out with other options: refused, one line, exit 2, nothing run.
        changed = run_cli(
            "search",
            *arguments,
            "--objective",
            "max-acc",
            "--min-compression",
            "10",
            cwd=tmp_path,
            env=env,
        )
        assert changed.returncode == 2, changed.stderr
        assert "unfinished sweep" in changed.stderr and "--objective" in changed.stderr

        resumed = run_cli("search", "--resume", str(out), cwd=tmp_path, env=env, timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert "resuming sweep" in resumed.stderr
    finally:
        kill_processes_under(ray_temp)
        shutil.rmtree(ray_temp, ignore_errors=True)

    # Each trial once in Ray's results, MLflow (under the parent run of the first start) and the
    # study of the first start.
    _, children, _ = assert_each_trial_once(out, EXPERIMENT, TRIALS, parent_before)
    # The trial killed mid-way continued in its own run.
    assert any("restarts" in c.data.tags for c in children)

    # The same command again does nothing.
    again = run_cli("search", *arguments, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "has finished; nothing to do" in again.stderr


def _kill_where_ray_state_is_whole(driver: subprocess.Popen, out: Path, ray_temp: Path) -> None:
    """SIGKILL the driver's process group at a moment when every unfinished trial's checkpoint
    that Ray's saved state names still exists.

    Ray (2.60) deletes a trial's previous checkpoint when it registers the next one
    (`num_to_keep=1`) and saves its experiment state only at its next step. A kill in between
    leaves a state that names a deleted checkpoint; that trial then fails on resume ("Could not
    recover from checkpoint as it does not exist on storage anymore") while the sweep goes on
    (docs/resume.md). Ray also writes its state as three files one after the other (the
    experiment state, the searcher's, the callbacks') in a staging folder, then copies them to
    the sweep folder in the background: a kill between two of them restores a searcher or a
    progress record of another moment than the trials (docs/resume.md). This test is about resuming,
    not about those windows, so the driver is stopped, its saved state checked, and the driver
    killed only when the state is whole."""
    deadline = time.monotonic() + 60
    while True:
        os.killpg(driver.pid, signal.SIGSTOP)
        state = _newest_ray_state(out)
        if (
            state is not None
            and _ray_state_is_one_save(state, ray_temp)
            and _ray_state_names_existing_checkpoints(state)
        ):
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(30)
            return
        os.killpg(driver.pid, signal.SIGCONT)
        assert time.monotonic() < deadline, "Ray's saved state never named existing checkpoints"
        time.sleep(0.05)


def _newest_ray_state(out: Path) -> Path | None:
    """The experiment state file of the sweep's newest Ray session, if Ray saved one yet."""
    states = sorted((out / "ray").glob("*/experiment_state-*.json"))
    return states[-1] if states else None


def _ray_state_is_one_save(state: Path, ray_temp: Path) -> bool:
    """Whether the saved experiment state `state`, and the searcher state and callback state
    beside it, are the ones Ray's last save wrote in its staging folder, in that order (one
    `TuneController.save_to_dir`, none left behind), and its upload of them is not under way."""
    name = state.name
    session = name.removeprefix("experiment_state-").removesuffix(".json")
    names = [name, f"searcher-state-{session}.pkl", f"callback-states-{session}.pkl"]
    staged = [
        folder
        for folder in ray_temp.glob(f"**/{state.parent.name}/driver_artifacts")
        if (folder / name).is_file()
    ]
    if len(staged) != 1:
        return False
    try:
        written = [(staged[0] / file).stat().st_mtime_ns for file in names]
        same = all(
            (staged[0] / file).read_bytes() == (state.parent / file).read_bytes() for file in names
        )
    except OSError:
        return False
    return same and written == sorted(written)


def _ray_state_names_existing_checkpoints(state: Path) -> bool:
    """Whether the experiment state `state` names, for each unfinished trial, a checkpoint
    folder that exists (False as well while the file is half-written)."""
    try:
        trials = json.loads(state.read_text())["trial_data"]
        for trial_json, runtime_json in trials:
            trial, runtime = json.loads(trial_json), json.loads(runtime_json)
            last = runtime.get("last_result") or {}
            name = last.get("checkpoint_dir_name") if isinstance(last, dict) else None
            if trial.get("status") in ("TERMINATED", "ERROR") or not name:
                continue
            folders = list(state.parent.glob(f"*_{trial['trial_id']}_*"))
            if not any((folder / name).is_dir() for folder in folders):
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def _trial_workers(ray_temp: Path, trial_id: str = "") -> list[int]:
    """Pids of the Ray actors running trials of the Ray whose temp dir is `ray_temp` (set by the
    test in RAY_TMPDIR, which the raylet passes on to its workers); with `trial_id`, only the one
    running that trial (Ray runs each trial in a working folder named after it)."""
    marker = f"RAY_TMPDIR={ray_temp}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0]
            environment = (entry / "environ").read_bytes().split(b"\0")
            folder = os.readlink(entry / "cwd")
        except OSError:
            continue
        busy = title.startswith(b"ray::") and b"IDLE" not in title and b"Agent" not in title
        running = f"sparsetune_trial_{trial_id}_" in folder if trial_id else True
        if busy and marker in environment and running:
            pids.append(int(entry.name))
    return pids


def _unfinished_trial_with_a_checkpoint(out: Path) -> str | None:
    """A trial that Ray holds a checkpoint of (it reported a round) and that has not finished (its
    MLflow run, ended last, is still running): the one to kill mid-way."""
    for folder in sorted((out / "ray").glob("*/sparsetune_trial_*")):
        trial_id = folder.name.split("_")[2]
        if any(folder.glob("checkpoint_*")) and _run_status(out, trial_id) == "RUNNING":
            return trial_id
    return None


def _run_status(out: Path, trial_id: str) -> str | None:
    """The status of the trial's MLflow child run, read from the store without MLflow."""
    with contextlib.closing(sqlite3.connect(f"file:{out / 'mlflow.db'}?mode=ro", uri=True)) as db:
        row = db.execute(
            "SELECT runs.status FROM runs JOIN tags ON tags.run_uuid = runs.run_uuid "
            "WHERE tags.key = 'ray_trial_id' AND tags.value = ?",
            (trial_id,),
        ).fetchone()
    return None if row is None else row[0]


def test_a_trial_whose_worker_dies_is_retried_from_its_checkpoint(tmp_path):
    (tmp_path / "space.yaml").write_text(SPACE)
    out = tmp_path / "sweep"
    ray_temp = Path(tempfile.mkdtemp(prefix="st-retry-", dir="/tmp"))
    env = {**os.environ, "SPARSETUNE_OFFLINE": "1", "RAY_TMPDIR": str(ray_temp)}
    command = [sys.executable, "-m", "sparsetune.cli", "search", *SWEEP_COMMON]
    command += ["--trials", "2", "--space", str(tmp_path / "space.yaml"), "--out", str(out)]
    command += ["--cache-dir", str(tmp_path / "cache"), "--experiment", EXPERIMENT]
    log = (tmp_path / "sweep.log").open("w")
    driver = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 240
        # Killed as soon as a trial has a checkpoint and is still running: a fixed wait would race
        # trials that take a second or two.
        workers: list[int] = []
        while not workers:
            assert driver.poll() is None, (tmp_path / "sweep.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no trial reported a round in time"
            assert completed_trials(out) == 0, "every trial ended before one could be killed"
            trial_id = _unfinished_trial_with_a_checkpoint(out)
            workers = _trial_workers(ray_temp, trial_id) if trial_id else []
            time.sleep(0.05)
        os.kill(workers[0], signal.SIGKILL)
        assert driver.wait(300) == 0, (tmp_path / "sweep.log").read_text()[-3000:]
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        kill_processes_under(ray_temp)
        shutil.rmtree(ray_temp, ignore_errors=True)
        log.close()

    summary = json.loads((out / "pareto.json").read_text())
    assert summary["trials"] | {"infeasible": 0} == {
        "requested": 2,
        "finished": 2,
        "failed": 0,
        "infeasible": 0,
    }
    client, parents, children = sweep_runs(out, EXPERIMENT)
    assert len(parents) == 1 and len(children) == 2
    assert {c.info.status for c in children} == {"FINISHED"}
    assert [c.data.tags.get("restarts") for c in children].count("1") == 1
    rows = sweep_rows(out)
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "compression")]
        assert sorted(steps) == sorted(
            int(r["round"]) for r in rows if r["run_id"] == child.info.run_id
        )
