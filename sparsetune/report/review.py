"""A finished sweep, ready to review without MLflow: from the sweep folder's `pareto.json` and
`trials.csv`, write the Pareto plot (`pareto.png`, `pareto.html`) and the front as a table
(`front.csv`) next to them. `sparsetune report DIR` calls this; so does the sweep when it ends,
and logs the same files to its MLflow parent run.

Everything is read and checked before anything is written: a folder that is not a sweep's gets a
`NotASweep` error and no file.
"""

from __future__ import annotations

import contextlib
import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sparsetune.atomic import atomic_file
from sparsetune.report.plots import ParetoPlot, pareto_html, pareto_png
from sparsetune.report.published import PublishedPoint, published_points
from sparsetune.results import FRONT_FIELDS, ParetoFile, read_json_record, read_trials_csv

REVIEW_FILES = ("pareto.png", "pareto.html", "front.csv")
# `front.csv`: pareto.json's fields, the method first and the long params last, for a reader.
FRONT_CSV_FIELDS = (
    "method",
    *(name for name in FRONT_FIELDS if name not in ("method", "params")),
    "params",
)


class NotASweep(ValueError):
    """The folder holds no readable sweep results."""


@dataclass(frozen=True)
class SweepResults:
    folder: Path
    meta: dict[str, Any]
    front: list[dict[str, Any]]
    rows: list[dict[str, Any]]

    @property
    def experiment(self) -> str:
        return str(self.meta.get("experiment") or self.folder.name)

    @property
    def model(self) -> str | None:
        return self.meta.get("model")

    @property
    def dataset(self) -> str | None:
        return self.meta.get("dataset")

    @property
    def objective_metrics(self) -> list[str]:
        return list((self.meta.get("objective") or {}).get("metrics") or [])

    @property
    def hypervolume(self) -> float | None:
        value = self.meta.get("hypervolume")
        return None if value is None else float(value)

    def published(self) -> list[PublishedPoint]:
        return published_points(self.model, self.dataset)

    def summary(self) -> dict[str, Any]:
        """What `search --json` and `report --json` print: pareto.json as written (the sweep's
        record: objective, hypervolume, trials, the front with every point's run id), with the
        folder it was read from."""
        return {"sweep_dir": str(self.folder), **self.meta, "front": self.front}


# Where a damaged result file can be had again: the sweep logged both to its MLflow parent run.
_RESTORE = "restore it from the sweep's MLflow parent run (its artifacts hold a copy)"


def load_sweep(folder: Path) -> SweepResults:
    """Read a sweep folder's results; NotASweep (one line) when they are missing or are not
    files this version writes (checked whole: types, required keys, finite numbers)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotASweep(f"{folder}: not a folder; pass the sweep folder (sparsetune search --out)")
    pareto, trials = folder / "pareto.json", folder / "trials.csv"
    for path in (pareto, trials):
        if not path.exists():
            raise NotASweep(
                f"{folder}: no {path.name}; pass the folder a finished `sparsetune search` wrote"
            )
    try:
        recorded = read_json_record(pareto, ParetoFile)
    except ValueError as error:
        raise NotASweep(f"{pareto}: not a sparsetune pareto.json ({error}); {_RESTORE}") from None
    try:
        rows = [row.model_dump(mode="json") for row in read_trials_csv(trials)]
    except ValueError as error:
        raise NotASweep(f"{trials}: not a sparsetune trials.csv ({error}); {_RESTORE}") from None
    meta = recorded.model_dump(mode="json", exclude_unset=True, exclude={"front"})
    front = [record.model_dump(mode="json") for record in recorded.front]
    for row in rows:
        row["feasible"] = bool(row["feasible"])
    return SweepResults(folder, meta, front, [r for r in rows if r["status"] == "ok"])


def _write_front_csv(path: Path, front: list[dict[str, Any]]) -> Path:
    with atomic_file(path) as staging, staging.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FRONT_CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for record in sorted(front, key=lambda r: float(r.get("compression") or 0)):
            writer.writerow(
                {
                    **record,
                    "params": json.dumps(record.get("params") or {}, sort_keys=True),
                    "key_params": json.dumps(record.get("key_params") or {}, sort_keys=True),
                }
            )
    return path


def plot_title(results: SweepResults) -> str:
    return f"{results.experiment}: {results.model} on {results.dataset}"


def write_review(sweep_dir: Path) -> list[Path]:
    """Write pareto.png, pareto.html and front.csv into the sweep folder; return their paths."""
    results = load_sweep(sweep_dir)
    published = results.published()
    # A staircase is the front's outline only when the front is 2-D over these two axes.
    staircase = sorted(results.objective_metrics) == ["compression", "val_acc"]
    title = plot_title(results)
    notes = []
    if results.hypervolume is not None:
        notes.append(
            f"Hypervolume {results.hypervolume:.4f} "
            f"({results.meta.get('hypervolume_axes', 'see pareto.json')})."
        )
    notes.append(
        f"{len(published)} published points for {results.model} on {results.dataset}."
        if published
        else f"No published points for {results.model} on {results.dataset}: the papers' "
        "numbers are drawn only where model and dataset match."
    )
    plot = ParetoPlot(results.rows, results.front, published, title=title, staircase=staircase)
    written = [results.folder / name for name in REVIEW_FILES]
    # All three or none: each is written to its staging name, and moved into place only when
    # every one was written (an error removes the staged files and leaves the folder as it was).
    with contextlib.ExitStack() as stack:
        png, html, table = (stack.enter_context(atomic_file(path)) for path in written)
        pareto_png(plot, png)
        pareto_html(plot, html, notes=notes)
        _write_front_csv(table, results.front)
    return written


def run_description(results: SweepResults, run_id: str, folder: str = "review") -> str:
    """Markdown for the MLflow parent run's description: the front in one line and the Pareto
    plot itself. The image address is relative (`get-artifact?...`, the route MLflow's UI uses
    for artifacts), so it works on whatever host and prefix the UI is served from."""
    size = len(results.front)
    lines = [f"**Pareto front of {results.experiment}**: {size} points"]
    if results.hypervolume is not None:
        lines[0] += f", hypervolume {results.hypervolume:.4f}"
    lines[0] += f" ({results.model} on {results.dataset})."
    lines.append(
        f"Interactive plot: Artifacts, `{folder}/pareto.html`; table: `{folder}/front.csv`; "
        "front runs: filter the runs with `tags.pareto = 'true'`."
    )
    image = quote(f"{folder}/pareto.png", safe="")
    lines.append(f"![Pareto front](get-artifact?path={image}&run_uuid={run_id})")
    return "\n\n".join(lines) + "\n"
