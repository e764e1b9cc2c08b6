"""`sparsetune list` and `sparsetune status`: sweeps found under a folder, each running (a process
holds its lock, named), stopped (resumable) or finished, with counts from pareto.json once
finished and from the real Optuna study while not. Read only: nothing is written or locked."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import optuna
import pytest
from review_helpers import make_sweep

from sparsetune.cli import main
from sparsetune.search.hypervolume import hypervolume
from sparsetune.search.lock import sweep_folder_lock
from sparsetune.search.rounds import SOURCE_ATTR
from sparsetune.search.state import SweepState

CONFIG = {"model": "lenet300", "dataset": "fashion-mnist", "objective": "pareto", "trials": 8}


def write_state(folder: Path, status: str, started: float, experiment: str) -> SweepState:
    folder.mkdir(parents=True, exist_ok=True)
    state = SweepState(
        sweep_id=f"sweep-{experiment}",
        status=status,
        identity={"model": "lenet300"},
        config=CONFIG | {"experiment": experiment},
        study_name=f"{experiment}-study",
        ray_name=f"sweep-{experiment}",
        tracking_uri=f"sqlite:///{folder / 'mlflow.db'}",
        started=started,
    )
    state.write(folder)
    return state


def write_study(folder: Path, state: SweepState) -> list[dict]:
    """A real Optuna study as a sweep leaves it mid-way: two trials done, one failed, one
    running, and an earlier round added beside the first (`search/rounds.py`)."""
    study = optuna.create_study(
        study_name=state.study_name,
        storage=f"sqlite:///{folder / 'optuna.db'}",
        directions=["maximize", "maximize"],
    )
    with warnings.catch_warnings():  # experimental in Optuna; the sweep's searcher sets it so
        warnings.simplefilter("ignore")
        study.set_metric_names(["val_acc", "compression"])
    study.set_user_attr("num_classes", 10)
    values = [(0.85, 4.0), (0.80, 12.0)]
    for accuracy, compression in values:
        trial = study.ask()
        trial.set_user_attr("feasible", True)
        study.tell(trial, [accuracy, compression])
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    study.ask()  # running
    study.add_trial(
        optuna.trial.create_trial(values=[0.88, 2.0], user_attrs={SOURCE_ATTR: 0, "feasible": True})
    )
    return [{"val_acc": a, "compression": c} for a, c in [*values, (0.88, 2.0)]]


@pytest.fixture
def runs(tmp_path) -> Path:
    root = tmp_path / "runs"
    finished = make_sweep(root / "finished")
    pareto = json.loads((finished / "pareto.json").read_text())
    pareto["trials"] = {"requested": 8, "finished": 7, "failed": 1, "infeasible": 0}
    (finished / "pareto.json").write_text(json.dumps(pareto))
    write_state(finished, "finished", 1_800_000_000.0, "done-one")
    stopped = root / "stopped"
    write_study(stopped, write_state(stopped, "running", 1_800_000_100.0, "killed-one"))
    nested = root / "nightly" / "20270115"  # a scheduled sweep's dated sweep, a level down
    write_study(nested, write_state(nested, "running", 1_800_000_200.0, "held-one"))
    (root / "not-a-sweep").mkdir()
    return root


def cli(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code or 0, captured.out, captured.err


def listing(folder: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in sorted(folder.rglob("*"))}


def test_list_finds_every_sweep_with_its_status_and_counts(runs, capsys):
    held = runs / "nightly" / "20270115"
    with sweep_folder_lock(held):  # as a running sweep holds it
        before = listing(runs)
        code, out, err = cli(capsys, "list", "--root", str(runs), "--json")
        assert code == 0, err
        sweeps = {Path(s["folder"]).name: s for s in json.loads(out)}
        # table form, in the same process and moment
        code, table, _ = cli(capsys, "list", "--root", str(runs))
        assert listing(runs) == before  # read only
    assert code == 0
    assert list(sweeps) == ["finished", "stopped", "20270115"]  # oldest first

    recorded = json.loads((runs / "finished" / "pareto.json").read_text())
    finished = sweeps["finished"]
    assert finished["status"] == "finished" and finished["experiment"] == "done-one"
    assert finished["front"] == len(recorded["front"])
    assert finished["hypervolume"] == recorded["hypervolume"]
    assert (finished["finished"], finished["failed"]) == (7, 1)

    stopped = sweeps["stopped"]
    assert stopped["status"] == "stopped" and stopped["holder"] is None
    # The study's own trials, not the round added beside them.
    assert (stopped["finished"], stopped["failed"], stopped["running"]) == (2, 1, 1)
    rows = [
        {"val_acc": 0.85, "compression": 4.0},
        {"val_acc": 0.80, "compression": 12.0},
        {"val_acc": 0.88, "compression": 2.0},
    ]
    assert stopped["front"] == 3
    assert stopped["hypervolume"] == pytest.approx(
        hypervolume(rows, ["val_acc", "compression"], 10)
    )

    running = sweeps["20270115"]
    assert running["status"] == "running" and f"pid {os.getpid()}" in running["holder"]

    for name, status in (("finished", "finished"), ("stopped", "stopped")):
        assert name in table and status in table
    assert "nightly/20270115" in table and "running" in table


def test_status_says_how_a_sweep_stands_and_how_to_continue_it(runs, capsys):
    code, out, err = cli(capsys, "status", str(runs / "stopped"))
    assert code == 0, err
    assert "status: stopped" in out
    assert f"sparsetune search --resume {(runs / 'stopped').resolve()}" in out
    assert "trials: 2 done, 1 failed, 1 running of 8" in out
    code, out, _ = cli(capsys, "status", str(runs / "finished"), "--json")
    assert code == 0 and json.loads(out)["status"] == "finished"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["list", "--root", "{tmp}/nowhere"], ["--root", "nowhere", "not a folder"]),
        (["status", "{tmp}/runs/not-a-sweep"], ["not-a-sweep", "sweep-state.json"]),
    ],
    ids=["list-no-root", "status-not-a-sweep"],
)
def test_bad_folders_are_one_line_and_exit_2(runs, capsys, args, words):
    tmp = runs.parent
    code, out, err = cli(capsys, *[a.replace("{tmp}", str(tmp)) for a in args])
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1
    assert lines[0].startswith("sparsetune: error: ")
    assert all(word in lines[0] for word in words), lines[0]
