"""Non-dominated points, over every (trial, round) a sweep reported.

`pareto_front` sorts once and compares each point with the front found so far, not with every
other point: a long sweep's thousands of rows cost milliseconds, where comparing all pairs
grew with the square of the rows on every report. `ParetoFront` keeps a front up to date as
points arrive, for the sweep's live progress."""

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
    valid = [p for p in points if _valid(p, metrics)]
    # Best first, lexicographically (a stable sort: equal points keep their order). A point's
    # dominators all sort before it, and if any does, one on the front does (the dominance
    # chain ends there): so each point needs comparing with the front found so far only.
    ranked = sorted(
        ((_oriented(p, metrics, modes), p) for p in valid), key=lambda pair: pair[0], reverse=True
    )
    front: list[tuple[tuple, Mapping[str, Any]]] = []
    for key, point in ranked:
        if front and front[-1][0] == key:  # an exact duplicate sorts right after its first
            continue
        if not any(dominates(other, key) for other, _ in front):
            front.append((key, point))
    return [point for _, point in front]


class ParetoFront:
    """The front of the points added so far, kept up to date one point at a time: the same
    points, in the same order, as `pareto_front` over all of them, at the cost of comparing
    each new point with the front only."""

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
