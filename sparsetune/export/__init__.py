"""Tickets out of sparsetune as real model files: dense, sparse or structured (physically smaller),
and `load` for any of them or a raw ticket. torch and safetensors only: no MLflow, no Ray
(registering a model is `sparsetune.tracking.model_registry`). See docs/export.md.

The names below resolve on first use (PEP 562), so that `sparsetune.export.header`, which the CLI
reads before it validates input and the trial uses to write tickets, imports no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sparsetune.export.formats import Export, encode, export_ticket, load, memory_footprint
    from sparsetune.export.header import EXPORT_FORMATS
    from sparsetune.export.ticket import Ticket, find_ticket, read_ticket

_HOMES = {
    "EXPORT_FORMATS": "sparsetune.export.header",
    "Export": "sparsetune.export.formats",
    "encode": "sparsetune.export.formats",
    "export_ticket": "sparsetune.export.formats",
    "load": "sparsetune.export.formats",
    "memory_footprint": "sparsetune.export.formats",
    "Ticket": "sparsetune.export.ticket",
    "find_ticket": "sparsetune.export.ticket",
    "read_ticket": "sparsetune.export.ticket",
}

__all__ = [
    "EXPORT_FORMATS",
    "Export",
    "Ticket",
    "encode",
    "export_ticket",
    "find_ticket",
    "load",
    "memory_footprint",
    "read_ticket",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'sparsetune.export' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
