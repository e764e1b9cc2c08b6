"""The `sparsetune` command: a thin layer over the application (`sparsetune.app`).

Each subcommand (`cli.commands`) parses its options, calls the application and renders the
result (`cli.render`); the options of `search` and `prune` are generated from their option
models (`cli.options`). Heavy libraries load inside the application's calls, so `sparsetune
--help` and input errors answer at once.

Bad input (`sparsetune.app.errors.BadInput`) gets one line on stderr naming the problem and the
fix, exit code 2, and nothing is written: every check runs before the first folder or MLflow run
is created.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import typer

from sparsetune.app.errors import BadInput
from sparsetune.cli.commands import app
from sparsetune.train.allocator import keep_freed_memory

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

__all__ = ["app", "main"]


def _fail(message: str) -> NoReturn:
    print(f"sparsetune: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


def main(argv: list[str] | None = None) -> int:
    # Ray's new console output ignores verbose=0 and prints an experiment box and a TensorBoard
    # hint; the classic output honours it, leaving sparsetune's own progress lines.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    keep_freed_memory()  # a process-wide allocator setting: the entry point's choice
    command = typer.main.get_command(app)
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
    except typer.Abort:
        print("sparsetune: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code if isinstance(code, int) else 0
