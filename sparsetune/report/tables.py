"""Terminal tables (rich): the Pareto front and Han et al.'s per-layer table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

from sparsetune.report.results import front_record


def _format_params(params: Mapping[str, Any]) -> str:
    return " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


def pareto_table(front: Sequence[Mapping[str, Any]], title: str = "Pareto front") -> Table:
    """One row per front point. Narrow numeric columns never wrap; the hyperparameters fold."""
    table = Table(title=title, title_justify="left")
    for column in (
        "val acc",
        "test acc",
        "test err%",
        "compr.",
        "FLOPs",
        "method",
        "round",
        "run id",
    ):
        table.add_column(
            column, no_wrap=True, justify="left" if column in ("method", "run id") else "right"
        )
    table.add_column("key hyperparameters", overflow="fold", min_width=20)
    for row in front:
        record = front_record(row)
        table.add_row(
            f"{record['val_acc']:.4f}",
            f"{record['test_acc']:.4f}",
            f"{record['test_error']:.2f}",
            f"{record['compression']:.1f}x",
            f"{100 * record['flops_ratio']:.1f}%",
            str(record["method"]),
            str(record["round"]),
            str(record["run_id"] or record["trial_id"])[:8],
            _format_params(row.get("key_params", {})),
        )
    return table


def layer_table(layers: Sequence[Mapping[str, Any]], title: str = "Per-layer sparsity") -> Table:
    """Han et al.'s table: layer, shape, weights, weights remaining, FLOPs remaining."""
    table = Table(title=title)
    for column in ("layer", "shape", "weights", "remaining %", "FLOPs remaining %"):
        table.add_column(column, justify="left" if column in ("layer", "shape") else "right")
    for layer in layers:
        table.add_row(
            str(layer["name"]),
            str(layer["shape"]),
            f"{layer['weights']:,}",
            f"{layer['remaining_pct']:.2f}",
            f"{layer['flops_remaining_pct']:.2f}",
        )
    return table
