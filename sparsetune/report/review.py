"""A finished sweep, ready to review without MLflow: from the sweep folder's `pareto.json` and
`trials.csv`, write the Pareto plot (`pareto.png`, `pareto.html`) and the front as a table
(`front.csv`) next to them. `sparsetune report DIR` calls this; so does the sweep when it ends,
and logs the same files to its MLflow parent run.

Everything is read and checked before anything is written: a folder that is not a sweep's gets a
`NotASweep` error and no file.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_type_hints
from urllib.parse import quote

from sparsetune.atomic import atomic_file
from sparsetune.report.plots import ParetoPlot, pareto_html, pareto_png
from sparsetune.report.published import PublishedPoint, published_points
from sparsetune.results import FRONT_FIELDS, ROW_FIELDS, RoundMetrics

REVIEW_FILES = ("pareto.png", "pareto.html", "front.csv")
# `front.csv`: pareto.json's fields, the method first and the long params last, for a reader.
FRONT_CSV_FIELDS = (
    "method",
    *(name for name in FRONT_FIELDS if name not in ("method", "params")),
    "params",
)


def _row_fields_of_type(kind: type) -> tuple[str, ...]:
    """The `trials.csv` columns that hold a round metric of type `kind` (or `kind | None`)."""
    hints = get_type_hints(RoundMetrics)
    return tuple(
        name
        for name in ROW_FIELDS
        if name in hints and kind in (hints[name], *get_args(hints[name]))
    )


# How to read `trials.csv` back: its numeric columns, from the result schema's types.
_FLOATS = _row_fields_of_type(float)
_INTS = _row_fields_of_type(int)


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


def _parse_row(raw: dict[str, str]) -> dict[str, Any]:
    row: dict[str, Any] = dict(raw)
    for key in _FLOATS:
        row[key] = float(raw[key]) if raw.get(key) not in (None, "") else None
    for key in _INTS:
        row[key] = int(float(raw[key])) if raw.get(key) not in (None, "") else None
    row["feasible"] = raw.get("feasible") == "True"
    try:
        row["params"] = json.loads(raw.get("params") or "{}")
    except ValueError:
        row["params"] = {}
    return row


def load_sweep(folder: Path) -> SweepResults:
    """Read a sweep folder's results; NotASweep (one line) when they are missing or unreadable."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotASweep(f"{folder}: not a folder; pass the sweep folder (sparsetune search --out)")
    pareto, trials = folder / "pareto.json", folder / "trials.csv"
    for path in (pareto, trials):
        if not path.is_file():
            raise NotASweep(
                f"{folder}: no {path.name}; pass the folder a finished `sparsetune search` wrote"
            )
    try:
        meta = json.loads(pareto.read_text())
    except (OSError, ValueError) as error:
        raise NotASweep(f"{pareto}: not readable JSON ({error})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("front"), list):
        raise NotASweep(f"{pareto}: no 'front' list; is it a sparsetune pareto.json?")
    try:
        with trials.open(newline="") as handle:
            rows = [_parse_row(raw) for raw in csv.DictReader(handle)]
    except (OSError, ValueError, csv.Error) as error:
        raise NotASweep(f"{trials}: not readable ({error})") from None
    front = meta.pop("front")
    return SweepResults(folder, meta, front, [r for r in rows if r.get("status") == "ok"])


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
    folder = results.folder
    return [
        pareto_png(plot, folder / "pareto.png"),
        pareto_html(plot, folder / "pareto.html", notes=notes),
        _write_front_csv(folder / "front.csv", results.front),
    ]


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
