"""What a sweep keeps of itself: the state file and the MLflow parent run it opens before any
trial runs, and the result files and review it writes when it ends.

A sweep keeps three records that must stay in step: Ray's experiment, Optuna's study and MLflow's
parent run. Their names come from the state file (`sweep-state.json`, see `state.py`), written
before any of them exists, so that a sweep killed at any later point can be resumed into the same
three. At the end the folder gets `pareto.json`, `trials.csv` and `sweep.json`, and the parent run
gets them too, with the front's metrics and what a reviewer opens first (`record_review`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rich.console import Console

from sparsetune.atomic import atomic_write_text
from sparsetune.report.results import write_pareto_json, write_trials_csv
from sparsetune.search.options import SweepConfig
from sparsetune.search.state import SweepState
from sparsetune.tracking import default_tracking_uri

if TYPE_CHECKING:
    from sparsetune.tracking.mlflow_store import MlflowRun, MlflowStore

# The tag on each trial's child run that names its Ray trial: how a restarted trial finds its run,
# and how the sweep finds the runs of trials that failed before they reported a run id.
RAY_TRIAL_TAG = "ray_trial_id"
# How a run of the sweep ended: Ray ran it to its end; it raised; a stop signal ended it.
SweepEnd = Literal["finished", "failed", "interrupted"]


@dataclass(frozen=True)
class SweepRecords:
    """The open records of a running sweep: its folder, its state, its MLflow parent run."""

    sweep_dir: Path
    state: SweepState
    store: MlflowStore
    parent: MlflowRun

    @property
    def tracking_uri(self) -> str:
        return self.state.tracking_uri

    def child_run_ids(self) -> dict[str, str]:
        """Ray trial id -> the MLflow child run the trial records into."""
        return self.store.child_runs_by_tag(self.parent.run_id, RAY_TRIAL_TAG)

    def close(self, ended: SweepEnd) -> None:
        """End the parent run (FINISHED, FAILED, or KILLED when a stop signal ended the sweep);
        the state says "finished" only when Ray ran the sweep to its end: anything else can be
        resumed, and a resume sets the parent run back to RUNNING (`open_records`)."""
        if ended == "interrupted":
            self.parent.client.set_terminated(self.parent.run_id, "KILLED")
        else:
            if ended == "finished":
                # Trials that Ray stopped early (ASHA, the dominance rule, the budget) end their
                # runs as they stopped, after their last reported round: not failed.
                for run in self.store.running_children(self.parent.run_id):
                    run.set_tags({"stopped_early": "true"})
                    run.finish()
            self.parent.finish(failed=ended == "failed")
        status = "finished" if ended == "finished" else "running"
        self.state.with_(status=status).write(self.sweep_dir)


def open_records(
    sweep: SweepConfig,
    space: Any,
    resume: SweepState | None,
    console: Console,
    *,
    parent_params: Mapping[str, Any],
    parent_tags: Mapping[str, Any],
) -> SweepRecords:
    """Write the state file (its names are what a resumed sweep reopens), then open the MLflow
    parent run: the resumed sweep's own when it still exists, else a new one with `parent_params`
    and `parent_tags`; the state then names it. Called before the searcher and the Tuner exist."""
    from sparsetune.tracking.mlflow_store import MlflowStore

    sweep_dir = sweep.sweep_dir
    sweep_dir.mkdir(parents=True, exist_ok=True)
    tracking_uri = (
        resume.tracking_uri if resume else sweep.tracking_uri or default_tracking_uri(sweep_dir)
    )
    state = resume or SweepState.new(sweep, space, tracking_uri)
    state.write(sweep_dir)  # a sweep killed at any point after this line can be resumed
    store = MlflowStore.open(tracking_uri, sweep.experiment_name, sweep_dir / "mlartifacts")
    if resume and resume.parent_run_id and store.run(resume.parent_run_id).exists():
        parent = store.run(resume.parent_run_id)
        parent.reopen()
        parent.set_tags({"resumed": str(resume.resumed + 1)})
        console.print(f"resuming sweep {state.sweep_id} in {sweep_dir}", highlight=False)
    else:
        parent = store.start_run(f"sweep-{state.sweep_id}", tags=parent_tags)
        parent.log_params(parent_params)
    state = state.with_(parent_run_id=parent.run_id, resumed=state.resumed + (1 if resume else 0))
    state.write(sweep_dir)
    return SweepRecords(sweep_dir, state, store, parent)


def write_results(
    records: SweepRecords,
    sweep: SweepConfig,
    front: Sequence[Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]],
    meta: Mapping[str, Any],
) -> None:
    """The sweep folder's `pareto.json` (`meta` and the front), `trials.csv` and `sweep.json`."""
    folder = records.sweep_dir
    write_pareto_json(folder / "pareto.json", front, meta)
    write_trials_csv(folder / "trials.csv", rows)
    atomic_write_text(folder / "sweep.json", json.dumps(sweep.model_dump(mode="json"), indent=2))


def log_results(
    records: SweepRecords,
    front: Sequence[Mapping[str, Any]],
    counts: Mapping[str, int],
    hypervolume_history: Sequence[Mapping[str, float]],
    final: Mapping[str, float],
) -> None:
    """The results on the parent run: `counts` as metrics, the hypervolume as a curve over
    trials done (ending at `final`), the front's run ids as a tag, the result files."""
    # A curve in the MLflow UI, step = trials done, one point a step: the run page shows the
    # last step's value, so `final` replaces a point of its step.
    curve = {int(entry["trials_done"]): entry["hypervolume"] for entry in hypervolume_history}
    curve[int(final["trials_done"])] = final["hypervolume"]
    records.parent.log_points(
        [(key, value, 0) for key, value in counts.items()]
        + [("hypervolume", value, step) for step, value in sorted(curve.items())],
        tags={"pareto_run_ids": ",".join(sorted({str(r["run_id"]) for r in front}))[:5000]},
    )
    records.parent.log_files([records.sweep_dir / "pareto.json", records.sweep_dir / "trials.csv"])


def drop_lost_child_runs(records: SweepRecords, known: set[str]) -> None:
    """Child runs of trials that Ray lost when the driver was killed (started, not yet saved in
    its state; `known`: the trial ids Ray did keep): the resumed sweep ran other trials in their
    place, and their Optuna trials are marked failed. They are deleted (MLflow keeps deleted
    runs, restorable), tagged why first, so that the parent holds one child run per trial."""
    for trial_id, run_id in records.child_run_ids().items():
        if trial_id not in known:
            records.store.run(run_id).set_tags({"sparsetune.lost": "its Ray trial was not saved"})
            records.store.client.delete_run(run_id)


def record_review(sweep_dir: Path, store, parent, front, rows, console: Console) -> None:
    """What a reviewer needs on the MLflow parent run: the Pareto plot (PNG and interactive
    HTML) and the front as a table under `review/`, and the plot with a summary as the run's
    description, so that it shows on the run page itself; and `pareto=true` or `false` on each
    child run, so that the runs table filters to the front (`tags.pareto = 'true'`). A failure
    here is a warning: the sweep's results are already written."""
    try:
        from sparsetune.report.review import load_sweep, run_description, write_review
        from sparsetune.tracking.mlflow_store import DESCRIPTION_TAG

        files = write_review(sweep_dir)
        parent.log_files(files, artifact_path="review")
        description = run_description(load_sweep(sweep_dir), parent.run_id, folder="review")
        parent.set_tags({DESCRIPTION_TAG: description})
    except Exception as error:
        console.print(f"[yellow]review plots not recorded:[/] {type(error).__name__}: {error}")
    rounds_on_front: dict[str, list[int]] = {}
    for row in front:
        if row.get("run_id"):
            rounds_on_front.setdefault(str(row["run_id"]), []).append(int(row["round"]))
    try:
        for run_id in sorted({str(r["run_id"]) for r in rows if r.get("run_id")}):
            rounds = sorted(set(rounds_on_front.get(run_id, [])))
            tags = {"pareto": "true" if rounds else "false"}
            if rounds:
                tags["pareto_rounds"] = ",".join(map(str, rounds))
            store.run(run_id).set_tags(tags)
    except Exception as error:
        console.print(f"[yellow]pareto tags not recorded:[/] {type(error).__name__}: {error}")
