"""Pruning methods by name. Each entry is one line: "name": "module:Class".

Listing and validating names imports nothing heavy; `METHODS[name]` imports the method's module.
`METHOD_CONFIGS[name]` is the method's pydantic `Config` (the knobs the search varies).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from sparsetune.registry import Registry

METHODS = Registry(
    "method",
    {
        "dense": "sparsetune.pruning.dense:Dense",
        "magnitude": "sparsetune.pruning.magnitude:MagnitudePruning",
        "l0": "sparsetune.pruning.l0:L0Regularization",
        "sensitivity": "sparsetune.pruning.sensitivity:SensitivityRegularization",
        "snip": "sparsetune.pruning.snip:SNIP",
        "grasp": "sparsetune.pruning.grasp:GraSP",
        "random": "sparsetune.pruning.random_pruning:RandomPruning",
        "lottery": "sparsetune.pruning.lottery:LotteryTicket",
    },
)


class _ConfigView(Mapping[str, Any]):
    """name -> the method's Config class, resolved through METHODS."""

    def __getitem__(self, name: str) -> Any:
        return METHODS[name].Config

    def __iter__(self) -> Iterator[str]:
        return iter(METHODS)

    def __len__(self) -> int:
        return len(METHODS)


METHOD_CONFIGS: Mapping[str, Any] = _ConfigView()
