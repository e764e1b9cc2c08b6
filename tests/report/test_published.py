"""The papers' points drawn on a sweep's Pareto plot: the right ones, and only for a matching
model and dataset."""

from __future__ import annotations

import pytest

from sparsetune.catalog import METHODS, MODELS
from sparsetune.report.published import _all_points, published_points


def test_every_point_names_a_registered_model_method_and_a_sane_value():
    points = _all_points()
    assert len(points) >= 30
    for point in points:
        assert point.model in MODELS, point
        assert point.method in METHODS, point
        assert point.dataset in ("mnist", "cifar10", "cifar100"), point
        assert 0 < point.test_error < 100 and point.compression >= 1.0, point
        assert point.source


def test_points_match_model_and_dataset_exactly():
    lenet = published_points("lenet300", "mnist")
    assert {p.method for p in lenet} == {"dense", "magnitude", "l0", "sensitivity"}
    assert all(p.model == "lenet300" and p.dataset == "mnist" for p in lenet)
    # Same model, other data: the papers say nothing about it.
    assert published_points("lenet300", "fashion-mnist") == []
    assert published_points("lenet300", "synthetic") == []
    assert published_points(None, None) == []
    # GraSP's ResNet-32 is twice as wide: sparsetune's resnet32x2, not resnet32.
    assert published_points("resnet32", "cifar10") == []
    assert len(published_points("resnet32x2", "cifar10")) == 7


@pytest.mark.parametrize(
    ("model", "dataset", "method", "compression", "test_error"),
    [
        ("lenet300", "mnist", "magnitude", 12.0, 1.59),  # Han et al.
        ("lenet5", "mnist", "sensitivity", 51.1, 0.78),  # Tartaglione et al., unspecific
        ("lenet5", "mnist", "l0", 70.0, 1.0),  # Louizos et al. as Tartaglione reports it
        ("vgg19", "cifar10", "grasp", 50.0, 100 - 92.19),  # GraSP's table at 98%
        ("resnet32x2", "cifar100", "snip", 10.0, 100 - 68.89),  # SNIP in GraSP's table at 90%
    ],
)
def test_published_numbers_as_papers_md_gives_them(model, dataset, method, compression, test_error):
    (point,) = [
        p
        for p in published_points(model, dataset)
        if p.method == method and p.compression == compression
    ]
    assert point.test_error == pytest.approx(test_error)
    assert point.test_acc == pytest.approx(1 - test_error / 100)
