"""The result schema: what a trial reports each round, and the columns every writer derives from it.

One owner for the names. The trial driver fills `RoundMetrics`; the Ray report, the MLflow child
run, the progress rows, `trials.csv`, `pareto.json`, the review and `prune --json` all read their
fields from here, so a new metric is added once (a field below) and reaches every record.
No torch here: the CLI and the report read these names without loading it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class RoundMetrics:
    """The numbers one reported round of a trial produced: a candidate for the Pareto front."""

    round: int
    val_acc: float
    val_loss: float
    test_acc: float
    compression: float  # prunable weights / surviving prunable weights
    flops_ratio: float  # remaining multiply-accumulates of the prunable layers / dense
    remaining_weights: int
    total_weights: int
    architecture: str  # surviving units, e.g. "20-50-800-500"
    seconds: float  # wall time since the trial started
    # Bytes of the round's sparse export (nonzero values and their indices): the memory
    # footprint (docs/export.md). None when the round wrote no ticket.
    memory_footprint_bytes: int | None = None

    def metrics(self) -> dict[str, Any]:
        """The flat numbers a tracker or a searcher records for this round."""
        return {name: getattr(self, name) for name in ROUND_METRICS}


ROUND_METRICS: tuple[str, ...] = tuple(field.name for field in fields(RoundMetrics))

# What identifies the trial a round belongs to, next to its metrics in every row.
TRIAL_KEYS = ("trial_id", "method", "params", "key_params", "config_hash", "run_id")
# The numbers a trial's curves (MLflow's round_curves.png, the resume bookkeeping) are drawn from.
CURVE_KEYS = ("round", "val_acc", "test_acc", "compression", "flops_ratio")
# Numbers MLflow's model registry copies from a ticket's header onto a registered version.
REGISTERED_METRICS = ("val_acc", "test_acc", "compression", "flops_ratio")

# `trials.csv`: one row per (trial, round), failed trials too.
ROW_FIELDS = (
    "trial_id",
    "status",
    "feasible",
    "round",
    "method",
    "val_acc",
    "test_acc",
    "compression",
    "flops_ratio",
    "remaining_weights",
    "memory_footprint_bytes",
    "architecture",
    "seconds",
    "config_hash",
    "run_id",
    "params",
    "error",
)
# `pareto.json`: one object per front point; errors in percent, as the papers give them.
FRONT_FIELDS = (
    "val_acc",
    "test_acc",
    "val_error",
    "test_error",
    "compression",
    "flops_ratio",
    "memory_footprint_bytes",
    "method",
    "params",
    "key_params",
    "architecture",
    "round",
    "trial_id",
    "run_id",
    "config_hash",
)
