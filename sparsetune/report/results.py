"""The sweep folder's result files: `trials.csv` (one row per trial and round, failures too) and
`pareto.json` (one object per front point), with the columns the result schema names
(`sparsetune.results`)."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sparsetune.atomic import atomic_file, atomic_write_text
from sparsetune.results import FRONT_FIELDS, ROW_FIELDS


def front_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """A front point as pareto.json holds it: errors in percent, as the papers give them."""
    record = {field: row.get(field) for field in FRONT_FIELDS}
    record["val_error"] = round(100 * (1 - row["val_acc"]), 4)
    record["test_error"] = round(100 * (1 - row["test_acc"]), 4)
    return record


def write_pareto_json(path: Path, front: Sequence[Mapping[str, Any]], meta: Mapping) -> None:
    payload = {**meta, "front": [front_record(row) for row in front]}
    atomic_write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


def write_trials_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    with atomic_file(path) as staging, staging.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=ROW_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "params": json.dumps(row.get("params", {}), sort_keys=True)})
