"""The non-dominated set: by hand, and against the pairwise definition on random sets."""

from __future__ import annotations

import random

import pytest

from sparsetune.search.pareto import ParetoFront, dominates, pareto_front

METRICS, MODES = ("val_acc", "compression"), ("max", "max")


def point(acc, compression, name=""):
    return {"val_acc": acc, "compression": compression, "name": name}


def test_front_of_a_hand_made_set():
    points = [
        point(0.99, 1.0, "dense"),
        point(0.98, 10.0, "a"),
        point(0.97, 8.0, "dominated by a"),
        point(0.90, 50.0, "b"),
        point(0.90, 40.0, "dominated by b"),
        point(0.98, 10.0, "duplicate of a"),
        point(float("nan"), 100.0, "diverged"),
    ]
    front = pareto_front(points, METRICS, MODES)
    assert [p["name"] for p in front] == ["dense", "a", "b"]


def test_minimised_metrics_are_oriented():
    points = [{"err": 1.0, "size": 5.0}, {"err": 2.0, "size": 1.0}, {"err": 2.0, "size": 6.0}]
    front = pareto_front(points, ("err", "size"), ("min", "min"))
    assert front == points[:2]


def test_dominates_needs_one_strict_improvement():
    assert dominates((1, 2), (1, 1)) and not dominates((1, 1), (1, 1))
    assert not dominates((2, 0), (1, 1))


def all_pairs_front(points, metrics, modes):
    """The definition, pair by pair: what the sorted front must equal."""
    sign = [1.0 if mode == "max" else -1.0 for mode in modes]
    valid = [p for p in points if all(p[m] == p[m] for m in metrics)]  # NaN != NaN
    keys = [tuple(s * p[m] for s, m in zip(sign, metrics, strict=True)) for p in valid]
    front, seen = [], set()
    for point, key in zip(valid, keys, strict=True):
        if key not in seen and not any(dominates(other, key) for other in keys):
            front.append((key, point))
            seen.add(key)
    return [point for _, point in sorted(front, key=lambda pair: pair[0], reverse=True)]


@pytest.mark.parametrize(
    ("metrics", "modes"),
    [
        (("val_acc", "compression"), ("max", "max")),
        (("val_acc", "compression", "flops_ratio"), ("max", "max", "min")),
        (("err", "size"), ("min", "min")),
    ],
)
@pytest.mark.parametrize("seed", range(20))
def test_the_front_and_the_running_front_are_the_pairwise_definitions(metrics, modes, seed):
    rng = random.Random(seed)
    # Few distinct values, so that ties, equal points and duplicates are common; every 17th
    # point may have a NaN metric (a diverged trial).
    values = [0.1, 0.2, 0.3, 0.5, 0.8]
    points = [
        {m: rng.choice(values + [float("nan")] * (i % 17 == 0)) for m in metrics} | {"name": i}
        for i in range(rng.randint(0, 80))
    ]
    assert [p["name"] for p in pareto_front(points, metrics, modes)] == [
        p["name"] for p in all_pairs_front(points, metrics, modes)
    ]
    running = ParetoFront(metrics, modes)
    for count, point in enumerate(points, 1):
        running.add(point)
        expected = all_pairs_front(points[:count], metrics, modes)
        assert [p["name"] for p in running.points()] == [p["name"] for p in expected]
