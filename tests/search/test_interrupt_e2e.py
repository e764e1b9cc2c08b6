"""End to end: Ctrl-C (SIGINT to the whole process group, as a terminal sends it) or SIGTERM
(to the driver alone, as a scheduler sends it) in the middle of a sweep stops it resumable: exit
130 or 143, one line saying how to continue, the state still "running", the MLflow parent run
KILLED; `--resume DIR` then finishes it with each trial once in Optuna, MLflow and trials.csv.
And a second `search` on a folder another one is running is refused and changes nothing; Ctrl-C
during `prune` exits 130 and removes the --out folder it created."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from cli_helpers import SYNTHETIC_RUN, run_cli, sweep_arguments, sweep_runs
from sweep_helpers import (
    assert_each_trial_once,
    completed_trials,
    kill_processes_under,
    magnitude_space,
    signal_processes_under,
    start_search,
    trials_with_a_round,
)

pytestmark = pytest.mark.slow

TRIALS = 3
EXPERIMENT = "interrupt"
# A trial that reported its first round has two to go, of a third of a second or more each
# (2,500 examples in batches of 16).
SPACE = magnitude_space("3", batch_size=16)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> list[str]:
    """One dense cache for the module's sweeps (the same dense stage: trained once), and a
    subset of the data: the options that follow `sweep_arguments` (the last of an option wins)."""
    return ["--cache-dir", str(tmp_path_factory.mktemp("cache")), "--subset", "3000"]


@pytest.fixture
def ray_temp():
    """A Ray temp dir of the test's own (a short path for Ray's sockets), and its Ray ended."""
    folder = Path(tempfile.mkdtemp(prefix="st-stop-", dir="/tmp"))
    yield folder
    kill_processes_under(folder)
    shutil.rmtree(folder, ignore_errors=True)


def _wait_for(condition, driver, log: Path, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert driver.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"{what}: not in {timeout} s"
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("signum", "whole_group", "code"),
    [(signal.SIGINT, True, 130), (signal.SIGTERM, False, 143)],
    ids=["ctrl-c", "sigterm"],
)
def test_a_signal_mid_sweep_leaves_it_resumable(
    tmp_path, cache, ray_temp, signum, whole_group, code
):
    arguments, out = sweep_arguments(tmp_path, SPACE, TRIALS, EXPERIMENT)
    arguments += cache
    log = tmp_path / "stopped.log"
    driver = start_search(arguments, tmp_path, ray_temp, log)
    try:
        # Once a trial finished and the next one is mid-way (it reported a round).
        _wait_for(
            lambda: 1 <= completed_trials(out) < trials_with_a_round(out),
            driver,
            log,
            "a finished trial and one mid-way",
        )
        if whole_group:
            os.killpg(driver.pid, signum)
        else:
            os.kill(driver.pid, signum)
        assert driver.wait(120) == code, log.read_text()[-3000:]
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    output = log.read_text()
    assert output.strip().splitlines()[-1] == (
        f"sparsetune: interrupted; continue with: sparsetune search --resume {out}"
    )
    assert "Traceback" not in output and "SIGABRT" not in output, output[-3000:]
    state = json.loads((out / "sweep-state.json").read_text())
    assert state["status"] == "running"
    assert completed_trials(out) < TRIALS, "the sweep ended before the signal"
    _, parents, children = sweep_runs(out, EXPERIMENT)
    assert [(p.info.run_id, p.info.status) for p in parents] == [(state["parent_run_id"], "KILLED")]
    # The runs of trials the signal stopped stay RUNNING (the resume continues them), none FAILED
    assert {c.info.status for c in children} <= {"RUNNING", "FINISHED"}

    resumed = run_cli(
        "search", "--resume", str(out), cwd=tmp_path, env={"RAY_TMPDIR": str(ray_temp)}
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming sweep" in resumed.stderr
    assert_each_trial_once(out, EXPERIMENT, TRIALS, state["parent_run_id"])


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _settled_files(folder: Path, pause: float = 0.5, tries: int = 20) -> dict[str, tuple[int, int]]:
    """`_files` once two looks `pause` apart agree: a write already inside the kernel when its
    process was stopped (an artifact upload's 1 MiB chunk) still lands after SIGSTOP."""
    seen = _files(folder)
    for _ in range(tries):
        time.sleep(pause)
        now = _files(folder)
        if now == seen:
            return now
        seen = now
    raise AssertionError(f"{folder} kept changing with every process of the sweep stopped")


def test_a_second_search_on_a_running_sweep_is_refused_and_changes_nothing(
    tmp_path, cache, ray_temp
):
    arguments, out = sweep_arguments(tmp_path, SPACE, 1, EXPERIMENT)
    arguments += cache
    log = tmp_path / "first.log"
    first = start_search(arguments, tmp_path, ray_temp, log)
    try:
        _wait_for(lambda: trials_with_a_round(out) >= 1, first, log, "a trial's first round")
        # Nothing of the first (its driver, its Ray, its trial) moves while the second runs.
        os.killpg(first.pid, signal.SIGSTOP)
        signal_processes_under(ray_temp, signal.SIGSTOP)
        before = _settled_files(out)
        holder = json.loads((out / ".sparsetune.lock").read_text())
        second = run_cli("search", *arguments, cwd=tmp_path, env={"RAY_TMPDIR": str(ray_temp)})
        assert _files(out) == before
        signal_processes_under(ray_temp, signal.SIGCONT)
        os.killpg(first.pid, signal.SIGCONT)
        assert second.returncode == 2, second.stderr[-3000:]
        assert second.stderr.strip().splitlines() == [
            f"sparsetune: error: --out {out}: another sparsetune is running this sweep (pid "
            f"{first.pid} on {holder['host']} since {holder['since']}); wait for it, or pass "
            "another --out"
        ]
        assert first.wait(240) == 0, log.read_text()[-3000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    _, parents, children = sweep_runs(out, EXPERIMENT)
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert [c.info.status for c in children] == ["FINISHED"]


def test_ctrl_c_during_prune_exits_130_and_leaves_no_half_written_out(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "sparsetune.cli", "prune", *SYNTHETIC_RUN]
    command += ["--method", "magnitude", "--epochs", "2", "--set", "rounds=6", "--out", str(out)]
    log = tmp_path / "prune.log"
    pruning = subprocess.Popen(
        [*command, "--cache-dir", str(tmp_path / "cache")],
        cwd=tmp_path,
        env={**os.environ, "SPARSETUNE_OFFLINE": "1"},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_for(out.exists, pruning, log, "prune's --out folder")  # its first ticket
        os.killpg(pruning.pid, signal.SIGINT)
        assert pruning.wait(60) == 130, log.read_text()[-3000:]
    finally:
        if pruning.poll() is None:
            os.killpg(pruning.pid, signal.SIGKILL)
    output = log.read_text()
    assert output.strip().splitlines()[-1] == "sparsetune: interrupted"
    assert "Traceback" not in output
    assert not out.exists()
