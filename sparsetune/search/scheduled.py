"""What `sparsetune sweep SPEC` does this time, read from the sweep folders a spec keeps: resume
an unfinished sweep, start a new one, or nothing; and the points a new sweep tries first (the
fronts of the earlier sweeps: the warm start).

A spec's sweeps for one model live in one base folder: the base folder itself (`new_sweep:
never`) or dated subfolders of it (`daily`: `YYYY-MM-DD`, `always`: `YYYY-MM-DDTHHMMSS`), so
their names sort by time. Light on purpose: no Ray, no Optuna, no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Json

from sparsetune.results import Name, Params, TrialId, read_json_record, read_trials_csv
from sparsetune.search.enqueue import Enqueued, flat_point
from sparsetune.search.space import SearchSpace
from sparsetune.search.state import SweepState, read_state

Action = Literal["resume", "start", "nothing"]


@dataclass(frozen=True)
class Plan:
    action: Action
    folder: Path  # the sweep to resume or start, or (nothing) the latest finished one
    earlier: list[Path] = field(default_factory=list)  # finished sweeps, oldest first

    def describe(self, model: str) -> str:
        if self.action == "resume":
            return f"{model}: resume the unfinished sweep in {self.folder}"
        if self.action == "start":
            return f"{model}: start a new sweep in {self.folder}"
        return (
            f"{model}: nothing to do; the sweep in {self.folder} has finished (results in "
            f"{self.folder / 'pareto.json'})"
        )


def sweeps_in(base: Path) -> list[tuple[Path, SweepState]]:
    """The sweeps under `base` (itself, then its subfolders by name), with their states.
    ValueError (one line) for a state file that cannot be read."""
    found = []
    candidates = [base, *sorted(p for p in base.iterdir() if p.is_dir())] if base.is_dir() else []
    for folder in candidates:
        state = read_state(folder)
        if state is not None:
            found.append((folder, state))
    return found


def plan_sweep(base: Path, new_sweep: str, now: datetime | None = None) -> Plan:
    """Decide for one model's base folder. `now` is UTC (a parameter for tests)."""
    now = now or datetime.now(UTC)
    sweeps = sweeps_in(base)
    unfinished = [folder for folder, state in sweeps if state.status != "finished"]
    finished = [(folder, state) for folder, state in sweeps if state.status == "finished"]
    earlier = [folder for folder, _ in finished]
    if unfinished:  # the last one started; an older unfinished one waits for its turn
        return Plan("resume", unfinished[-1], earlier)
    if new_sweep == "never":
        return Plan("nothing", base, earlier) if finished else Plan("start", base, earlier)
    if new_sweep == "daily":
        today = now.strftime("%Y-%m-%d")
        for folder, state in finished:
            started = datetime.fromtimestamp(state.started, UTC).strftime("%Y-%m-%d")
            if folder.name == today or started == today:
                return Plan("nothing", folder, earlier)
        return Plan("start", base / today, earlier)
    folder = base / now.strftime("%Y-%m-%dT%H%M%S")
    suffix = 2
    while folder.exists():  # two runs within a second
        folder = base / f"{now.strftime('%Y-%m-%dT%H%M%S')}-{suffix}"
        suffix += 1
    return Plan("start", folder, earlier)


class _Point(BaseModel):
    """What the warm start takes of a front record: its method and params (or the trial whose
    params trials.csv holds). The rest of the record is the review's business."""

    model_config = ConfigDict(strict=True)

    method: Name
    params: Params | None = None
    trial_id: TrialId | None = None


class _Front(BaseModel):
    model_config = ConfigDict(strict=True)

    front: list[_Point]


class _ParamsRow(BaseModel):
    trial_id: TrialId
    params: Json[Params]


def front_points(
    folders: list[Path], skipped: list[str] | None = None
) -> list[tuple[str, str, dict[str, Any]]]:
    """(where, method, params) of every front point of the sweeps in `folders`, newest sweep
    first, each point once. A record without params takes them from the sweep's trials.csv.
    A sweep whose records are missing or damaged gives none; for a damaged one a line is added
    to `skipped` (the warm start is a head start, not a reason to stop a scheduled sweep)."""
    points, seen = [], set()
    for folder in reversed(folders):
        path = folder / "pareto.json"
        try:
            front = read_json_record(path, _Front).front if path.exists() else []
            csv_params = _csv_params(folder) if any(p.params is None for p in front) else {}
        except ValueError as error:
            if skipped is not None:
                skipped.append(f"{folder}: its records are not readable ({error})")
            continue
        for index, point in enumerate(front, start=1):
            params = point.params if point.params is not None else csv_params.get(point.trial_id)
            if params is None:
                continue
            key = json.dumps([point.method, params], sort_keys=True)
            if key not in seen:
                seen.add(key)
                where = f"warm start {path.parent.name}: point {index}"
                points.append((where, point.method, params))
    return points


def _csv_params(folder: Path) -> dict[str | None, dict[str, Any]]:
    path = folder / "trials.csv"
    if not path.exists():
        return {}
    return {row.trial_id: row.params for row in read_trials_csv(path, _ParamsRow)}


def warm_start(folders: list[Path], space: SearchSpace) -> Enqueued:
    """The earlier fronts as points to try first, checked against this sweep's space: a point
    that no longer fits (a method dropped, a range narrowed) is skipped and named."""
    result = Enqueued([])
    for where, method, params in front_points(folders, result.skipped):
        if method not in space.methods:
            result.skipped.append(f"{where}: {method} (not in this sweep)")
            continue
        try:
            point = flat_point(where, space, method, params)
        except ValueError as error:
            result.skipped.append(str(error))
            continue
        if point not in result.points:  # two records may differ only in fixed parameters
            result.points.append(point)
    return result
