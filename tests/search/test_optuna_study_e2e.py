"""The sweep's Optuna study as a record of its own: after one real `sparsetune search`, the study
in `<sweep>/optuna.db` names its metrics, holds every reported (trial, round) as a COMPLETE trial
linked to its MLflow child run, and its best trials are `pareto.json`'s front; optuna-dashboard,
run as a user runs it, lists the study with the same names and the same front."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from cli_helpers import run_sweep_cli, sweep_runs

from sparsetune.pruning.scoring import sparsity_schedule
from sparsetune.results import ParetoFile, TrialRow, read_json_record, read_trials_csv

pytestmark = pytest.mark.slow

# Iterative magnitude pruning over one to three rounds, both criteria (std: the rounds are
# prefix-consistent as they are; global: with the sparsity target moved), so earlier rounds exist.
SPACE = """
train: {optimizer: sgd, lr: 0.05, epochs: 1, batch_size: 128}
methods:
  magnitude:
    criterion: {choices: [std, global]}
    c_fc: {low: 0.5, high: 2.0, when: {criterion: std}}
    sparsity: {low: 0.5, high: 0.999, when: {criterion: global}}
    rounds: {low: 1, high: 3}
    retrain_epochs: 1
"""
# First: three rounds to 99.9%, whose last round is near chance level, so the chance floor has a
# point to keep off the front (and the dashboard, which ignores constraints, one to show).
POINTS = """
- method: magnitude
  params: {criterion: global, sparsity: 0.999, rounds: 3}
"""
TRIALS = 6
EXPERIMENT = "study"
COMPLETE = optuna.trial.TrialState.COMPLETE


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    tmp_path = tmp_path_factory.mktemp("optuna-study")
    (tmp_path / "points.yaml").write_text(POINTS)
    _, out = run_sweep_cli(
        tmp_path, SPACE, TRIALS, EXPERIMENT, "--enqueue", str(tmp_path / "points.yaml")
    )
    return out


def load_sweep_study(out: Path) -> optuna.Study:
    state = json.loads((out / "sweep-state.json").read_text())
    storage = optuna.storages.RDBStorage(f"sqlite:///{out / 'optuna.db'}")
    return optuna.load_study(study_name=state["study_name"], storage=storage)


def key(attrs: dict) -> tuple[str, int]:
    """(MLflow run id, round): what names a reported point in every record."""
    return str(attrs["run_id"]), int(attrs["round"])


def test_the_study_holds_every_round_linked_to_mlflow_and_its_front_is_pareto_json(sweep):
    study = load_sweep_study(sweep)
    summary = read_json_record(sweep / "pareto.json", ParetoFile)
    rows: list[TrialRow] = read_trials_csv(sweep / "trials.csv")
    assert {r.status for r in rows} == {"ok"}  # nothing failed: every row is a point

    assert study.metric_names == summary.objective.metrics == ["val_acc", "compression"]
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE] * 2

    # One COMPLETE trial per reported (trial, round), earlier rounds included.
    assert {t.state for t in study.trials} == {COMPLETE}
    assert len(study.trials) == len(rows)
    assert max(r.round for r in rows) == 3
    by_key = {key(t.user_attrs): t for t in study.trials}
    assert set(by_key) == {(r.run_id, r.round) for r in rows}

    # Each trial is its row: values, attributes, feasibility as Optuna's constraint.
    for row in rows:
        trial = by_key[row.run_id, row.round]
        assert trial.values == pytest.approx([row.val_acc, row.compression])
        assert trial.user_attrs["ray_trial_id"] == row.trial_id
        assert trial.user_attrs["method"] == row.method == "magnitude"
        assert trial.user_attrs["config_hash"] == row.config_hash
        assert trial.user_attrs["architecture"] == row.architecture
        assert trial.constraints, trial.number
        assert all(v <= 0 for v in trial.constraints.values()) == row.feasible, trial.number
        assert trial.user_attrs["feasible"] == row.feasible, trial.number
    assert not all(r.feasible for r in rows), "no point below the chance floor: nothing checked"

    # The Ray trial's own Optuna trial holds its last round and the params it was sampled with;
    # an earlier round is told as the configuration that ends there (magnitude: `rounds: r` and,
    # for a global target, the sparsity reached at r) where that lies in the space, else with
    # the trial's own params.
    last_round: dict[str, int] = {}
    for row in rows:
        last_round[row.run_id] = max(row.round, last_round.get(row.run_id, 0))
    told_equivalent = 0
    for row in rows:
        trial = by_key[row.run_id, row.round]
        own = by_key[row.run_id, last_round[row.run_id]]
        assert own.params == sampled(row, own.distributions), row
        if trial is own:
            continue
        assert trial.user_attrs["source_trial"] == own.number
        equivalent = dict(own.params)
        equivalent["magnitude.rounds"] = row.round
        if "magnitude.sparsity" in own.params:
            schedule = sparsity_schedule(own.params["magnitude.sparsity"], last_round[row.run_id])
            equivalent["magnitude.sparsity"] = schedule[row.round - 1]
        where = f"round {row.round} of trial {row.trial_id} ({own.params})"
        if in_space(equivalent, own.distributions):
            assert trial.params == pytest.approx(equivalent), f"{where}: not told as {equivalent}"
            assert trial.user_attrs["equivalent"] is True, where
            told_equivalent += 1
        else:
            assert trial.params == own.params, where
            assert trial.user_attrs["equivalent"] is False, where
    assert told_equivalent, "no earlier round was told as the configuration that ends there"

    # The run ids are the sweep's MLflow child runs, under the parent pareto.json names.
    _, parents, children = sweep_runs(sweep, EXPERIMENT)
    assert [p.info.run_id for p in parents] == [summary.parent_run_id]
    tags = {c.info.run_id: c.data.tags for c in children}
    assert {t.user_attrs["run_id"] for t in study.trials} == set(tags)
    for trial in study.trials:
        run_tags = tags[trial.user_attrs["run_id"]]
        assert trial.user_attrs["ray_trial_id"] == run_tags["ray_trial_id"]
        assert trial.user_attrs["config_hash"] == run_tags["config_hash"]

    # Optuna's (feasible) Pareto front is sparsetune's.
    assert {key(t.user_attrs) for t in study.best_trials} == front_keys(summary)
    assert len(study.best_trials) == len(summary.front)


def sampled(row: TrialRow, distributions: dict) -> dict:
    """The row's params that the space samples, named as the study names them."""
    named = {f"{row.method}.{name}": value for name, value in row.params.items()}
    return {name: value for name, value in named.items() if name in distributions}


def in_space(params: dict, distributions: dict) -> bool:
    for name, value in params.items():
        distribution = distributions[name]
        if isinstance(distribution, optuna.distributions.CategoricalDistribution):
            if value not in distribution.choices:
                return False
        elif not distribution.low <= value <= distribution.high:
            return False
    return True


def front_keys(summary: ParetoFile) -> set[tuple[str, int]]:
    return {(str(point.run_id), point.round) for point in summary.front}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        return json.loads(response.read())


def start_dashboard(database: Path, port: int, log: Path) -> subprocess.Popen:
    """`optuna-dashboard sqlite:///<sweep>/optuna.db --port P`, as docs/search.md gives it;
    returns once its API answers. Its wsgiref server, not gunicorn (its pick where gunicorn is
    installed, as MLflow installs it): one process to stop, and no control socket shared with
    another test's server under ~/.gunicorn."""
    command = Path(sys.executable).with_name("optuna-dashboard")
    address = ("--host", "127.0.0.1", "--port", str(port), "--server", "wsgiref")
    server = subprocess.Popen(
        [str(command), f"sqlite:///{database}", *address],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            get_json(f"http://127.0.0.1:{port}/api/meta")
            return server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                server.wait()
                raise AssertionError(
                    f"optuna-dashboard did not start:\n{log.read_text()}"
                ) from None
            time.sleep(0.2)


def attributes(api_trial: dict) -> dict[str, str]:
    return {a["key"]: a["value"] for a in api_trial["user_attrs"]}


def test_optuna_dashboard_lists_the_study_with_named_metrics_and_the_same_front(sweep, tmp_path):
    study = load_sweep_study(sweep)
    summary = read_json_record(sweep / "pareto.json", ParetoFile)
    port = free_port()
    server = start_dashboard(sweep / "optuna.db", port, tmp_path / "dashboard.log")
    try:
        api = f"http://127.0.0.1:{port}/api"
        listed = get_json(f"{api}/studies")["study_summaries"]
        assert [s["study_name"] for s in listed] == [study.study_name]
        assert listed[0]["directions"] == ["maximize", "maximize"]
        detail = get_json(f"{api}/studies/{listed[0]['study_id']}?after=0")
    finally:
        server.terminate()
        server.wait(timeout=30)

    assert detail["objective_names"] == summary.objective.metrics == ["val_acc", "compression"]
    assert len(detail["trials"]) == len(study.trials)
    for trial in detail["trials"]:  # the link to MLflow, on every row of its trials table
        assert {"run_id", "round", "ray_trial_id", "method", "config_hash"} <= set(
            attributes(trial)
        )

    # The dashboard's best trials are the Pareto front of every COMPLETE trial, constraints
    # not applied. The chance floor bounds one axis of the front from below, so a point under it
    # never dominates one above it: the dashboard's best trials are Optuna's best trials plus
    # the points under the floor that nothing dominates.
    infeasible = {t.number for t in study.trials if any(v > 0 for v in t.constraints.values())}
    best = {t["number"]: t for t in detail["best_trials"]}
    assert set(best) - infeasible == {t.number for t in study.best_trials}
    shown = {key(attributes(t)) for number, t in best.items() if number not in infeasible}
    assert shown == front_keys(summary)
