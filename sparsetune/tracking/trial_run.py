"""One trial's MLflow run: its parameters, a metric point per round, and as artifacts (under
`ticket/`) each round's ticket, per-layer table and architecture string. Used by the sweep's
trainable (a child run of the sweep) and by `sparsetune prune` (a run of its own)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from sparsetune.config import TrialConfig
from sparsetune.tracking.mlflow_store import MlflowRun, MlflowStore
from sparsetune.trial import RoundResult


def write_round_files(result: RoundResult, folder: Path) -> list[Path]:
    """The per-layer table and the architecture string of one round, next to its ticket."""
    folder.mkdir(parents=True, exist_ok=True)
    table = folder / f"round-{result.round}-layers.csv"
    rows = [layer.as_row() for layer in result.report.layers]
    with table.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    architecture = folder / f"round-{result.round}-architecture.json"
    architecture.write_text(
        json.dumps({"architecture": result.architecture, "layers": rows}, indent=2)
    )
    return [table, architecture]


class TrialRun:
    """Records one trial in an MLflow run as its rounds arrive."""

    def __init__(self, run: MlflowRun, workdir: Path):
        self.run = run
        self.run_id = run.run_id
        self.workdir = workdir

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
    ) -> TrialRun:
        run = store.start_run(
            name,
            parent=parent,
            tags={"config_hash": config_hash, "method": config.method, **(tags or {})},
        )
        run.log_params({"method": config.method, **config.method_config().model_dump()})
        return cls(run, workdir)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.run.set_tags(tags)

    def record_round(self, result: RoundResult) -> None:
        files = [result.ticket_path, *write_round_files(result, self.workdir)]
        self.run.log_metrics(result.metrics(), step=result.round)
        self.run.log_files([f for f in files if f is not None], artifact_path="ticket")

    def finish(self) -> None:
        initial = self.workdir / "init.safetensors"
        if initial.exists():
            self.run.log_files([initial], artifact_path="ticket")
        self.run.finish()

    def fail(self, error: BaseException) -> None:
        self.run.set_tags({"error": f"{type(error).__name__}: {error}"[:5000]})
        self.run.finish(failed=True)
