"""`sparsetune list` and `sparsetune status`: the sweeps under a folder, and one sweep's state.

A sweep folder is one that holds `sweep-state.json`. Its status:
- running: a process holds the folder's lock (`search.lock`), named with its pid and host;
- stopped: started, not finished, and no process holds it (killed, interrupted, a lost node):
  `sparsetune search --resume DIR` continues it;
- finished.
Counts, front and hypervolume come from `pareto.json` once the sweep has finished, and from its
Optuna study (`optuna.db`, which holds every round since issue 25) while it has not. Read only:
neither command writes or locks anything.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sparsetune.app.errors import BadInput
from sparsetune.search.state import STATE_FILE, SweepState, read_state

DEFAULT_ROOT = Path("sparsetune-runs")
# Sweep folders are found this deep under the root: scheduled sweeps nest their dated sweeps in
# the first one's folder, and `--storage` puts sweeps one level down.
MAX_DEPTH = 4


@dataclass(frozen=True)
class SweepSummary:
    folder: Path
    experiment: str
    status: str  # running, stopped or finished
    model: str | None
    dataset: str | None
    objective: str | None
    trials: int | None  # requested
    finished: int | None
    failed: int | None
    running: int | None
    front: int | None  # points on the front
    hypervolume: float | None
    started: float
    resumed: int
    tracking_uri: str
    parent_run_id: str | None
    holder: str | None = None  # "pid N on HOST since TIME" while running

    def summary(self) -> dict[str, Any]:
        """What `--json` prints."""
        return asdict(self) | {"folder": str(self.folder)}


def list_sweeps(root: Path) -> list[SweepSummary]:
    """Every sweep under `root`, oldest first. A folder whose state cannot be read is left out
    (`status DIR` says why); one whose results cannot be read is listed without them."""
    root = root.expanduser()
    if not root.is_dir():
        raise BadInput(
            f"--root {root}: not a folder; pass the folder your sweeps are in "
            f"(default ./{DEFAULT_ROOT}, or the --storage folder of a cluster)"
        )
    summaries = []
    for folder in _sweep_folders(root.resolve(), MAX_DEPTH):
        try:
            summaries.append(sweep_status(folder))
        except BadInput:
            continue
    return sorted(summaries, key=lambda s: (s.started, str(s.folder)))


def sweep_status(folder: Path) -> SweepSummary:
    """One sweep's status; BadInput (one line) when `folder` holds no readable sweep state."""
    from sparsetune.search.lock import lock_holder

    folder = folder.expanduser().resolve()
    try:
        state = read_state(folder) if folder.is_dir() else None
    except ValueError as error:
        raise BadInput(str(error)) from None
    if state is None:
        raise BadInput(
            f"{folder}: no {STATE_FILE} there; pass a sweep folder (what `sparsetune search "
            "--out` wrote), or `sparsetune list --root` a folder that holds sweeps"
        )
    holder = lock_holder(folder)
    status = "finished" if state.status == "finished" else "running" if holder else "stopped"
    counts = _from_pareto(folder) if state.status == "finished" else None
    counts = counts or _from_study(folder, state)
    config = state.config
    return SweepSummary(
        folder=folder,
        experiment=_experiment(config, folder),
        status=status,
        model=config.get("model"),
        dataset=config.get("dataset"),
        objective=config.get("objective"),
        trials=config.get("trials"),
        started=state.started,
        resumed=state.resumed,
        tracking_uri=state.tracking_uri,
        parent_run_id=state.parent_run_id,
        holder=holder,
        **counts,
    )


def _experiment(config: dict[str, Any], folder: Path) -> str:
    """The sweep's experiment name, as SweepConfig derives it when it was not given."""
    from sparsetune.catalog import short_name

    if config.get("experiment"):
        return str(config["experiment"])
    parts = [config.get(key) for key in ("model", "dataset", "objective")]
    if all(isinstance(part, str) for part in parts):
        return "-".join([short_name(parts[0]), short_name(parts[1]), parts[2]])
    return folder.name


_NO_COUNTS = dict.fromkeys(("finished", "failed", "running", "front", "hypervolume"))


def _sweep_folders(folder: Path, depth: int) -> list[Path]:
    found = [folder] if (folder / STATE_FILE).is_file() else []
    if depth == 0:
        return found
    try:
        children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return found
    for child in children:
        if child.name not in ("ray", "trials", "cache", "mlartifacts"):  # a sweep's own parts
            found += _sweep_folders(child, depth - 1)
    return found


def _from_pareto(folder: Path) -> dict[str, Any] | None:
    """Counts from the finished sweep's pareto.json (None when it cannot be read)."""
    try:
        meta = json.loads((folder / "pareto.json").read_text())
        trials = meta.get("trials") or {}
        hypervolume = meta.get("hypervolume")
        return {
            "finished": int(trials["finished"]) if "finished" in trials else None,
            "failed": int(trials["failed"]) if "failed" in trials else None,
            "running": 0,
            "front": len(meta["front"]),
            "hypervolume": None if hypervolume is None else float(hypervolume),
        }
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _from_study(folder: Path, state: SweepState) -> dict[str, Any]:
    """Counts from the sweep's Optuna study: its own trials (the rounds added beside them left
    out) by state, and the front and hypervolume of every feasible round told so far."""
    database = folder / "optuna.db"
    if not database.is_file():
        return dict(_NO_COUNTS)
    import optuna

    from sparsetune.search.hypervolume import hypervolume
    from sparsetune.search.pareto import pareto_front
    from sparsetune.search.rounds import is_round_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=state.study_name, storage=f"sqlite:///{database}")
        trials = study.get_trials(deepcopy=False)
    except Exception:  # a study this sweep has not written yet, or a damaged file
        return dict(_NO_COUNTS)
    states = optuna.trial.TrialState
    own = [t for t in trials if not is_round_trial(t)]
    metrics = study.metric_names or []
    rows = [
        dict(zip(metrics, t.values, strict=True))
        for t in trials
        if t.state == states.COMPLETE and t.values and t.user_attrs.get("feasible", True)
    ]
    maximize = optuna.study.StudyDirection.MAXIMIZE
    modes = ["max" if direction == maximize else "min" for direction in study.directions]
    front = pareto_front(rows, metrics, modes) if metrics else []
    num_classes = study.user_attrs.get("num_classes")
    return {
        "finished": sum(t.state == states.COMPLETE for t in own),
        "failed": sum(t.state == states.FAIL for t in own),
        "running": sum(t.state == states.RUNNING for t in own),
        "front": len(front),
        "hypervolume": (
            hypervolume(front, metrics, int(num_classes))
            if num_classes and len(metrics) > 1
            else None
        ),
    }
