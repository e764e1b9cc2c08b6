"""What the sweep records for review when it ends, with stand-ins for MLflow: the review files
under `review/`, `pareto=true|false` on each child run, and a warning (never a failure) when a
step goes wrong. The real thing runs in tests/tracking/test_mlflow_server.py."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from review_helpers import make_sweep, run_id
from rich.console import Console

from sparsetune.search.records import record_review
from sparsetune.tracking import is_server_uri
from sparsetune.tracking.trial_run import TrialRun


class FakeRun:
    def __init__(self, run_id: str = "run", fail: bool = False):
        self.run_id = run_id
        self.fail = fail
        self.files: list[tuple[str, str | None]] = []
        self.tags: dict[str, str] = {}

    def log_files(self, files, artifact_path=None):
        if self.fail:
            raise ConnectionError("tracking server went away")
        self.files += [(Path(f).name, artifact_path) for f in files]

    def set_tags(self, tags):
        if self.fail:
            raise ConnectionError("tracking server went away")
        self.tags.update(tags)


class FakeStore:
    def __init__(self, fail: bool = False):
        self.runs: dict[str, FakeRun] = {}
        self.fail = fail

    def run(self, run_id: str) -> FakeRun:
        return self.runs.setdefault(run_id, FakeRun(run_id, self.fail))


def _record(folder, store, parent, front=None, rows=None):
    """record_review as the sweep calls it when it ends; the console's output."""
    if front is None:
        front = json.loads((folder / "pareto.json").read_text())["front"]
    if rows is None:
        with (folder / "trials.csv").open() as handle:
            rows = list(csv.DictReader(handle))
    output = io.StringIO()
    record_review(folder, store, parent, front, rows, Console(file=output, width=200))
    return output.getvalue()


def test_review_files_go_under_review_and_front_members_are_tagged(tmp_path):
    folder = make_sweep(tmp_path / "sweep")
    store, parent = FakeStore(), FakeRun("parent")
    assert _record(folder, store, parent) == ""
    assert parent.files == [
        ("pareto.png", "review"),
        ("pareto.html", "review"),
        ("front.csv", "review"),
    ]
    description = parent.tags["mlflow.note.content"]
    assert "**Pareto front of review-test**: 5 points, hypervolume 1.2345" in description
    assert "![Pareto front](get-artifact?path=review%2Fpareto.png&run_uuid=parent)" in description
    tags = {run: store.runs[run].tags for run in store.runs}
    assert tags[run_id("t1")] == {"pareto": "true", "pareto_rounds": "1,2"}
    assert tags[run_id("t3")] == {"pareto": "true", "pareto_rounds": "1"}
    for trial in ("t2", "t5", "t6"):  # dominated, dominated, failed
        assert tags[run_id(trial)] == {"pareto": "false"}


def test_a_failing_review_step_is_a_warning_not_an_error(tmp_path):
    folder = make_sweep(tmp_path / "sweep")
    front = json.loads((folder / "pareto.json").read_text())["front"]
    (folder / "pareto.json").write_text("{broken")
    output = _record(folder, FakeStore(), FakeRun("parent"), front=front, rows=[])
    assert "review plots not recorded: NotASweep" in output
    folder = make_sweep(tmp_path / "other")
    output = _record(folder, FakeStore(fail=True), FakeRun("parent", fail=True))
    assert "review plots not recorded: ConnectionError" in output
    assert "pareto tags not recorded: ConnectionError" in output


def test_a_trial_run_logs_its_round_curves_where_asked_and_never_fails_on_them(tmp_path, caplog):
    # A sweep's trials draw none (a second of matplotlib each; MLflow charts the metrics).
    quiet = TrialRun(FakeRun("child"), tmp_path / "sweep-trial", name="magnitude-abc")
    quiet.rounds = [{"round": 1, "val_acc": 0.9, "test_acc": 0.9, "compression": 2.0}]
    quiet._log_round_curves()
    assert quiet.run.files == [] and not (tmp_path / "sweep-trial").exists()

    run = FakeRun("child")
    trial = TrialRun(run, tmp_path / "trial", name="magnitude-abc", curves=True)
    trial.rounds = [
        {"round": r, "val_acc": 0.9, "test_acc": 0.9, "compression": 2.0**r, "flops_ratio": 0.5}
        for r in range(3)
    ]
    trial._log_round_curves()
    assert run.files == [("round_curves.png", None)]
    assert (tmp_path / "trial" / "round_curves.png").is_file()

    broken = TrialRun(FakeRun("child", fail=True), tmp_path / "broken", name="x", curves=True)
    broken.rounds = trial.rounds
    broken._log_round_curves()  # logs a warning, raises nothing
    assert "round_curves.png not recorded: ConnectionError" in caplog.text


@pytest.mark.parametrize("uri", ["http://127.0.0.1:5000", "https://mlflow.example.org"])
def test_server_uris_are_told_from_local_stores(uri):
    """A server gets no file:// artifact folder from MlflowStore.open: it keeps its own."""
    assert is_server_uri(uri)
    assert not is_server_uri("sqlite:////tmp/x/mlflow.db")
    assert not is_server_uri("file:///tmp/mlruns")
