"""sparsetune: hyperparameter search for sparse neural networks.

`import sparsetune` is cheap on purpose: it loads none of torch, Ray, Optuna or MLflow. The heavy
parts live in subpackages that a caller imports when it needs them; `sparsetune.load` (a model
from an exported ticket, see `sparsetune.export`) is resolved on first use for the same reason.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "load"]


def __getattr__(name: str) -> Any:
    # PEP 562: `sparsetune.load` imports torch only when it is first looked up.
    if name == "load":
        from sparsetune.export import load

        return load
    raise AttributeError(f"module 'sparsetune' has no attribute {name!r}")
