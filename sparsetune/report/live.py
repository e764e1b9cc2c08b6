"""Progress of long work on a terminal, and plain lines elsewhere.

On a terminal (`console.is_terminal`) a rich progress bar shows the current phase: its epoch,
its share done, the time elapsed and the time left at its pace so far, refreshed in place while
the lines above it (rounds, finished epochs) scroll. Written to a file, a pipe, CI's log, cron's
mail or Ray's log, the same news comes as plain lines: each finished epoch (with its ETA), and
within a long epoch a line every PLAIN_EVERY_SECONDS, so that a minutes-long epoch is never
silent."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from sparsetune.train.loop import EpochDone

# Within an epoch, a plain line at most this often.
PLAIN_EVERY_SECONDS = 30.0


def is_live(console: Console) -> bool:
    """A terminal a person watches: rich redraws a line there (not a dumb terminal or a file)."""
    return console.is_terminal and not console.is_dumb_terminal and not console.quiet


def progress_bar(console: Console) -> Progress:
    """A bar with the phase, its share done, elapsed time and ETA; gone once it stops."""
    from rich.progress import (
        BarColumn,
        Progress,
        SpinnerColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        # Never swap the process's sys.stdout and sys.stderr: a sweep may run in a thread (a
        # notebook's search_async) while the user's own cells print.
        redirect_stdout=False,
        redirect_stderr=False,
    )


class PhaseProgress:
    """`prune`'s progress: told of every epoch (and within epochs) of each training phase by
    `fit`, through `on_epoch(phase, done)`. A context manager: the bar goes when the run ends."""

    def __init__(self, console: Console):
        self.console = console
        self.bar = progress_bar(console) if is_live(console) else None
        self._task: TaskID | None = None
        self._phase: str | None = None
        self._fraction = 0.0
        self._plain_at = 0.0

    def __enter__(self) -> PhaseProgress:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def on_epoch(self, phase: str, done: EpochDone) -> None:
        if self.bar is not None:
            self._show(phase, done)
        if done.finished:
            if done.epochs > 1:  # a one-epoch phase (sensitivity's rounds) is a round line
                self._say(f"{phase}: {done.describe()}")
            self._plain_at = time.monotonic() + PLAIN_EVERY_SECONDS
        elif self.bar is None and time.monotonic() >= self._plain_at:
            self._say(f"{phase}: {done.describe()}")
            self._plain_at = time.monotonic() + PLAIN_EVERY_SECONDS

    def _say(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def _show(self, phase: str, done: EpochDone) -> None:
        assert self.bar is not None
        total = max(done.epochs * max(done.steps, 1), 1)
        completed = done.fraction * total
        description = f"{phase}: epoch {done.epoch}/{done.epochs}"
        # A new phase, or the same one again (a lottery's next round trains anew): a new bar.
        if phase != self._phase or self._task is None or done.fraction < self._fraction:
            if self._task is not None:
                self.bar.remove_task(self._task)
            self._task = self.bar.add_task(description, total=total, completed=completed)
            self._phase = phase
        else:
            self.bar.update(self._task, description=description, total=total, completed=completed)
        self._fraction = done.fraction
