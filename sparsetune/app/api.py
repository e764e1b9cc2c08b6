"""The Python API: `sparsetune.prune(...)`, `sparsetune.search(...)` and its coroutine
`sparsetune.search_async(...)`, for notebooks and scripts.

The same application functions as the CLI, called with keyword arguments instead of flags: each
keyword is a field of the command's option model (`PruneOptions`, `SweepConfig`), spelled as the
flag without its dashes (`cache_dir=` for `--cache-dir`), except `data=` for `--dataset` and
`params=` (a mapping) for `--set`. Bad input raises `sparsetune.app.errors.BadInput` (a
ValueError) with the one line the CLI prints, before anything is written. Progress goes to
stderr unless `quiet=True`.

`model=` and `data=` also take Python objects (`sparsetune.search.objects`): an `nn.Module`
instance (copied; its weights are the dense stage, as `weights=` a file's would be), a callable
building one (the dense stage trains), and `(train, test)` pairs of tensors `(x, y)` or of
`Dataset`s. Each is registered under a name holding a hash of its content, which the run's
records and tickets carry; a sweep ships the objects to its Ray workers.

One sweep runs at a time in a process: they share the process's Ray, which a sweep that started
it shuts down at its end. A second `search` (or `search_async`) waits for the first to end.
Inside `with sparsetune.session():` the sweeps share one local Ray, kept up between them, and
each next sweep's trials start in worker processes that are ready (`sparsetune.search.session`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from sparsetune.app.errors import BadInput
from sparsetune.app.options import PruneOptions
from sparsetune.search.options import DEFAULT_DATASET, SweepConfig, is_ray_client
from sparsetune.validation import describe_validation_error

if TYPE_CHECKING:
    import pandas
    from rich.console import Console

    from sparsetune.app.prune import PruneResult
    from sparsetune.search.sweep import SweepOutcome


# Held by the sweep running in this process (see the module's docstring).
_ONE_SWEEP = threading.Lock()


@dataclass(frozen=True)
class FrontPoint:
    """One point of a sweep's Pareto front: a trial's round, its numbers, and where its ticket
    (masks and trained weights, `sparsetune.load`-able) and MLflow run are."""

    val_acc: float
    test_acc: float
    compression: float
    flops_ratio: float
    memory_footprint_bytes: int | None
    method: str
    params: dict[str, Any]
    architecture: str
    round: int
    trial_id: str
    run_id: str | None
    config_hash: str
    ticket: Path | None  # None when the round's ticket file is not in the sweep folder


@dataclass(frozen=True)
class SearchRun:
    """What `sparsetune.search` found: the front as typed rows, its hypervolume, and where the
    sweep's records are (the folder with pareto.json and trials.csv, the MLflow parent run)."""

    front: list[FrontPoint]
    hypervolume: float
    sweep_dir: Path
    parent_run_id: str | None
    tracking_uri: str
    failures: dict[str, str]  # trial id -> the reason it failed

    def records(self) -> list[dict[str, Any]]:
        """The front as plain dicts, one per point."""
        return [asdict(point) for point in self.front]

    def to_pandas(self) -> pandas.DataFrame:
        """The front as a DataFrame, one row per point."""
        import pandas

        return pandas.DataFrame(self.records(), columns=[f.name for f in fields(FrontPoint)])


def prune(
    model: Any,
    *,
    method: str = "magnitude",
    data: Any = DEFAULT_DATASET,
    params: Mapping[str, Any] | None = None,
    quiet: bool = False,
    **options: Any,
) -> PruneResult:
    """Train and prune one configuration in this process, with its paper's settings (`params`
    over them), as `sparsetune prune` does; returns its rounds, summary and output folder."""
    from sparsetune.app.prune import prune as run

    values = {"method": method, **options} | _named(model, data, options)
    return run(
        _options(PruneOptions, values | {"params": dict(params or {})}), console=_console(quiet)
    )


def search(
    model: Any,
    *,
    data: Any = DEFAULT_DATASET,
    objective: str = "pareto",
    trials: int = 8,
    quiet: bool = False,
    **options: Any,
) -> SearchRun:
    """Run a sweep as `sparsetune search` does (an `out=` folder holding an unfinished sweep of
    the same options continues it) and return its front. A sweep that has already finished in
    `out=` is not run again: its recorded front is returned. Called while another sweep runs in
    this process, it waits for that one to end."""
    import os

    from sparsetune.app.search import FinishedBefore
    from sparsetune.app.search import search as run

    # As the CLI: Ray's classic console output honours verbose=0 (no experiment box).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if not (isinstance(model, str) and isinstance(data, str)) and is_ray_client(
        str(options.get("address") or "")
    ):
        raise BadInput(
            f"address={options['address']}: Python objects as model= or data= do not travel "
            "through Ray Client; pass import paths the cluster can import, or run on a node"
        )
    if options.get("address") and _in_session():
        raise BadInput(
            f"address={options['address']}: the sweeps of sparsetune.session() run on its local "
            "Ray; run this one outside the session"
        )
    values = {"objective": objective, "trials": trials, **options} | _named(model, data, options)
    sweep = _options(SweepConfig, values)
    console = _console(quiet)
    with _ONE_SWEEP:
        result = run(sweep, console=console)
    if isinstance(result, FinishedBefore):  # read what it recorded
        return _finished_run(result.folder)
    return _search_run(result.outcome)


@contextlib.contextmanager
def session(gpus: int | None = None) -> Iterator[None]:
    """Run the sweeps of the block on one local Ray, kept up between them: each next sweep's
    trials start in worker processes that have imported what a trial needs, instead of new ones
    (`sparsetune.search.session`). `gpus`: how many of this machine's GPUs trials may use (all
    by default). Ray stops when the block ends. For several sweeps in a notebook or a script;
    a sweep that joins a cluster (`address=`) runs outside it."""
    import torch

    from sparsetune.search.session import session as local_session

    available = torch.cuda.device_count()
    gpus = available if gpus is None else gpus
    if isinstance(gpus, bool) or not isinstance(gpus, int) or not 0 <= gpus <= available:
        raise BadInput(f"gpus={gpus!r}: this machine has {available} GPU(s); give 0 to {available}")
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(local_session(gpus))
    except ValueError as error:
        raise BadInput(str(error)) from None
    with stack:
        yield


def _in_session() -> bool:
    from sparsetune.search.session import active

    return active()


async def search_async(model: Any, **keywords: Any) -> SearchRun:
    """`search(model, **keywords)` as a coroutine, for an event loop that must go on meanwhile (a
    Jupyter kernel, an async application): the sweep runs in a worker thread
    (`asyncio.to_thread`), the loop stays free, and awaiting it gives the `SearchRun` (or raises
    what `search` raises). Cancelling the awaiting task does not stop the sweep: its thread runs
    to the sweep's end."""
    return await asyncio.to_thread(search, model, **keywords)


def _named(model: Any, data: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    """The `model`, `dataset` (and for an instance `weights`) options: names as given, Python
    objects registered under their content names (`search.objects`); one-line BadInput if an
    object cannot be used."""
    from sparsetune.search import objects

    named: dict[str, Any] = {"model": model, "dataset": data}
    try:
        if not isinstance(data, str):
            named["dataset"] = objects.data_name(data, options.get("memory_budget_gb"))
        if not isinstance(model, str):
            from torch import nn

            if isinstance(model, nn.Module) and options.get("weights") is not None:
                raise ValueError(
                    "weights=: an nn.Module instance brings its own weights (the dense stage); "
                    "drop weights=, or pass a factory and weights="
                )
            named["model"], weights = objects.model_name(model)
            if weights is not None:
                named["weights"] = weights
    except ValueError as error:
        raise BadInput(str(error)) from None
    return named


def _options(model_class: type[BaseModel], values: dict[str, Any]) -> Any:
    try:
        return model_class.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as error:
        raise BadInput(describe_validation_error(error)) from None


def _console(quiet: bool) -> Console:
    from rich.console import Console

    return Console(stderr=True, quiet=quiet)


def _search_run(outcome: SweepOutcome) -> SearchRun:
    return SearchRun(
        front=[_front_point(outcome.sweep_dir, row) for row in outcome.front],
        hypervolume=outcome.hypervolume,
        sweep_dir=outcome.sweep_dir,
        parent_run_id=outcome.parent_run_id,
        tracking_uri=outcome.tracking_uri,
        failures=dict(outcome.failures),
    )


def _finished_run(sweep_dir: Path) -> SearchRun:
    from sparsetune.report.review import load_sweep
    from sparsetune.results import read_trials_csv
    from sparsetune.search.state import read_state

    results, state = load_sweep(sweep_dir), read_state(sweep_dir)
    # results.rows holds the rows that count (status ok); the failures are in trials.csv too.
    rows = read_trials_csv(sweep_dir / "trials.csv")
    failed = [row.model_dump() for row in rows if row.status == "failed"]
    return SearchRun(
        front=[_front_point(sweep_dir, row) for row in results.front],
        hypervolume=float(results.hypervolume or 0.0),
        sweep_dir=sweep_dir,
        parent_run_id=results.meta.get("parent_run_id"),
        tracking_uri=state.tracking_uri if state else "",
        failures={str(row["trial_id"]): str(row.get("error") or "") for row in failed},
    )


def _front_point(sweep_dir: Path, row: Mapping[str, Any]) -> FrontPoint:
    trial_id, round_index = str(row["trial_id"]), int(row["round"])
    ticket = sweep_dir / "trials" / trial_id / f"round-{round_index}.safetensors"
    footprint = row.get("memory_footprint_bytes")
    return FrontPoint(
        val_acc=float(row["val_acc"]),
        test_acc=float(row["test_acc"]),
        compression=float(row["compression"]),
        flops_ratio=float(row["flops_ratio"]),
        memory_footprint_bytes=int(footprint) if footprint not in (None, "") else None,
        method=str(row["method"]),
        params=dict(row.get("params") or {}),
        architecture=str(row["architecture"]),
        round=round_index,
        trial_id=trial_id,
        run_id=row.get("run_id") or None,
        config_hash=str(row["config_hash"]),
        ticket=ticket if ticket.is_file() else None,
    )
