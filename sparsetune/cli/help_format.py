"""Two fixes to typer 0.29's rich help.

- The type column for flags: typer gives every option a type, flags included: `--json <bool>` and
  `--dry-run <bool>` read as if they took a value, and `--dry-run true` then fails. A flag
  (`--json`, `--trust-code`, `-h`) shows no type, as click's and argparse's help show none.
- The commands table of `sparsetune --help`: typer keeps the line breaks of a docstring's first
  paragraph there, so a summary written over two source lines showed as two ragged rows. Each
  command's summary is that paragraph as one line, wrapped to the terminal by rich.
"""

from __future__ import annotations

import inspect

import typer
import typer.core


def show_flags_as_flags() -> None:
    """Leave the type column empty for flags, in every command's help (idempotent)."""
    option = typer.core.TyperOption
    if getattr(option.display_type_rich, "_flags_as_flags", False):
        return
    shown = option.display_type_rich

    def display_type_rich(self, ctx):
        return None if self.is_flag else shown(self, ctx)

    display_type_rich._flags_as_flags = True  # type: ignore[attr-defined]
    option.display_type_rich = display_type_rich  # type: ignore[method-assign]


def summaries_as_one_line(app: typer.Typer) -> None:
    """Give each of `app`'s commands without a `short_help` the first paragraph of its docstring,
    its line breaks made spaces."""
    for command in app.registered_commands:
        if command.short_help or command.callback is None:
            continue
        first_paragraph = inspect.cleandoc(command.callback.__doc__ or "").split("\n\n")[0]
        command.short_help = " ".join(first_paragraph.split()) or None
