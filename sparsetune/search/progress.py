"""Collects every (trial, round) result on the driver and prints live progress.

Ray's own reporter prints wide tables; a user walking away from a sweep wants one line: trials
done, running, failed, how big the front is now and its hypervolume. Each row is marked feasible
or not under the objective's constraint; the front holds feasible rows only, and the hypervolume
history gets one entry per finished trial.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune import Callback
from rich.console import Console

from sparsetune.report.live import is_live, progress_bar
from sparsetune.results import ROUND_METRICS
from sparsetune.search.hypervolume import hypervolume
from sparsetune.search.objectives import Objective
from sparsetune.search.pareto import ParetoFront
from sparsetune.search.space import params_from_flat
from sparsetune.train.loop import duration

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

# What a row takes from a trial's report: the round's metrics and the two TRIAL_KEYS the
# trainable reports with them; the others come from Ray's trial and its config.
REPORTED_KEYS = (*ROUND_METRICS, "config_hash", "run_id")


def _error_line(trial: Any) -> str:
    """The last line of a failed trial's exception: the reason, without the traceback.

    Ray writes the traceback to the trial's local error file before it calls the callbacks."""
    text = ""
    path = getattr(trial, "error_file", None)
    if path and Path(path).exists():
        text = Path(path).read_text(errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "the trial's worker failed without an error message"
    # "sparsetune.train.loop.TrainingDiverged: training loss ..." -> "TrainingDiverged: ..."
    kind, sep, message = lines[-1].partition(": ")
    return f"{kind.rpartition('.')[2]}: {message}" if sep and " " not in kind else lines[-1]


class SweepProgress(Callback):
    def __init__(
        self,
        objective: Objective,
        total: int,
        console: Console,
        key_params: dict[str, tuple[str, ...]],
        num_classes: int,
    ):
        self.objective = objective
        self.num_classes = num_classes
        self.hypervolume_history: list[dict[str, float]] = []
        self.total = total
        self.console = console
        self.key_params = key_params
        self.rows: list[dict[str, Any]] = []
        self.failures: dict[str, str] = {}
        self._failed_configs: dict[str, dict[str, Any]] = {}
        self.running: set[str] = set()
        self.done: set[str] = set()
        self._last_line = ""
        self._started = time.monotonic()  # this run of the driver: a resume starts the clock anew
        self._finished_before = 0  # trials a resumed sweep had finished: not this run's pace
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        # The front and the (trial, round) keys of `rows`, kept up to date as rows arrive (every
        # report reads the front: recomputing it over all rows grew with the sweep); rebuilt
        # from `rows` when None (restored state, a round reported again).
        self._front: ParetoFront | None = None
        self._row_keys: set[tuple[str, Any]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles the Tuner's callbacks with its state; a console and a live bar hold locks.
        return {
            **self.__dict__,
            "console": None,
            "_bar": None,
            "_task": None,
            "_front": None,
            "_row_keys": None,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._front = self._row_keys = None  # state saved by an older sparsetune lacks them
        self.console = Console(stderr=True)

    # Saved with Ray's experiment state and given back when a sweep is resumed, so that the
    # front, the rows and the counts cover the trials that finished before the driver was killed.
    # They match Ray's restored trials: both are saved at the same moment.
    STATE_KEYS = ("rows", "failures", "_failed_configs", "done", "hypervolume_history")

    def get_state(self) -> dict[str, Any] | None:
        return {key: getattr(self, key) for key in self.STATE_KEYS}

    def set_state(self, state: dict[str, Any]) -> None:
        for key in self.STATE_KEYS:
            if key in state:
                setattr(self, key, state[key])
        self._front = self._row_keys = None
        self._finished_before = len(self.done) + len(self.failures)

    def setup(self, *args: Any, **kwargs: Any) -> None:
        """Ray calls this as the Tuner starts: on a terminal a live bar, else plain lines."""
        self._started = time.monotonic()
        if self._bar is None and is_live(self.console):
            self._bar = progress_bar(self.console)
            self._bar.start()
            self._task = self._bar.add_task("trials", total=self.total)

    def on_experiment_end(self, trials: Any, **info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop the live bar (the sweep's end, or its interruption)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    # -- Ray callback hooks -------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        self.running.add(trial.trial_id)
        self._print()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        method, params = params_from_flat(trial.config)
        row = {key: result.get(key) for key in REPORTED_KEYS}
        row |= {
            "trial_id": trial.trial_id,
            "status": "ok",
            "feasible": self.objective.feasible(result),
            "method": method,
            "params": params,
            "key_params": {k: v for k, v in params.items() if k in self.key_params.get(method, ())},
        }
        # A trial restarted from a checkpoint may report a round again (a schedule that cannot
        # continue mid-way runs from the start): the newer report of a round replaces the older.
        key = (trial.trial_id, row["round"])
        if self._row_keys is None:
            self._row_keys = {(r["trial_id"], r["round"]) for r in self.rows}
        if key in self._row_keys:
            self.rows = [r for r in self.rows if (r["trial_id"], r["round"]) != key]
            self._front = None  # the replaced report may be on it
        self._row_keys.add(key)
        self.rows.append(row)
        if self._front is not None and row["feasible"]:
            self._front.add(row)
        self._print()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.running.discard(trial.trial_id)
        self.done.add(trial.trial_id)
        self.hypervolume_history.append(
            {"trials_done": len(self.done), "hypervolume": self.hypervolume()}
        )
        self._print()

    def on_trial_error(self, iteration, trials, trial, **info):
        self.running.discard(trial.trial_id)
        reason = _error_line(trial)
        self.failures[trial.trial_id] = reason
        method, params = params_from_flat(trial.config)
        self._failed_configs[trial.trial_id] = {
            "method": method,
            "params": params,
            "config_hash": trial.config.get("config_hash"),
        }
        self.console.print(f"[yellow]trial {trial.trial_id} ({method}) failed:[/] {reason}")
        self._print()

    # -- views --------------------------------------------------------------------------
    def front(self) -> list[dict[str, Any]]:
        """The feasible rows no other feasible row dominates, best first in the first metric."""
        if self._front is None:
            self._front = ParetoFront(self.objective.metrics, self.objective.modes)
            for row in self.rows:
                if row["feasible"]:
                    self._front.add(row)
        return self._front.points()

    def hypervolume(self, front: list[dict[str, Any]] | None = None) -> float:
        front = self.front() if front is None else front
        return hypervolume(front, self.objective.metrics, self.num_classes)

    def failure_rows(self) -> list[dict[str, Any]]:
        return [
            {
                **self._failed_configs[trial_id],
                "trial_id": trial_id,
                "status": "failed",
                "error": reason,
            }
            for trial_id, reason in self.failures.items()
        ]

    def timing(self) -> str:
        """Elapsed time, and the time left at this run's pace of finished trials."""
        elapsed = time.monotonic() - self._started
        finished = len(self.done) + len(self.failures)
        pace = finished - self._finished_before
        left = self.total - finished
        if left <= 0:
            return f"{duration(elapsed)} elapsed"
        eta = duration(elapsed / pace * left) if pace > 0 else "after the first trial"
        return f"{duration(elapsed)} elapsed, ETA {eta}"

    def _print(self) -> None:
        front = self.front()  # once per event: every result comes through here
        line = (
            f"trials: {len(self.done)} done, {len(self.running)} running, "
            f"{len(self.failures)} failed of {self.total} | front: {len(front)} points"
        )
        if self.objective.is_multi:
            line += f", hypervolume {self.hypervolume(front):.4f}"
        if line == self._last_line:
            return
        self._last_line = line
        if self._bar is not None and self._task is not None:
            finished = len(self.done) + len(self.failures)
            self._bar.update(self._task, description=line, completed=finished)
        else:
            self.console.print(f"{line} | {self.timing()}", highlight=False)
