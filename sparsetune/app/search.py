"""`sparsetune search`: one sweep, new or continued, checked whole before anything is written.

`search(options, resume=...)` resolves which sweep to run (a new one, the unfinished one in
`--out`, or the one `--resume DIR` recorded), checks every input, and runs it; `run_checked` runs
a sweep whose inputs are checked (`sparsetune sweep` calls it for each model of a spec). Ray,
Optuna and torch are imported only once the input is known good.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsetune.app.checks import (
    check_cluster,
    check_device,
    check_gpus,
    check_model,
    check_writable,
    checked_data,
    checked_enqueue,
    checked_space,
    space_for_weights,
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


def search(
    options: SweepConfig | Mapping[str, Any],
    *,
    resume: Path | None = None,
    console: Console | None = None,
) -> SearchResult | None:
    """Run the sweep `options` describe (a SweepConfig, or the options given as a mapping), or
    with `resume` the one recorded in that folder, with its recorded options. An `--out` that
    holds an unfinished sweep of the same options continues it (the same command run again after
    a kill). None, said on `console`, when the sweep has finished already."""
    console = progress_console(console)
    sweep, unfinished = sweep_to_run(options, resume, console)
    if sweep is None:
        return None
    space = space_for_weights(sweep, checked_space(sweep))
    if unfinished is not None:
        check_same_sweep(unfinished, sweep, space, resume)
    check_writable(sweep.sweep_dir, "--out")
    return run_checked(sweep, space, unfinished, checked_enqueue(sweep, space, console), console)


def sweep_to_run(
    options: SweepConfig | Mapping[str, Any], resume: Path | None, console: Console
) -> tuple[SweepConfig | None, SweepState | None]:
    """(the sweep to run, the state of the unfinished sweep it continues or None); (None, None)
    when the sweep has finished (said on `console`)."""
    model = options.model if isinstance(options, SweepConfig) else options.get("model")
    if resume is None:
        sweep = options if isinstance(options, SweepConfig) else _new_sweep(options)
        folder, option = sweep.sweep_dir, "--out"
    else:
        folder, option = resume.expanduser().resolve(), "--resume"
    try:
        state = read_state(folder) if folder.is_dir() else None
    except ValueError as error:
        raise BadInput(f"{option} {folder}: {error}") from None
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
        sweep = validated(SweepConfig, {**state.config, "out": str(folder)})
    if state is None:
        return sweep, None
    if state.status == "finished":
        say(
            console,
            f"sparsetune: the sweep in {folder} has finished; nothing to do (results in "
            f"{folder / 'pareto.json'}); pass another --out for a new sweep",
        )
        return None, None
    return sweep, state


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
    """A sweep continued with other options would mix trials of two sweeps in one record."""
    changed = state.differences(sweep, space)
    if changed:
        folder = sweep.sweep_dir
        fix = "restore them" if resume else f"pass the same options, --resume {folder},"
        raise BadInput(
            f"--out {folder}: holds an unfinished sweep whose {', '.join(changed)} differ "
            f"from these; {fix} or pass another --out for a new sweep"
        )


def run_checked(
    sweep: SweepConfig,
    space: SearchSpace,
    unfinished: SweepState | None,
    enqueued: list[dict[str, Any]] | None,
    console: Console,
) -> SearchResult:
    """Run a checked sweep (new, or continuing `unfinished`), progress on `console`. Its own
    checks (data, device, GPUs, cluster) come first: they need the heavy libraries."""
    through_client = is_ray_client(sweep.address)
    if not through_client:  # under Ray Client the data and devices are the cluster's
        splits = checked_data(sweep)
        check_model(sweep.model, splits, sweep.weights)
        check_device(sweep.device)
        check_gpus(sweep)
    if sweep.address:
        _send_cluster_token_if_present()
        check_cluster(sweep.address)
    from sparsetune.search.sweep import prepare_dense, run_sweep
    from sparsetune.train.loop import TrainingDiverged

    try:
        if through_client:
            from sparsetune.search.client import DataUnreadable, run_through_client

            try:
                outcome = run_through_client(sweep, space, enqueued=enqueued, resume=unfinished)
            except DataUnreadable as error:
                raise BadInput(str(getattr(error, "cause", None) or error)) from None
        else:
            dense = prepare_dense(sweep, space, splits, console)
            outcome = run_sweep(
                sweep,
                space,
                dense,
                console,
                num_classes=splits.num_classes,
                enqueued=enqueued,
                resume=unfinished,
            )
    except TrainingDiverged as error:
        cause = getattr(error, "cause", None) or error  # a Ray task's error wraps it
        raise BadInput(f"the dense stage diverged ({cause}); lower train.lr in the space") from None
    return SearchResult(sweep, outcome)


def _send_cluster_token_if_present() -> None:
    """A cluster started with token authentication (RAY_AUTH_MODE=token on `ray start`) only
    accepts drivers that send its token, and Ray's driver sends one only in token mode. So when
    a token is at hand (Ray's own places for it) token mode is turned on; an explicit
    RAY_AUTH_MODE wins. Ray reads this when it is imported, hence before the import."""
    token_file = os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token"
    if os.environ.get("RAY_AUTH_TOKEN") or Path(token_file).is_file():
        os.environ.setdefault("RAY_AUTH_MODE", "token")
