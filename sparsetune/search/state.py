"""A sweep folder's `sweep-state.json`: what a killed sweep needs to continue as the same sweep.

Written (atomically) when the sweep starts, before Ray, Optuna or MLflow hold anything of it, and
again when it ends. It names the three records a sweep keeps, so that a resumed sweep reopens
exactly them: Ray's experiment (`ray/<ray_name>`, trial states, checkpoints and the pickled
searcher), Optuna's study (`study_name` in `optuna.db`) and MLflow's parent run
(`parent_run_id` at `tracking_uri`). It also keeps the sweep's config, so that `--resume DIR`
needs no other option, and the options that make the sweep what it is (`identity`), so that a
resume that would silently change them is refused. Light on purpose: the CLI reads it before it
imports Ray.

Read back, the file is checked whole (`SweepState` is a pydantic dataclass: types, required keys,
names that become folder names, finite times): a crafted or damaged file is refused in one line
before anything of the sweep is opened.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints
from pydantic.dataclasses import dataclass

from sparsetune.atomic import atomic_write_text
from sparsetune.results import Count, FolderName, RunId, read_json_record
from sparsetune.search.options import SweepConfig, identity_fields

STATE_FILE = "sweep-state.json"
FORMAT = 1
# Options a resume cannot change, marked `identity` on SweepConfig's fields: they decide what the
# recorded trials mean (model, data, objective; the space is compared by its contents), were
# fixed in Ray's and Optuna's saved state at the start (trials), or say where Ray keeps that
# state (storage).
IDENTITY_FIELDS = identity_fields(SweepConfig)
Status = Literal["running", "finished"]  # running: started and not finished (killed included)
# A Unix time that `datetime.fromtimestamp` can turn into a date (before the year 10000).
Timestamp = Annotated[float, Field(ge=0, le=253_402_300_799, allow_inf_nan=False)]


def space_digest(space: Any) -> str:
    """A content hash of the validated space, not of its file name: a space edited in place
    is a different sweep, the same space at another path is not."""
    body = space.model_dump(mode="json", exclude={"source", "description"})
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def identity(sweep: SweepConfig, space: Any) -> dict[str, Any]:
    values = sweep.model_dump(mode="json")
    return {name: values.get(name) for name in IDENTITY_FIELDS} | {"space": space_digest(space)}


@dataclass(frozen=True, config=ConfigDict(extra="forbid", strict=True))
class SweepState:
    sweep_id: FolderName  # stable for the folder: names the Ray experiment, study, parent run
    status: Status
    identity: dict[str, Any]
    config: dict[str, Any]  # SweepConfig as JSON: what `--resume DIR` runs again (validated then)
    study_name: Annotated[str, StringConstraints(min_length=1)]  # the file's size bounds it
    ray_name: FolderName
    tracking_uri: Annotated[str, StringConstraints(min_length=1)]
    parent_run_id: RunId | None = None
    started: Timestamp = field(default_factory=time.time)
    resumed: Count = 0  # how many times the sweep was continued
    format: Literal[1] = FORMAT

    @classmethod
    def new(cls, sweep: SweepConfig, space: Any, tracking_uri: str) -> SweepState:
        sweep_id = time.strftime("%Y%m%d-%H%M%S")
        return cls(
            sweep_id=sweep_id,
            status="running",
            identity=identity(sweep, space),
            config=sweep.model_dump(mode="json"),
            study_name=f"{sweep.experiment_name}-{sweep_id}",
            ray_name=f"sweep-{sweep_id}",
            tracking_uri=tracking_uri,
        )

    def with_(self, **changes: Any) -> SweepState:
        return replace(self, **changes)

    def write(self, folder: Path) -> None:
        atomic_write_text(Path(folder) / STATE_FILE, json.dumps(asdict(self), indent=2) + "\n")

    def differences(self, sweep: SweepConfig, space: Any) -> list[str]:
        """The identity options whose value differs from the recorded one, as `--name`. An
        option the state does not record (written before it joined the identity) is unknown,
        not a difference."""
        now = identity(sweep, space)
        return [
            "--space (its contents)" if name == "space" else "--" + name.replace("_", "-")
            for name in now
            if name in self.identity and now[name] != self.identity[name]
        ]


def read_state(folder: Path) -> SweepState | None:
    """The folder's state, or None when it has none. ValueError (one line) when it cannot be
    read: a state file is written atomically, so an unreadable one was not written by us."""
    path = Path(folder) / STATE_FILE
    if not path.exists() and not path.is_symlink():
        return None
    try:
        return read_json_record(path, SweepState)
    except ValueError as error:
        raise ValueError(
            f"{path}: not a sweep state this version can resume ({error}); restore it, or move "
            "the folder away and start the sweep anew"
        ) from None
