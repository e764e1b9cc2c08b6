"""`sparsetune search`: one sweep, new or continued, checked whole before anything is written.

`search(options, resume=...)` resolves which sweep to run (a new one, the unfinished one in
`--out`, or the one `--resume DIR` recorded), checks every input, and runs it; `run_checked` runs
a sweep whose inputs are checked (`sparsetune sweep` calls it for each model of a spec). Ray,
Optuna and torch are imported only once the input is known good.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsetune.app.checks import (
    check_cluster,
    check_device,
    check_model,
    check_resources,
    check_stores,
    check_writable,
    checked_data,
    checked_enqueue,
    checked_space,
    space_for_run,
    validated,
)
from sparsetune.app.console import progress_console, say
from sparsetune.app.errors import BadInput
from sparsetune.search.options import SweepConfig, is_ray_client
from sparsetune.search.state import STATE_FILE, SweepState, read_state

if TYPE_CHECKING:
    from rich.console import Console

    from sparsetune.search.space import SearchSpace
    from sparsetune.search.sweep import SweepOutcome


@dataclass(frozen=True)
class SearchResult:
    """A sweep that ran to its end: its options and what it found."""

    sweep: SweepConfig
    outcome: SweepOutcome

    def summary(self) -> dict[str, Any]:
        """What `search --json` prints: the sweep's record as `report --json` reads it back
        (pareto.json), with the MLflow store and each failed trial's reason."""
        from sparsetune.report.review import load_sweep

        outcome = self.outcome
        recorded = load_sweep(outcome.sweep_dir).summary()
        return recorded | {"tracking_uri": outcome.tracking_uri, "failures": outcome.failures}


@dataclass(frozen=True)
class FinishedBefore:
    """A sweep that had finished before this call: nothing ran, its records stand."""

    folder: Path

    def summary(self) -> dict[str, Any]:
        """What `search --json` prints: the recorded sweep, as `report --json` reads it."""
        from sparsetune.report.review import load_sweep

        return load_sweep(self.folder).summary() | {"nothing_to_do": True}


def search(
    options: SweepConfig | Mapping[str, Any],
    *,
    resume: Path | None = None,
    console: Console | None = None,
) -> SearchResult | FinishedBefore:
    """Run the sweep `options` describe (a SweepConfig, or the options given as a mapping), or
    with `resume` the one recorded in that folder, with its recorded options. An `--out` that
    holds an unfinished sweep of the same options continues it (the same command run again after
    a kill). FinishedBefore, said on `console`, when the sweep has finished already."""
    console = progress_console(console)
    sweep, recorded = sweep_to_run(options, resume)
    finished = recorded is not None and recorded.status == "finished"
    if finished and resume is not None:  # its recorded options: nothing to compare
        return _nothing_to_do(sweep.sweep_dir, console)
    notes: list[str] = []  # said once every check has passed
    space = space_for_run(sweep, checked_space(sweep, notes), notes)
    if recorded is not None:
        check_same_sweep(recorded, sweep, space, resume)
    if finished:
        return _nothing_to_do(sweep.sweep_dir, console)
    unfinished = recorded
    check_writable(sweep.sweep_dir, "--out")
    enqueued = checked_enqueue(sweep, space, notes)
    command = SweepCommand.search(sweep.sweep_dir, resumed=resume is not None)
    return run_checked(sweep, space, unfinished, enqueued, console, command=command, notes=notes)


def sweep_to_run(
    options: SweepConfig | Mapping[str, Any], resume: Path | None
) -> tuple[SweepConfig, SweepState | None]:
    """(the sweep to run, the state its folder records, finished or not, or None for a new
    sweep)."""
    model = options.model if isinstance(options, SweepConfig) else options.get("model")
    if resume is None:
        sweep = options if isinstance(options, SweepConfig) else _new_sweep(options)
        folder, option = sweep.sweep_dir, "--out"
    else:
        folder, option = resume.expanduser().resolve(), "--resume"
    try:
        state = read_state(folder) if folder.is_dir() else None
    except ValueError as error:  # the message names the state file
        raise BadInput(f"{option}: {error}") from None
    if resume is not None:
        if state is None:
            raise BadInput(
                f"--resume {folder}: no {STATE_FILE} there; pass the --out folder of a sweep "
                "that `sparsetune search` started"
            )
        if model not in (None, state.config.get("model")):
            raise BadInput(
                f"--resume {folder}: its sweep is of --model {state.config.get('model')}, not "
                f"{model}; drop --model, or pass another folder"
            )
        try:
            sweep = validated(SweepConfig, {**state.config, "out": str(folder)})
        except BadInput as error:
            raise BadInput(
                f"--resume {folder}: its {STATE_FILE} records options this version refuses "
                f"({error}); restore the file, or start the sweep anew in another --out"
            ) from None
    return sweep, state


def _nothing_to_do(folder: Path, console: Console) -> FinishedBefore:
    say(
        console,
        f"sparsetune: the sweep in {folder} has finished; nothing to do (results in "
        f"{folder / 'pareto.json'}); pass another --out for a new sweep",
    )
    return FinishedBefore(folder)


def _new_sweep(given: Mapping[str, Any]) -> SweepConfig:
    if given.get("model") is None:
        raise BadInput(
            "Missing option '--model' (or --resume DIR, to continue a sweep); "
            "see 'sparsetune search --help'"
        )
    return validated(SweepConfig, {k: v for k, v in given.items() if v is not None})


def check_same_sweep(
    state: SweepState, sweep: SweepConfig, space: SearchSpace, resume: Path | None
) -> None:
    """A sweep continued with other options would mix trials of two sweeps in one record; the
    results of a finished one are not those of other options."""
    changed = state.differences(sweep, space)
    if changed:
        folder = sweep.sweep_dir
        kind = "a finished" if state.status == "finished" else "an unfinished"
        fix = "restore them" if resume else f"pass the same options, --resume {folder},"
        raise BadInput(
            f"--out {folder}: holds {kind} sweep whose {', '.join(changed)} "
            f"{'differ' if len(changed) > 1 else 'differs'} "
            f"from these; {fix} or pass another --out for a new sweep"
        )


@dataclass(frozen=True)
class SweepCommand:
    """How the command running a sweep is named to its user: the option that names the sweep's
    folder, what to do when another process holds it, and the command that continues it."""

    option: str
    busy_fix: str
    continue_with: str

    @classmethod
    def search(cls, folder: Path, *, resumed: bool) -> SweepCommand:
        return cls(
            "--resume" if resumed else "--out",
            "wait for it" if resumed else "wait for it, or pass another --out",
            f"sparsetune search --resume {folder}",
        )


def run_checked(
    sweep: SweepConfig,
    space: SearchSpace,
    unfinished: SweepState | None,
    enqueued: list[dict[str, Any]] | None,
    console: Console,
    *,
    command: SweepCommand | None = None,
    notes: Sequence[str] = (),
) -> SearchResult:
    """Run a checked sweep (new, or continuing `unfinished`), progress on `console`. Its own
    checks (data, device, GPUs, cluster) come first: they need the heavy libraries. Then the
    sweep folder's lock, its first write, held until the sweep ends; and SIGINT and SIGTERM
    stop the sweep resumable (`SweepInterrupted`, saying how to continue: `command`). `notes`
    (where the space came from, what it lost to this run, --enqueue points skipped) are said
    once every check has passed, so that a refusal stays one line. A sweep that starts its own
    Ray starts it first, before loading the sweep's modules (`local_ray.started_early`)."""
    command = command or SweepCommand.search(sweep.sweep_dir, resumed=False)
    through_client = is_ray_client(sweep.address)
    if not through_client:  # under Ray Client the data and devices are the cluster's
        check_stores(sweep.cache_dir, sweep.tracking_uri)
        splits = checked_data(sweep)
        check_model(sweep.model, splits, sweep.weights)
        check_device(sweep.device)
    if sweep.address:
        _send_cluster_token_if_present()
        check_cluster(sweep.address)
    check_resources(sweep)
    for note in notes:
        say(console, note)
    from sparsetune.search.local_ray import started_early
    from sparsetune.train.loop import TrainingDiverged

    try:
        if through_client:
            from sparsetune.search.client import DataUnreadable, run_through_client

            try:
                outcome = run_through_client(sweep, space, enqueued=enqueued, resume=unfinished)
            except DataUnreadable as error:
                raise BadInput(str(getattr(error, "cause", None) or error)) from None
        else:
            from sparsetune.search.interrupt import StopSignals

            with (
                started_early(sweep) as ray_started,
                _sweep_folder_locked(sweep.sweep_dir, unfinished, command) as unfinished,
                StopSignals(sweep.sweep_dir, command.continue_with) as stop,
            ):
                from sparsetune.search.sweep import prepare_dense, run_sweep

                dense = prepare_dense(sweep, space, splits, console)
                outcome = run_sweep(
                    sweep,
                    space,
                    dense,
                    console,
                    num_classes=splits.num_classes,
                    enqueued=enqueued,
                    resume=unfinished,
                    stop=stop,
                    ray_started=ray_started,
                )
    except TrainingDiverged as error:
        cause = getattr(error, "cause", None) or error  # a Ray task's error wraps it
        raise BadInput(f"the dense stage diverged ({cause}); lower train.lr in the space") from None
    return SearchResult(sweep, outcome)


@contextlib.contextmanager
def _sweep_folder_locked(
    folder: Path, unfinished: SweepState | None, command: SweepCommand
) -> Iterator[SweepState | None]:
    """Hold the sweep folder's lock; yields its state as read under the lock, which must be the
    one the checks saw (another process may have run the sweep meanwhile)."""
    from sparsetune.search.lock import SweepFolderBusy, sweep_folder_lock

    with contextlib.ExitStack() as held:
        try:
            held.enter_context(sweep_folder_lock(folder))
        except SweepFolderBusy as error:
            raise BadInput(f"{command.option} {folder}: {error}; {command.busy_fix}") from None
        try:
            now = read_state(folder)
        except ValueError as error:
            raise BadInput(f"{command.option} {folder}: {error}") from None
        before = unfinished and (unfinished.sweep_id, unfinished.status)
        if (now and (now.sweep_id, now.status)) != before:
            raise BadInput(
                f"{command.option} {folder}: another sparsetune changed this sweep while this "
                "one started; run the command again"
            )
        yield now


def _send_cluster_token_if_present() -> None:
    """A cluster started with token authentication (RAY_AUTH_MODE=token on `ray start`) only
    accepts drivers that send its token, and Ray's driver sends one only in token mode. So when
    a token is at hand (Ray's own places for it) token mode is turned on; an explicit
    RAY_AUTH_MODE wins. Ray reads this when it is imported, hence before the import."""
    token_file = os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token"
    if os.environ.get("RAY_AUTH_TOKEN") or Path(token_file).is_file():
        os.environ.setdefault("RAY_AUTH_MODE", "token")
