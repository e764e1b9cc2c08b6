"""One trial's MLflow run: its parameters, a metric point per round (MLflow charts them against
the round), the latest architecture string as the `architecture` tag, as artifacts (under
`ticket/`) each round's ticket, per-layer table and architecture string, and at the end where
asked (`sparsetune prune`) `round_curves.png` (accuracy and compression against round). Used by
the sweep's trainable (a child run of the sweep: no picture, since drawing one cost a trial about
a second of matplotlib, and MLflow charts the same per-round metrics on the run page) and by
`sparsetune prune` (a run of its own)."""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

from sparsetune.atomic import atomic_write_text
from sparsetune.config import TrialConfig
from sparsetune.results import CURVE_KEYS
from sparsetune.tracking.mlflow_store import MlflowRun, MlflowStore
from sparsetune.trial import RoundResult
from sparsetune.trial.clock import PhaseClock

logger = logging.getLogger(__name__)


def write_round_files(result: RoundResult, folder: Path) -> list[Path]:
    """The per-layer table and the architecture string of one round, next to its ticket."""
    folder.mkdir(parents=True, exist_ok=True)
    table = folder / f"round-{result.round}-layers.csv"
    rows = [layer.as_row() for layer in result.report.layers]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    # Atomic: a worker killed mid-write must not leave a table cut short for the MLflow upload
    # of its retry (or for a reader) to pick up.
    atomic_write_text(table, text.getvalue())
    architecture = folder / f"round-{result.round}-architecture.json"
    atomic_write_text(
        architecture, json.dumps({"architecture": result.architecture, "layers": rows}, indent=2)
    )
    return [table, architecture]


class TrialRun:
    """Records one trial in an MLflow run as its rounds arrive."""

    def __init__(self, run: MlflowRun, workdir: Path, name: str = "", curves: bool = False):
        self.run = run
        self.curves = curves  # draw round_curves.png at the end
        self.name = name
        self.run_id = run.run_id
        self.workdir = workdir
        self.rounds: list[dict[str, float]] = []

    @classmethod
    def start(
        cls,
        store: MlflowStore,
        name: str,
        config: TrialConfig,
        config_hash: str,
        workdir: Path,
        parent: str | None = None,
        tags: dict[str, str] | None = None,
        curves: bool = False,
    ) -> TrialRun:
        run = store.start_run(
            name,
            parent=parent,
            tags={"config_hash": config_hash, "method": config.method, **(tags or {})},
        )
        run.log_params({"method": config.method, **config.method_config().model_dump()})
        return cls(run, workdir, name, curves)

    @classmethod
    def resume(cls, run: MlflowRun, workdir: Path, name: str = "") -> TrialRun:
        """Continue the run of a trial that Ray restarted (its worker died, or the sweep's driver
        was killed and resumed): the same run, marked running again, with the rounds it already
        holds, so that a round recorded before is not recorded twice."""
        recorded: dict[int, dict[str, float]] = {}
        for key in CURVE_KEYS:
            for point in run.client.get_metric_history(run.run_id, key):
                recorded.setdefault(int(point.step), {})[key] = point.value
        trial_run = cls(run, workdir, name)
        trial_run.rounds = [recorded[step] for step in sorted(recorded)]
        restarts = int(run.client.get_run(run.run_id).data.tags.get("restarts", "0")) + 1
        run.reopen()
        run.set_tags({"restarts": str(restarts)})  # how often the trial was continued
        return trial_run

    def set_tags(self, tags: dict[str, str]) -> None:
        self.run.set_tags(tags)

    def record_round(self, result: RoundResult) -> None:
        if any(int(row["round"]) == result.round for row in self.rounds if "round" in row):
            return  # recorded before a restart; the restarted trial computed it again
        files = [result.ticket_path, *write_round_files(result, self.workdir)]
        # One request: the round's metrics, and its architecture as a tag (a tag shows in the runs
        # table and on the run page without opening an artifact).
        self.run.log_metrics(
            result.metrics(), step=result.round, tags={"architecture": result.architecture}
        )
        self.run.log_files([f for f in files if f is not None], artifact_path="ticket")
        self.rounds.append({key: getattr(result, key) for key in CURVE_KEYS})

    def finish(self, clock: PhaseClock | None = None) -> None:
        initial = self.workdir / "init.safetensors"
        if initial.exists():
            self.run.log_files([initial], artifact_path="ticket")
        self._log_round_curves()
        self.run.finish(metrics=_timings(clock))

    def fail(self, error: BaseException, clock: PhaseClock | None = None) -> None:
        self.run.set_tags({"error": f"{type(error).__name__}: {error}"[:5000]})
        self._log_round_curves()
        self.run.finish(failed=True, metrics=_timings(clock))

    def _log_round_curves(self) -> None:
        """A picture for the run page; never the reason a trial fails."""
        if not (self.curves and self.rounds):
            return
        try:
            from sparsetune.report.plots import round_curves_png

            self.workdir.mkdir(parents=True, exist_ok=True)
            path = round_curves_png(self.rounds, self.workdir / "round_curves.png", title=self.name)
            self.run.log_files([path])
        except Exception as error:  # a plot or an upload: report it and go on
            logger.warning("round_curves.png not recorded: %s: %s", type(error).__name__, error)


def _timings(clock: PhaseClock | None) -> dict[str, float]:
    """Where the trial's time went (`time_<phase>_s`), recorded with its end."""
    return {} if clock is None else clock.metrics()
