"""A lazy name -> object table: the one mechanism behind every extension point.

Entries are "module:attribute" strings, imported on first use, so listing or validating names
never imports torch. Unknown names raise a ValueError that lists the known ones.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any


class Registry(Mapping[str, Any]):
    def __init__(self, kind: str, table: Mapping[str, str]):
        self.kind = kind
        self._table = dict(table)
        self._loaded: dict[str, Any] = {}

    def names(self) -> list[str]:
        return sorted(self._table)

    def check(self, name: str) -> str:
        """Return `name` if registered, else raise a ValueError that lists the known names."""
        if name not in self._table:
            raise ValueError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            )
        return name

    def __getitem__(self, name: str) -> Any:
        self.check(name)
        if name not in self._loaded:
            module_name, _, attribute = self._table[name].partition(":")
            self._loaded[name] = getattr(importlib.import_module(module_name), attribute)
        return self._loaded[name]

    def __contains__(self, name: object) -> bool:
        return name in self._table

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._table)


def import_object(path: str) -> Any:
    """Import "package.module:attribute", with a one-line error when it cannot be found."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"import path {path!r} must look like 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"cannot import {module_name!r} for {path!r}: {error}") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ValueError(
            f"{module_name!r} has no attribute {attribute!r} (from {path!r})"
        ) from None
