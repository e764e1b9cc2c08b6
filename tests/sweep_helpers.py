"""Sweeps stopped from outside (SIGKILL, SIGINT, SIGTERM) and resumed: watching a running
`sparsetune search`, cleaning up its Ray, and checking that the resumed sweep counts each
trial exactly once in Optuna, MLflow and `trials.csv`."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
from cli_helpers import sweep_rows, sweep_runs

from sparsetune.search.rounds import SOURCE_ATTR, is_round_trial


def start_search(arguments: list[str], cwd: Path, ray_temp: Path, log: Path) -> subprocess.Popen:
    """`sparsetune search ARGUMENTS` in a session of its own (as a terminal runs a command:
    `os.killpg` then reaches it as Ctrl-C would), its Ray in `ray_temp`, output in `log`."""
    env = {**os.environ, "SPARSETUNE_OFFLINE": "1", "RAY_TMPDIR": str(ray_temp)}
    return subprocess.Popen(
        [sys.executable, "-m", "sparsetune.cli", "search", *arguments],
        cwd=cwd,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def ray_trials(study) -> list:
    """The study's trials that Ray ran, in order: not the earlier rounds added beside them
    (search/rounds.py)."""
    return sorted((t for t in study.trials if not is_round_trial(t)), key=lambda t: t.number)


def completed_trials(out: Path) -> int:
    """COMPLETE trials Ray ran in the sweep's study (not the earlier rounds added beside them),
    read straight from SQLite (never blocks the sweep)."""
    database = out / "optuna.db"
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1) as connection:
            return connection.execute(
                "SELECT count(*) FROM trials WHERE state = 'COMPLETE' AND trial_id NOT IN "
                "(SELECT trial_id FROM trial_user_attributes WHERE key = ?)",
                (SOURCE_ATTR,),
            ).fetchone()[0]
    except sqlite3.Error:  # tables not created yet
        return 0


def trials_with_a_round(out: Path) -> int:
    """Trials that reported their first round (its ticket is there)."""
    return len(list((out / "trials").glob("*/round-1.safetensors")))


def processes_under(folder: Path) -> list[int]:
    """The processes of the Ray whose temp dir is `folder` (set by the test in RAY_TMPDIR):
    GCS, raylet and their helpers name it on their command line, the workers the raylet starts
    have it in their environment. Only this test's Ray: another Ray has another temp dir."""
    marker = f"RAY_TMPDIR={folder}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environment = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(folder) in command or marker in environment:
            pids.append(int(entry.name))
    return pids


def signal_processes_under(folder: Path, signum: int) -> None:
    for pid in processes_under(folder):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def kill_processes_under(folder: Path) -> None:
    """SIGKILL the Ray whose temp dir is `folder` (a killed driver's Ray outlives it)."""
    signal_processes_under(folder, signal.SIGKILL)


def assert_each_trial_once(out: Path, experiment: str, trials: int, parent_run_id: str):
    """The sweep in `out`, stopped and resumed, ended as one uninterrupted sweep would: each of
    its `trials` finished once in Ray's results (`pareto.json`, `trials.csv`, no round twice),
    as one FINISHED child run under the one FINISHED parent run it started with, and as one
    COMPLETE trial of its study (nothing left RUNNING; a trial Ray lost at a kill is FAIL,
    marked sparsetune_lost); the state file says finished. Returns (client, children, rows)."""
    summary = json.loads((out / "pareto.json").read_text())
    assert summary["trials"]["finished"] == trials
    assert summary["trials"]["failed"] == 0
    rows = sweep_rows(out)
    assert len({r["trial_id"] for r in rows if r["status"] == "ok"}) == trials
    assert len({(r["trial_id"], r["round"]) for r in rows}) == len(rows)  # no round twice

    client, parents, children = sweep_runs(out, experiment)
    assert [p.info.run_id for p in parents] == [parent_run_id]
    assert parents[0].info.status == "FINISHED"
    trial_ids = [c.data.tags["ray_trial_id"] for c in children]
    assert len(trial_ids) == len(set(trial_ids)) == trials
    assert {c.info.status for c in children} == {"FINISHED"}
    for child in children:  # each round recorded once, in the trial's own run
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "compression")]
        own = sorted(int(r["round"]) for r in rows if r["run_id"] == child.info.run_id)
        assert sorted(steps) == own
    assert set(trial_ids) == {r["trial_id"] for r in rows}
    assert {r["run_id"] for r in rows} == {c.info.run_id for c in children}

    state = json.loads((out / "sweep-state.json").read_text())
    assert state["status"] == "finished"
    storage = f"sqlite:///{out / 'optuna.db'}"
    assert optuna.get_all_study_names(storage) == [state["study_name"]]
    study = optuna.load_study(study_name=state["study_name"], storage=storage)
    complete = optuna.trial.TrialState.COMPLETE
    ran = ray_trials(study)
    assert [t.state for t in ran].count(complete) == trials
    for trial in ran:
        if trial.state != complete:
            assert trial.state == optuna.trial.TrialState.FAIL
            assert "sparsetune_lost" in trial.user_attrs
    hashes = {t.user_attrs["config_hash"] for t in ran if t.state == complete}
    # Every reported round once in the study: Ray's trial holds its last, the others are added.
    told = [
        (t.user_attrs["ray_trial_id"], t.user_attrs["round"])
        for t in study.trials
        if t.state == complete
    ]
    reported = sorted((r["trial_id"], int(r["round"])) for r in rows)
    assert sorted(told) == reported, f"study {sorted(told)} != trials.csv {reported}"
    assert hashes == {c.data.tags["config_hash"] for c in children}
    return client, children, rows


def magnitude_space(rounds: str, batch_size: int = 128) -> str:
    """The e2e sweeps' space: one dense epoch, global iterative magnitude pruning with one-epoch
    retraining over `rounds` (a YAML value), so that a trial stopped mid-way has a round's
    checkpoint to continue from. A test that must stop a trial mid-way takes a smaller
    `batch_size`: more steps a round, so that the trial stays mid-way long enough to be caught
    however fast the machine (on 1,000 examples in batches of 128 a round is 8 steps)."""
    return (
        f"train: {{optimizer: sgd, lr: 0.05, epochs: 1, batch_size: {batch_size}}}\n"
        "methods:\n"
        "  magnitude:\n"
        "    criterion: global\n"
        "    sparsity: {low: 0.3, high: 0.95}\n"
        f"    rounds: {rounds}\n"
        "    retrain_epochs: 1\n"
    )


def load_benchmark(name: str):
    """A script of benchmarks/ as a module (they are scripts, not a package)."""
    import importlib.util

    path = Path(__file__).parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
