"""End to end, real Ray trials chosen by real Optuna samplers: constrained objectives, enqueued
points, the time budget and the hypervolume history."""

from __future__ import annotations

import json
import time

import optuna
import pytest
from cli_helpers import (
    MAGNITUDE_GLOBAL_SPACE,
    run_enqueued_sweep,
    run_sweep_cli,
    sweep_rows,
    sweep_runs,
)
from sweep_helpers import ray_trials

pytestmark = pytest.mark.slow


POINTS = """
- method: magnitude
  source: a 10x point, feasible under --min-compression 3
  params: {sparsity: 0.9, rounds: 2}
- method: dense
- method: snip
  params: {sparsity: 0.9}
"""


def study(out):
    storage = optuna.storages.RDBStorage(f"sqlite:///{out / 'optuna.db'}")
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


def test_max_acc_runs_enqueued_points_first_and_keeps_infeasible_trials_visible(tmp_path):
    result, out = run_enqueued_sweep(
        tmp_path,
        MAGNITUDE_GLOBAL_SPACE,
        POINTS,
        4,
        "max-acc",
        "--objective",
        "max-acc",
        "--min-compression",
        "3",
    )
    assert "skipped 1: snip (not in this sweep)" in result.stderr
    assert "sampler tpe, early stop asha" in result.stderr
    assert "Best ticket (val_acc, compression >= 3x)" in result.stdout

    trials = ray_trials(study(out))
    assert [t.params for t in trials[:2]] == [
        {"method": "magnitude", "magnitude.sparsity": 0.9, "magnitude.rounds": 2},
        {"method": "dense"},
    ]
    assert study(out).directions == [optuna.study.StudyDirection.MAXIMIZE]
    rows = sweep_rows(out)
    last = {row["config_hash"]: row for row in rows}  # the round Optuna was told
    for trial in trials:  # the violation went to Optuna beside the metric, not into it
        told = last[trial.user_attrs["config_hash"]]
        assert trial.constraints == {
            "compression>=3": pytest.approx(3 - float(told["compression"]))
        }
        assert trial.values == [pytest.approx(float(told["val_acc"]))]

    assert {row["feasible"] for row in rows} == {"True", "False"}  # the dense trial is 1x
    for row in rows:
        assert (row["feasible"] == "True") == (float(row["compression"]) >= 3), row
    report = json.loads((out / "pareto.json").read_text())
    assert report["objective"]["constraint"] == "compression >= 3x"
    assert report["trials"]["infeasible"] >= 1
    assert report["sampler"] == "tpe" and report["early_stop"] == "asha"
    assert report["front"] and all(p["compression"] >= 3 for p in report["front"])
    best = max(float(r["val_acc"]) for r in rows if r["feasible"] == "True")
    assert report["front"][0]["val_acc"] == pytest.approx(best)
    # A trial ASHA stops early ends its run FINISHED (tagged stopped_early), never FAILED.
    _, _, children = sweep_runs(out, "max-acc")
    assert {child.info.status for child in children} == {"FINISHED"}


def test_the_budget_ends_a_sweep_cleanly_and_the_hypervolume_is_a_history(tmp_path):
    started = time.monotonic()
    result, out = run_sweep_cli(
        tmp_path,
        MAGNITUDE_GLOBAL_SPACE,
        200,
        "budget",
        "--objective",
        "pareto-flops",
        "--budget-minutes",
        "0.5",
    )
    elapsed = time.monotonic() - started
    assert "--budget-minutes 0.5 spent: the sweep ended early" in result.stdout
    assert "hypervolume" in result.stdout
    report = json.loads((out / "pareto.json").read_text())
    assert report["budget_spent"] is True
    finished = report["trials"]["finished"]
    assert 0 < finished < 200
    assert report["trials"]["failed"] == 0
    assert elapsed < 150  # 30 s of trials plus start-up and a last round, not 200 trials
    # The default start (`--enqueue auto`): of the papers' points, dense fits this space (Han's
    # magnitude point asks for the std criterion, which the space fixes at global) and ran first.
    assert "1 enqueued point first" in result.stderr
    assert ray_trials(study(out))[0].params == {"method": "dense"}

    # Stopped trials still finished the round they were in: every trial reported a round.
    rows = sweep_rows(out)
    assert len({row["trial_id"] for row in rows}) == finished
    assert all(row["status"] == "ok" for row in rows)

    history = report["hypervolume_history"]
    assert [h["trials_done"] for h in history] == list(range(1, finished + 1))
    volumes = [h["hypervolume"] for h in history]
    assert volumes == sorted(volumes) and volumes[-1] == pytest.approx(report["hypervolume"])
    assert report["hypervolume"] > 0
    assert "FLOPs" in report["hypervolume_axes"]
    client, parents, _ = sweep_runs(out, "budget")
    curve = client.get_metric_history(parents[0].info.run_id, "hypervolume")
    assert sorted(m.step for m in curve) == list(range(1, finished + 1))
