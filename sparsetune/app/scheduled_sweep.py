"""`sparsetune sweep SPEC`: the sweeps a spec file describes, resumed, started or left alone.

Run again and again (cron, a Kubernetes CronJob), it continues the sweep a kill interrupted,
starts a new one when the spec's `new_sweep` says so (warm-started from the earlier fronts), or
does nothing. Every model's plan and inputs are checked before the first sweep runs. The exit
code says which it was, so that a wrapper can tell them apart (1 is a failure: an uncaught
error, a sweep that did not run to its end).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsetune.app.checks import check_writable, checked_enqueue, checked_space, space_for_run
from sparsetune.app.console import progress_console, say
from sparsetune.app.errors import BadInput
from sparsetune.app.search import SearchResult, SweepCommand, run_checked

if TYPE_CHECKING:
    from rich.console import Console

    from sparsetune.search.options import SweepConfig
    from sparsetune.search.scheduled import Plan
    from sparsetune.search.space import SearchSpace
    from sparsetune.search.spec import LoadedSpec
    from sparsetune.search.state import SweepState

EXIT_FINISHED = 0  # a new sweep ran to its end
EXIT_RESUMED = 10  # an unfinished sweep was resumed and ran to its end
EXIT_NOTHING_TO_DO = 11  # finished already, and the spec starts no new sweep now


@dataclass(frozen=True)
class Step:
    """What the spec does for one model this time."""

    plan: Plan
    sweep: SweepConfig
    space: SearchSpace
    unfinished: SweepState | None  # the sweep `plan` resumes
    points: list[dict[str, Any]] | None  # the warm start: earlier front points to try first


def sweep(
    spec_path: Path,
    *,
    dry_run: bool = False,
    console: Console | None = None,
    on_result: Callable[[SearchResult], None] = lambda result: None,
) -> int:
    """Run what the spec at `spec_path` asks for now, each model's sweep in turn (`on_result`
    after each), and return the exit code; with `dry_run`, only say it (on `console`)."""
    from sparsetune.search.spec import load_spec

    console = progress_console(console)
    try:
        loaded = load_spec(spec_path)
    except ValueError as error:
        raise BadInput(str(error)) from None
    steps = [_checked_step(loaded, model, console) for model in loaded.spec.model_names]
    actions = {step.plan.action for step in steps}
    code = (
        EXIT_NOTHING_TO_DO
        if actions == {"nothing"}
        else EXIT_RESUMED
        if "resume" in actions
        else EXIT_FINISHED
    )
    if not dry_run:
        # A stop signal ends the command (SweepInterrupted); running the spec again continues.
        command = SweepCommand("out", "wait for it", f"sparsetune sweep {spec_path}")
        running = [step for step in steps if step.plan.action != "nothing"]
        with _one_local_ray(running):
            for step in running:
                result = run_checked(
                    step.sweep, step.space, step.unfinished, step.points, console, command=command
                )
                on_result(result)
    return code


def _one_local_ray(steps: list[Step]) -> contextlib.AbstractContextManager[None]:
    """Two or more sweeps on this machine share one Ray, each next one's trial workers readied
    while the one before ends (`search.session`); one sweep, or sweeps on a cluster, start or
    join Ray as `sparsetune search` does."""
    import ray

    # (a Ray job's sweeps have address auto: SweepConfig reads $RAY_ADDRESS)
    if len(steps) < 2 or any(step.sweep.address for step in steps) or ray.is_initialized():
        return contextlib.nullcontext()
    import torch

    from sparsetune.search.session import session

    wants_gpus = any(step.sweep.device != "cpu" for step in steps)
    return session(torch.cuda.device_count() if wants_gpus else 0)


def _checked_step(loaded: LoadedSpec, model: str, console: Console) -> Step:
    """`model`'s plan, its inputs checked, and said on `console`."""
    from sparsetune.search.scheduled import plan_sweep, warm_start
    from sparsetune.search.state import read_state

    try:
        plan = plan_sweep(loaded.base_dir(model), loaded.spec.new_sweep)
        config = loaded.sweep_config(model, plan.folder)
        state = read_state(plan.folder) if plan.action == "resume" else None
    except ValueError as error:
        raise BadInput(str(error)) from None
    notes: list[str] = []
    space = space_for_run(config, checked_space(config, notes), notes)
    if state is not None:
        changed = [c.removeprefix("--").replace("-", "_") for c in state.differences(config, space)]
        if changed:
            raise BadInput(
                f"{loaded.path}: the unfinished sweep in {plan.folder} has other "
                f"{', '.join(changed)}; restore them in the spec, or move that folder away "
                "to start anew"
            )
    points = None
    if plan.action == "start":
        check_writable(plan.folder, "out")
        if loaded.spec.warm_start and plan.earlier:
            warm = warm_start(plan.earlier, space)
            for note in warm.skipped:
                say(console, f"sparsetune: warm start skipped {note}")
            points = warm.points or None
    warmed = f", warm-started with {len(points)} earlier front points" if points else ""
    if plan.action == "start" and points is None:
        # No earlier front to start from: the papers' points, as `sparsetune search` starts.
        points = checked_enqueue(config, space, notes)
    for note in notes:
        say(console, note)
    say(console, plan.describe(model) + warmed)
    return Step(plan, config, space, state, points)
