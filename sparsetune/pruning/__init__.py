"""Pruning methods by name (the table lives in `sparsetune.catalog`, one line a method).

Listing and validating names imports nothing heavy; `METHODS[name]` imports the method's module.
`METHOD_CONFIGS[name]` is the method's pydantic `Config` (the knobs the search varies).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from sparsetune.catalog import METHODS

__all__ = ["METHODS", "METHOD_CONFIGS"]


class _ConfigView(Mapping[str, Any]):
    """name -> the method's Config class, resolved through METHODS."""

    def __getitem__(self, name: str) -> Any:
        return METHODS[name].Config

    def __iter__(self) -> Iterator[str]:
        return iter(METHODS)

    def __len__(self) -> int:
        return len(METHODS)


METHOD_CONFIGS: Mapping[str, Any] = _ConfigView()
