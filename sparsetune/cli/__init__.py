"""The `sparsetune` command: a thin layer over the application (`sparsetune.app`).

Each subcommand (`cli.commands`) parses its options, calls the application and renders the
result (`cli.render`); the options of `search` and `prune` are generated from their option
models (`cli.options`). Heavy libraries load inside the application's calls, so `sparsetune
--help` and input errors answer at once.

Bad input (`sparsetune.app.errors.BadInput`) gets one line on stderr naming the problem and the
fix, exit code 2, and nothing is written: every check runs before the first folder or MLflow run
is created. A sweep stopped by SIGINT or SIGTERM (`search.interrupt`) exits 130 or 143 with one
line saying how to continue it; Ctrl-C anywhere else exits 130 ("interrupted").
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
from typing import Any, NoReturn

import typer

from sparsetune.app.errors import BadInput
from sparsetune.cli.commands import app
from sparsetune.search.interrupt import SweepAborted, SweepInterrupted
from sparsetune.train.allocator import keep_freed_memory

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

__all__ = ["app", "main", "run"]


# The longest error line printed: a message that quotes what it was given (a path, a value, a
# library's own words) is cut here, so no input can turn the one line into a screenful.
MAX_ERROR_CHARS = 500


def _fail(message: str) -> NoReturn:
    line = " ".join(message.split())
    if len(line) > MAX_ERROR_CHARS:
        line = line[: MAX_ERROR_CHARS - 1] + "…"
    print(f"sparsetune: error: {line}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


def run() -> int:
    """The `sparsetune` process (its console script, `python -m sparsetune`): `main()`, then a
    quick exit. Python's last garbage collection walks every object that torch, Ray and MLflow
    made, about 1.5 s on 2 cores after the work is done; frozen, they are skipped (atexit
    handlers and threads end as before)."""
    try:
        return main()
    finally:
        gc.freeze()


def main(argv: list[str] | None = None) -> int:
    # Ray's new console output ignores verbose=0 and prints an experiment box and a TensorBoard
    # hint; the classic output honours it, leaving sparsetune's own progress lines.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    keep_freed_memory()  # a process-wide allocator setting: the entry point's choice
    command = typer.main.get_command(app)
    ctrl_c = _CtrlC.install()
    try:
        code = command.main(args=argv, prog_name="sparsetune", standalone_mode=False)
    except BadInput as error:
        _fail(str(error))
    except typer.TyperException as error:  # typer's (vendored click's) usage errors
        context = getattr(error, "ctx", None)
        if type(error).__name__ == "NoArgsIsHelpError" and context is not None:
            print(context.get_help())
            return EXIT_BAD_INPUT
        message = error.format_message().replace("\n", " ").rstrip(".")
        command = context.command_path if context is not None else "sparsetune"
        _fail(f"{message}; see '{command} --help'")
    except (SweepInterrupted, SweepAborted) as stopped:  # the sweep is saved: how to go on
        print(f"sparsetune: {stopped.line}", file=sys.stderr)
        return stopped.exit_code
    except typer.Abort as error:
        # click's reading of an EOFError, meant for Ctrl-D at a prompt; sparsetune asks nothing,
        # so it is a file or stream that ended early: shown as what it is, not "interrupted".
        if isinstance(error.__cause__, EOFError):
            raise error.__cause__ from None
        print("sparsetune: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        ctrl_c.uninstall()
    if ctrl_c.came and code == EXIT_INTERRUPTED:  # typer's silent exit 130 for a Ctrl-C
        print("sparsetune: interrupted", file=sys.stderr)
    return code if isinstance(code, int) else 0


class _CtrlC:
    """Python's own Ctrl-C (KeyboardInterrupt), remembered: typer turns a KeyboardInterrupt into
    exit code 130 without a word, and the user should read why the command stopped. Installed
    only over Python's default handler (not where SIGINT is ignored, nor outside the main
    thread); a sweep holds SIGINT itself while it runs (`search.interrupt`)."""

    def __init__(self, previous: Any = None) -> None:
        self.previous = previous
        self.came = False

    @classmethod
    def install(cls) -> _CtrlC:
        main_thread = threading.current_thread() is threading.main_thread()
        if not main_thread or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return cls()
        ctrl_c = cls(signal.default_int_handler)
        signal.signal(signal.SIGINT, ctrl_c.handle)
        return ctrl_c

    def handle(self, signum: int, frame: Any) -> None:
        self.came = True
        raise KeyboardInterrupt

    def uninstall(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
