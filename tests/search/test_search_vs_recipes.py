"""benchmarks/search_vs_recipes.py's figures, by hand: weak dominance of recipe points by a
sweep's front, and the hypervolume ratio on the sweep's axes."""

from __future__ import annotations

import pytest
from sweep_helpers import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("search_vs_recipes")


def point(acc: float, compression: float) -> dict:
    return {"val_acc": acc, "compression": compression}


def test_a_front_point_weakly_dominates_what_it_equals_or_beats_on_both_axes(bench):
    front = [point(0.90, 10.0), point(0.80, 50.0)]
    recipes = [
        point(0.90, 10.0),  # equal: weakly dominated
        point(0.85, 40.0),  # beaten by the 50x point on compression, not on accuracy
        point(0.79, 50.0),
        point(0.95, 2.0),  # more accurate than the whole front
    ]
    assert bench.dominated_share(front, recipes) == pytest.approx(2 / 4)
    assert bench.dominated_share(front, []) == 0.0


def test_the_ratio_is_on_the_hypervolume_axes(bench):
    from sparsetune.search.hypervolume import hypervolume

    recipes = [point(0.55, 10.0)]  # 0.45 above chance x 1 decade
    sweep = [point(0.55, 100.0)]  # the same accuracy at two decades
    metrics = bench.OBJECTIVE.metrics
    hv = hypervolume(sweep, metrics, 10) / hypervolume(recipes, metrics, 10)
    assert hv == pytest.approx(2.0)
    assert bench.ratio(1.0, 0.0) == float("inf")
