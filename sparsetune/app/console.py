"""Where the application's progress goes: a rich `Console`, on stderr unless the caller passes
its own (the CLI passes one sized for a terminal or a log file)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


def progress_console(console: Console | None = None) -> Console:
    """`console`, or a new one on stderr."""
    if console is not None:
        return console
    from rich.console import Console

    return Console(stderr=True)


def say(console: Console, line: str) -> None:
    """One line as it is written: no markup, no highlighting, no wrapping."""
    console.print(line, markup=False, highlight=False, soft_wrap=True)
