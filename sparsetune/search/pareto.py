"""Non-dominated points, over every (trial, round) a sweep reported."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def _oriented(point: Mapping[str, Any], metrics: Sequence[str], modes: Sequence[str]) -> tuple:
    return tuple(
        float(point[m]) if mode == "max" else -float(point[m])
        for m, mode in zip(metrics, modes, strict=True)
    )


def dominates(a: tuple, b: tuple) -> bool:
    """a is at least as good as b everywhere and better somewhere (all oriented to max)."""
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(
        x > y for x, y in zip(a, b, strict=True)
    )


def pareto_front(
    points: Sequence[Mapping[str, Any]], metrics: Sequence[str], modes: Sequence[str]
) -> list[Mapping[str, Any]]:
    """The points no other point dominates, best first in the first metric. Exact duplicates
    keep their first occurrence; points with a missing or NaN metric never enter."""
    valid = [
        p
        for p in points
        if all(m in p and p[m] is not None and not math.isnan(float(p[m])) for m in metrics)
    ]
    oriented = [_oriented(p, metrics, modes) for p in valid]
    front, seen = [], set()
    for i, point in enumerate(valid):
        if oriented[i] in seen:
            continue
        if not any(dominates(other, oriented[i]) for other in oriented):
            front.append(point)
            seen.add(oriented[i])
    return sorted(front, key=lambda p: _oriented(p, metrics, modes), reverse=True)
