"""sparsetune: hyperparameter search for sparse neural networks.

The public API is what this module exports:
- `sparsetune.search(model, data=..., objective=..., trials=..., ...)`: a sweep, as
  `sparsetune search` runs it; returns its Pareto front (`sparsetune.app.api.SearchRun`);
- `sparsetune.search_async(...)`: the same sweep as a coroutine, run in a worker thread, for an
  event loop that must stay free meanwhile (a Jupyter kernel);
- `sparsetune.prune(model, method=..., data=..., params=..., ...)`: one configuration, as
  `sparsetune prune` runs it (`sparsetune.app.prune.PruneResult`);
- `sparsetune.session()`: a context manager whose sweeps share one local Ray, kept up between
  them, each next sweep's trial workers started and loaded ahead;
- `sparsetune.load(path, masks=False, model=None)`: a ready model from a ticket or an exported
  file (`sparsetune.export`); `model=` gives the architecture (an instance or a factory).

`import sparsetune` is cheap on purpose: it loads none of torch, Ray, Optuna or MLflow; each of
the names above is resolved on first use, and loads what it needs then.
"""

from __future__ import annotations

import sys
import types
from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "load", "prune", "search", "search_async", "session"]

# PEP 562: each public name is imported only when it is first looked up.
_LAZY = {
    "load": "sparsetune.export",
    "prune": "sparsetune.app.api",
    "search": "sparsetune.app.api",
    "search_async": "sparsetune.app.api",
    "session": "sparsetune.app.api",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sparsetune' has no attribute {name!r}")


class _PublicApi(types.ModuleType):
    """The package's module type: the function `sparsetune.search` keeps its name although a
    subpackage is called `sparsetune.search` too. Importing a submodule sets it as an attribute
    of its parent, which would hide the function after the first sweep; that one assignment is
    skipped. `from sparsetune.search.sweep import ...` still works (it reads `sys.modules`)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _PublicApi
