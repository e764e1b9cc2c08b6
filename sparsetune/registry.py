"""A lazy name -> object table: the one mechanism behind every extension point.

Entries are "module:attribute" strings, imported on first use, so listing or validating names
never imports torch. Unknown names raise a ValueError that lists the known ones. Other packages
add entries without editing this one, through an entry-point group (`[project.entry-points.
"sparsetune.methods"] toy = "toypkg.toy:ToyPruning"` in their pyproject) or `Registry.register`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from importlib.metadata import entry_points
from typing import Any


class Registry(Mapping[str, Any]):
    def __init__(self, kind: str, table: Mapping[str, str], entry_point_group: str | None = None):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._table = dict(table)
        self._loaded: dict[str, Any] = {}
        self._plugins_read = entry_point_group is None
        self._unlisted: set[str] = set()

    def register(self, name: str, target: str | Any, *, listed: bool = True) -> None:
        """Add `name`: a "module:attribute" string (imported on first use) or the object itself.
        An unlisted name resolves like any other but is left out of the names a user is offered
        (help, "choose one of"): a Python object's generated name is not one to type."""
        if not listed:
            self._unlisted.add(name)
        if isinstance(target, str):
            self._table[name] = target
            self._loaded.pop(name, None)
        else:
            self._table[name] = f"{target.__module__}:{target.__qualname__}"
            self._loaded[name] = target

    def _entries(self) -> dict[str, str]:
        if not self._plugins_read:
            # Read once, when a name is first needed: installed packages that extend this table.
            # A built-in name wins over a plugin's, so a package cannot shadow one by accident.
            self._plugins_read = True
            for point in entry_points(group=self.entry_point_group):
                self._table.setdefault(point.name, point.value)
        return self._table

    def names(self) -> list[str]:
        return sorted(self.in_order())

    def in_order(self) -> list[str]:
        """The listed names in the order they were added: the built-in table's, then plugins'."""
        return [name for name in self._entries() if name not in self._unlisted]

    def check(self, name: str) -> str:
        """Return `name` if registered, else raise a ValueError that lists the known names."""
        if name not in self._entries():
            raise ValueError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            )
        return name

    def __getitem__(self, name: str) -> Any:
        self.check(name)
        if name not in self._loaded:
            module_name, _, attribute = self._table[name].partition(":")
            target: Any = importlib.import_module(module_name)
            for part in attribute.split("."):
                target = getattr(target, part)
            self._loaded[name] = target
        return self._loaded[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.in_order())


class NotImportable(ValueError):
    """`import_object`'s path names no module or attribute that can be found (a typo, or a
    package not installed): the one refusal that installing or PYTHONPATH can fix."""


class ExitedOnImport(ValueError):
    """The module `import_object` imported tried to end the process (`sys.exit()` at module
    level): one line, not sparsetune's exit."""


def import_object(path: str) -> Any:
    """Import "package.module:attribute", with a one-line error when it cannot be found. A
    module that exits while it is imported (`sys.exit()` at module level, or any BaseException
    but Ctrl-C's KeyboardInterrupt) is a ValueError too: left to escape, it would end
    sparsetune with the module's exit code (0: "success") and no word of why. Other exceptions
    of the module's own code propagate for the caller to name."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise NotImportable(f"import path {path!r} must look like 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise NotImportable(f"cannot import {module_name!r} for {path!r}: {error}") from None
    except (KeyboardInterrupt, Exception):
        raise
    except SystemExit as error:
        raise ExitedOnImport(
            f"importing {module_name!r} called sys.exit({error.code!r}); a module sparsetune "
            "imports must not exit: put that call under `if __name__ == '__main__':`"
        ) from None
    except BaseException as error:
        raise ExitedOnImport(
            f"importing {module_name!r} raised {type(error).__name__}; a module sparsetune "
            "imports must import without it"
        ) from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise NotImportable(
            f"{module_name!r} has no attribute {attribute!r} (from {path!r})"
        ) from None
