"""Non-dominated points, over every (trial, round) a sweep reported.

`ParetoFront` keeps a front up to date as points arrive, comparing each new point with the front
only (a point dominated by any earlier point is dominated by one on the front): a long sweep's
live progress pays that per report, where comparing all pairs grew with the rows. `pareto_front`
is the same over a whole list."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def _oriented(point: Mapping[str, Any], metrics: Sequence[str], modes: Sequence[str]) -> tuple:
    return tuple(
        float(point[m]) if mode == "max" else -float(point[m])
        for m, mode in zip(metrics, modes, strict=True)
    )


def _valid(point: Mapping[str, Any], metrics: Sequence[str]) -> bool:
    return all(
        m in point and point[m] is not None and not math.isnan(float(point[m])) for m in metrics
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
    front = ParetoFront(metrics, modes)
    for point in points:
        front.add(point)
    return front.points()


class ParetoFront:
    """The front of the points added so far, best first in the first metric; of exact
    duplicates the first added stays."""

    def __init__(self, metrics: Sequence[str], modes: Sequence[str]):
        self.metrics, self.modes = tuple(metrics), tuple(modes)
        self._front: list[tuple[tuple, Mapping[str, Any]]] = []

    def add(self, point: Mapping[str, Any]) -> None:
        if not _valid(point, self.metrics):
            return
        key = _oriented(point, self.metrics, self.modes)
        # An equal point already there is the first occurrence and stays.
        if any(other == key or dominates(other, key) for other, _ in self._front):
            return
        self._front = [(other, p) for other, p in self._front if not dominates(key, other)]
        self._front.append((key, point))
        self._front.sort(key=lambda pair: pair[0], reverse=True)

    def points(self) -> list[Mapping[str, Any]]:
        return [point for _, point in self._front]
