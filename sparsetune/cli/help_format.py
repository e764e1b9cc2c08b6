"""The help's type column for flags.

typer 0.29's rich help gives every option a type, flags included: `--json <bool>` and
`--dry-run <bool>` read as if they took a value, and `--dry-run true` then fails. A flag
(`--json`, `--trust-code`, `-h`) shows no type, as click's and argparse's help show none.
"""

from __future__ import annotations

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
