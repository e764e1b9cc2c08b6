"""A trial's reports become the sweep's rows, and the rows `trials.csv` and `pareto.json`, with
every field of the result schema (`sparsetune.results`): a metric added there reaches both."""

from __future__ import annotations

import csv
import io
import json
import pickle
import random
from dataclasses import asdict
from types import SimpleNamespace

from rich.console import Console

from sparsetune.report.results import write_pareto_json, write_trials_csv
from sparsetune.results import FRONT_FIELDS, ROUND_METRICS, ROW_FIELDS, RoundMetrics
from sparsetune.search.objectives import resolve_objective
from sparsetune.search.pareto import pareto_front
from sparsetune.search.progress import SweepProgress

ROUND = RoundMetrics(
    round=1,
    val_acc=0.97,
    val_loss=0.1,
    test_acc=0.96,
    compression=12.5,
    flops_ratio=0.2,
    remaining_weights=21_300,
    total_weights=266_200,
    architecture="784-300-100-10",
    seconds=4.2,
    memory_footprint_bytes=170_432,
)


def _progress() -> SweepProgress:
    return SweepProgress(
        resolve_objective("pareto"),
        total=1,
        console=Console(file=io.StringIO()),
        key_params={"magnitude": ("c_fc",)},
        num_classes=10,
    )


def test_a_report_becomes_a_row_with_every_round_metric_and_the_trials_identity():
    progress = _progress()
    trial = SimpleNamespace(
        trial_id="t1", config={"method": "magnitude", "magnitude.c_fc": 1.2, "config_hash": "h"}
    )
    report = ROUND.metrics() | {"config_hash": "h", "run_id": "r1", "method": "magnitude"}
    progress.on_trial_result(0, [], trial, report)
    (row,) = progress.rows
    assert {key: row[key] for key in ROUND_METRICS} == asdict(ROUND)
    assert row["memory_footprint_bytes"] == 170_432
    assert (row["trial_id"], row["method"], row["config_hash"], row["run_id"]) == (
        "t1",
        "magnitude",
        "h",
        "r1",
    )
    assert row["params"] == {"c_fc": 1.2} and row["key_params"] == {"c_fc": 1.2}


def test_rows_and_front_carry_the_memory_footprint_to_the_files(tmp_path):
    progress = _progress()
    trial = SimpleNamespace(trial_id="t1", config={"method": "magnitude", "magnitude.c_fc": 1.2})
    progress.on_trial_result(0, [], trial, ROUND.metrics() | {"config_hash": "h", "run_id": "r"})
    write_trials_csv(tmp_path / "trials.csv", progress.rows)
    write_pareto_json(tmp_path / "pareto.json", progress.front(), {"experiment": "e"})

    with (tmp_path / "trials.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == ROW_FIELDS
        (row,) = list(reader)
    assert row["memory_footprint_bytes"] == "170432"
    (point,) = json.loads((tmp_path / "pareto.json").read_text())["front"]
    assert tuple(point) == FRONT_FIELDS
    assert point["memory_footprint_bytes"] == 170_432


def _report(progress, trial_id, round_index, val_acc, compression):
    trial = SimpleNamespace(trial_id=trial_id, config={"method": "magnitude"})
    metrics = ROUND.metrics() | {"round": round_index, "val_acc": val_acc}
    progress.on_trial_result(0, [], trial, metrics | {"compression": compression})


def _front_of_rows(progress):
    feasible = [row for row in progress.rows if row["feasible"]]
    return pareto_front(feasible, progress.objective.metrics, progress.objective.modes)


def test_the_running_front_is_the_front_of_the_rows_through_replays_and_a_restore():
    progress = _progress()
    rng = random.Random(0)
    for index in range(60):
        trial_id = f"t{rng.randint(0, 14)}"
        # A trial restarted from a checkpoint reports a round again: its newer report replaces
        # the older, which may have been on the front.
        round_index = rng.randint(1, 3)
        _report(progress, trial_id, round_index, rng.uniform(0.1, 0.99), rng.uniform(1, 100))
        assert progress.front() == _front_of_rows(progress), index
    assert len(progress.rows) == len({(r["trial_id"], r["round"]) for r in progress.rows})

    # A resumed sweep: the state saved with Ray's experiment, in a new callback, then more rows.
    restored = _progress()
    assert restored.front() == []  # read before the state arrives: it must not stay empty
    restored.set_state(pickle.loads(pickle.dumps(progress.get_state())))
    assert restored.front() == _front_of_rows(progress)
    unpickled = pickle.loads(pickle.dumps(progress))
    _report(restored, "t0", 1, 0.995, 200.0)
    _report(unpickled, "t0", 1, 0.995, 200.0)
    assert restored.front() == _front_of_rows(restored)
    assert unpickled.front() == _front_of_rows(unpickled)
    assert restored.front()[0]["compression"] == 200.0
