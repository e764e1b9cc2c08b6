"""`sparsetune sweep`'s decisions on hand-written sweep folders, and the warm-start points read
from an earlier sweep's pareto.json and trials.csv."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cli_helpers import MAGNITUDE_GLOBAL_SPACE

from sparsetune.search.scheduled import front_points, plan_sweep, warm_start
from sparsetune.search.space import load_space
from sparsetune.search.state import SweepState

NOW = datetime(2026, 3, 2, 4, 5, 6, tzinfo=UTC)


def _state(folder: Path, status: str, started: datetime = NOW) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    SweepState(
        sweep_id="x",
        status=status,  # type: ignore[arg-type]
        identity={},
        config={},
        study_name="s",
        ray_name="r",
        tracking_uri="sqlite:///x.db",
        started=started.timestamp(),
    ).write(folder)
    return folder


def test_an_empty_folder_starts_a_sweep_there_or_in_a_dated_one(tmp_path):
    assert plan_sweep(tmp_path / "runs", "never", NOW).folder == tmp_path / "runs"
    daily = plan_sweep(tmp_path / "runs", "daily", NOW)
    assert (daily.action, daily.folder.name) == ("start", "2026-03-02")
    assert plan_sweep(tmp_path / "runs", "always", NOW).folder.name == "2026-03-02T040506"


def test_an_unfinished_sweep_is_resumed_whatever_new_sweep_says(tmp_path):
    _state(tmp_path / "2026-03-01", "finished")
    _state(tmp_path / "2026-03-02", "running")
    for new_sweep in ("never", "daily", "always"):
        plan = plan_sweep(tmp_path, new_sweep, NOW)
        assert (plan.action, plan.folder) == ("resume", tmp_path / "2026-03-02")
        assert plan.earlier == [tmp_path / "2026-03-01"]


def test_a_finished_sweep_and_never_is_nothing_to_do(tmp_path):
    _state(tmp_path, "finished")
    plan = plan_sweep(tmp_path, "never", NOW)
    assert (plan.action, plan.folder) == ("nothing", tmp_path)
    assert "pareto.json" in plan.describe("lenet300")


def test_daily_starts_a_new_dated_sweep_after_one_finished_on_an_earlier_day(tmp_path):
    yesterday = NOW - timedelta(days=1)
    _state(tmp_path / "2026-03-01", "finished", started=yesterday)
    plan = plan_sweep(tmp_path, "daily", NOW)
    assert (plan.action, plan.folder) == ("start", tmp_path / "2026-03-02")
    assert plan.earlier == [tmp_path / "2026-03-01"]
    _state(tmp_path / "2026-03-02", "finished")
    assert plan_sweep(tmp_path, "daily", NOW).action == "nothing"


def test_always_starts_a_new_sweep_after_finished_ones(tmp_path):
    _state(tmp_path, "finished")  # a sweep of the spec when it said never
    _state(tmp_path / "2026-03-02T010000", "finished")
    plan = plan_sweep(tmp_path, "always", NOW)
    assert (plan.action, plan.folder.name) == ("start", "2026-03-02T040506")
    assert plan.earlier == [tmp_path, tmp_path / "2026-03-02T010000"]


def _earlier_sweep(folder: Path) -> Path:
    folder.mkdir(parents=True)
    front = [
        {"method": "magnitude", "params": {"criterion": "global", "sparsity": 0.9, "rounds": 2}},
        {"method": "magnitude", "params": {"criterion": "global", "sparsity": 0.9, "rounds": 2}},
        {"method": "dense", "params": {}},
        {"method": "magnitude", "trial_id": "t3"},  # params only in trials.csv
        {"method": "magnitude", "params": {"criterion": "global", "sparsity": 0.99}},  # too far
        {"method": "lottery", "params": {"sparsity": 0.5}},  # a method no longer searched
    ]
    (folder / "pareto.json").write_text(json.dumps({"front": front}))
    (folder / "trials.csv").write_text(
        'trial_id,method,params\nt3,magnitude,"{""sparsity"": 0.5, ""rounds"": 1}"\n'
    )
    return folder


def test_warm_start_points_are_the_earlier_front_that_still_fits_the_space(tmp_path):
    (tmp_path / "space.yaml").write_text(MAGNITUDE_GLOBAL_SPACE)
    space = load_space(tmp_path / "space.yaml")
    earlier = _earlier_sweep(tmp_path / "2026-03-01")

    assert len(front_points([earlier])) == 5  # the duplicate once
    warm = warm_start([earlier], space)
    assert warm.points == [
        {"method": "magnitude", "magnitude.sparsity": 0.9, "magnitude.rounds": 2},
        {"method": "dense"},
        {"method": "magnitude", "magnitude.sparsity": 0.5, "magnitude.rounds": 1},
    ]
    assert len(warm.skipped) == 2
    assert "outside the space" in warm.skipped[0] and "lottery" in warm.skipped[1]


def test_a_sweep_without_a_readable_front_gives_no_points(tmp_path):
    (tmp_path / "space.yaml").write_text(MAGNITUDE_GLOBAL_SPACE)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "pareto.json").write_text("{not json")
    assert warm_start([tmp_path / "old"], load_space(tmp_path / "space.yaml")).points == []
