"""The non-dominated set, by hand."""

from __future__ import annotations

from sparsetune.search.pareto import dominates, pareto_front

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
