"""A trial's reports become the sweep's rows, and the rows `trials.csv` and `pareto.json`, with
every field of the result schema (`sparsetune.results`): a metric added there reaches both."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from types import SimpleNamespace

from rich.console import Console

from sparsetune.report.results import write_pareto_json, write_trials_csv
from sparsetune.results import FRONT_FIELDS, ROUND_METRICS, ROW_FIELDS, RoundMetrics
from sparsetune.search.objectives import resolve_objective
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
