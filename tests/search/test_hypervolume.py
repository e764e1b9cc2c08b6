"""The hypervolume, by hand in two and three dimensions and against a Monte-Carlo estimate."""

from __future__ import annotations

import math
import random

import pytest

from sparsetune.search.hypervolume import axis_value, hypervolume

PARETO = ("val_acc", "compression")


def point(acc: float, compression: float, flops: float = 1.0) -> dict:
    return {"val_acc": acc, "compression": compression, "flops_ratio": flops}


def test_axes_put_the_reference_at_chance_and_1x():
    assert axis_value("val_acc", 0.1, 10) == pytest.approx(0.0)
    assert axis_value("compression", 1.0, 10) == 0.0
    assert axis_value("compression", 100.0, 10) == pytest.approx(2.0)
    assert axis_value("flops_ratio", 0.01, 10) == pytest.approx(2.0)  # 100x fewer FLOPs
    assert axis_value("flops_ratio", 1.0, 10) == 0.0


def test_two_points_by_hand():
    # On the axes: (0.8, 1) and (0.5, 2) (10 classes: 0.9 - 0.1; log10 10 = 1, log10 100 = 2).
    # Union of the rectangles: 0.8 * 1 + 0.5 * (2 - 1) = 1.3.
    rows = [point(0.9, 10.0), point(0.6, 100.0)]
    assert hypervolume(rows, PARETO, 10) == pytest.approx(1.3)


def test_dominated_and_below_reference_points_add_nothing():
    rows = [point(0.9, 10.0), point(0.6, 100.0)]
    extra = [
        point(0.85, 5.0),  # dominated by the first
        point(0.05, 1000.0),  # below chance: outside the reference box
        point(0.95, 1.0),  # no compression: zero width
        {"val_acc": None, "compression": 3.0},
        point(float("nan"), 3.0),
    ]
    assert hypervolume(rows + extra, PARETO, 10) == pytest.approx(1.3)
    assert hypervolume([], PARETO, 10) == 0.0


def test_a_point_moving_out_grows_the_area():
    base = hypervolume([point(0.9, 10.0)], PARETO, 10)
    assert hypervolume([point(0.9, 20.0)], PARETO, 10) > base
    assert hypervolume([point(0.95, 10.0)], PARETO, 10) > base


def test_three_objectives_by_hand():
    metrics = ("val_acc", "compression", "flops_ratio")
    # Axes (0.8, 1, 1) and (0.4, 2, 0.5): boxes 0.8 and 0.4; overlap 0.4 * 1 * 0.5 = 0.2.
    rows = [point(0.9, 10.0, 0.1), point(0.5, 100.0, 10**-0.5)]
    assert hypervolume(rows, metrics, 10) == pytest.approx(0.8 + 0.4 - 0.2)


def test_three_objectives_against_monte_carlo():
    rng = random.Random(0)
    metrics = ("val_acc", "compression", "flops_ratio")
    rows = [
        point(rng.uniform(0.2, 1.0), 10 ** rng.uniform(0, 2), 10 ** -rng.uniform(0, 2))
        for _ in range(12)
    ]
    exact = hypervolume(rows, metrics, 10)
    axes = [tuple(axis_value(m, r[m], 10) for m in metrics) for r in rows]
    box = (0.9, 2.0, 2.0)
    samples, inside = 100_000, 0
    for _ in range(samples):
        x = tuple(rng.uniform(0, b) for b in box)
        inside += any(all(xi <= pi for xi, pi in zip(x, p, strict=True)) for p in axes)
    estimate = inside / samples * math.prod(box)
    assert exact == pytest.approx(estimate, rel=0.03)
