"""The papers' published (test error, compression) points, from `published.yaml`, for drawing
next to a sweep's own points. A point is shown only where its model and dataset are the sweep's:
LeNet-5 on MNIST says nothing about LeNet-5 on Fashion-MNIST."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from sparsetune.yamlio import load_file

PUBLISHED_FILE = Path(__file__).resolve().parent / "published.yaml"


@dataclass(frozen=True)
class PublishedPoint:
    model: str
    dataset: str
    method: str
    test_error: float  # percent
    compression: float
    source: str

    @property
    def test_acc(self) -> float:
        """As a fraction, the unit sparsetune's own metrics use."""
        return 1.0 - self.test_error / 100.0


@cache
def _all_points(path: Path = PUBLISHED_FILE) -> tuple[PublishedPoint, ...]:
    entries = load_file(path, expected="the papers' points shipped with sparsetune") or []
    return tuple(
        PublishedPoint(
            model=str(entry["model"]),
            dataset=str(entry["dataset"]),
            method=str(entry["method"]),
            test_error=float(entry["test_error"]),
            compression=float(entry["compression"]),
            source=str(entry["source"]),
        )
        for entry in entries
    )


def published_points(model: str | None, dataset: str | None) -> list[PublishedPoint]:
    """The papers' points for exactly this model and dataset (none for other pairs)."""
    return [p for p in _all_points() if p.model == model and p.dataset == dataset]
