"""A sweep folder's `sweep-state.json`: what a killed sweep needs to continue as the same sweep.

Written (atomically) when the sweep starts, before Ray, Optuna or MLflow hold anything of it, and
again when it ends. It names the three records a sweep keeps, so that a resumed sweep reopens
exactly them: Ray's experiment (`ray/<ray_name>`, trial states, checkpoints and the pickled
searcher), Optuna's study (`study_name` in `optuna.db`) and MLflow's parent run
(`parent_run_id` at `tracking_uri`). It also keeps the sweep's config, so that `--resume DIR`
needs no other option, and the options that make the sweep what it is (`identity`), so that a
resume that would silently change them is refused. Light on purpose: the CLI reads it before it
imports Ray.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from sparsetune.atomic import atomic_write_text
from sparsetune.search.options import SweepConfig, identity_fields

STATE_FILE = "sweep-state.json"
FORMAT = 1
# Options a resume cannot change, marked `identity` on SweepConfig's fields: they decide what the
# recorded trials mean (model, data, objective; the space is compared by its contents), were
# fixed in Ray's and Optuna's saved state at the start (trials), or say where Ray keeps that
# state (storage).
IDENTITY_FIELDS = identity_fields(SweepConfig)
Status = Literal["running", "finished"]  # running: started and not finished (killed included)


def space_digest(space: Any) -> str:
    """A content hash of the validated space, not of its file name: a space edited in place
    is a different sweep, the same space at another path is not."""
    body = space.model_dump(mode="json", exclude={"source", "description"})
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def identity(sweep: SweepConfig, space: Any) -> dict[str, Any]:
    values = sweep.model_dump(mode="json")
    return {name: values.get(name) for name in IDENTITY_FIELDS} | {"space": space_digest(space)}


@dataclass(frozen=True)
class SweepState:
    sweep_id: str  # stable for the folder: names the Ray experiment, the study and the parent run
    status: Status
    identity: dict[str, Any]
    config: dict[str, Any]  # SweepConfig as JSON: what `--resume DIR` runs again
    study_name: str
    ray_name: str
    tracking_uri: str
    parent_run_id: str | None = None
    started: float = field(default_factory=time.time)
    resumed: int = 0  # how many times the sweep was continued
    format: int = FORMAT

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
        """The identity options whose value differs from the recorded one, as `--name`."""
        now = identity(sweep, space)
        return [
            "--space (its contents)" if name == "space" else "--" + name.replace("_", "-")
            for name in now
            if now[name] != self.identity.get(name)
        ]


def read_state(folder: Path) -> SweepState | None:
    """The folder's state, or None when it has none. ValueError (one line) when it cannot be
    read: a state file is written atomically, so an unreadable one was not written by us."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
        if raw.get("format") != FORMAT:
            raise ValueError(f"format {raw.get('format')!r}, expected {FORMAT}")
        return SweepState(**raw)
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(f"{path}: not a sweep state this version can resume ({error})") from None
