"""The hypervolume of a sweep's front: the area (or volume) it dominates above a reference point.

Axes, each oriented so that larger is better and the reference point sits at 0:
- val_acc: accuracy above chance, val_acc - 1 / num_classes (reference: chance accuracy);
- compression: log10(compression) (reference: 1x, the dense model);
- flops_ratio: log10(1 / flops_ratio) (reference: all FLOPs remaining).
Compression and FLOPs count on a log scale, as pruning papers plot them: one point at 100x and
chance-level accuracy would otherwise outweigh every useful ticket. Points below the reference on
any axis add nothing. Exact for two and three objectives.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

AXES = {
    "val_acc": "accuracy above chance",
    "compression": "log10 compression",
    "flops_ratio": "log10 FLOPs reduction",
}


def describe_axes(metrics: Sequence[str]) -> str:
    """The hypervolume's axes in words, for the terminal and pareto.json."""
    return " x ".join(AXES[metric] for metric in metrics) + " (reference: chance, 1x, 1x)"


def axis_value(metric: str, value: float, num_classes: int) -> float:
    if metric == "val_acc":
        return value - 1.0 / num_classes
    if metric == "compression":
        return math.log10(value)
    if metric == "flops_ratio":
        return -math.log10(value) if value > 0 else math.inf
    raise ValueError(f"no hypervolume axis for metric {metric!r}")


def hypervolume(
    rows: Sequence[Mapping[str, Any]], metrics: Sequence[str], num_classes: int
) -> float:
    """The hypervolume of `rows` (any points: dominated ones add nothing) over `metrics`."""
    points = []
    for row in rows:
        values = [row.get(metric) for metric in metrics]
        if any(v is None or math.isnan(float(v)) for v in values):
            continue
        point = tuple(
            axis_value(m, float(v), num_classes) for m, v in zip(metrics, values, strict=True)
        )
        if all(x > 0 for x in point):
            points.append(point)
    if len(metrics) == 1:
        return max((p[0] for p in points), default=0.0)
    if len(metrics) == 2:
        return _area(points)
    if len(metrics) == 3:
        return _volume(points)
    raise ValueError(f"hypervolume for {len(metrics)} objectives is not implemented")


def _area(points: Sequence[tuple[float, ...]]) -> float:
    """Area dominated by 2-D points (maximised, reference at the origin): sweep along x from the
    largest, adding each point's strip above the best y seen so far."""
    area, best_y = 0.0, 0.0
    for x, y in sorted(points, reverse=True):
        if y > best_y:
            area += x * (y - best_y)
            best_y = y
    return area


def _volume(points: Sequence[tuple[float, ...]]) -> float:
    """Volume dominated by 3-D points: slice along z; each slab between two consecutive z values
    is the area dominated by the points reaching at least that z."""
    by_z = sorted(points, key=lambda p: p[2], reverse=True)
    volume = 0.0
    for index, point in enumerate(by_z):
        next_z = by_z[index + 1][2] if index + 1 < len(by_z) else 0.0
        if point[2] > next_z:
            volume += (point[2] - next_z) * _area([p[:2] for p in by_z[: index + 1]])
    return volume
