"""`--enqueue`: points read, checked against the space and turned into Optuna's flat names."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparsetune.search.enqueue import PAPER_POINTS, enqueue_path, load_points
from sparsetune.search.space import SPACES_DIR, default_space_path, load_space

SPACE = """
methods:
  dense: {}
  magnitude:
    criterion: {choices: [std, global]}
    c_fc: {low: 0.5, high: 2.5}
    rounds: {low: 1, high: 4}
    retrain_epochs: 1
"""


@pytest.fixture
def space(tmp_path: Path):
    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    return load_space(path)


def points(tmp_path: Path, text: str, space, model: str = "lenet300"):
    path = tmp_path / "points.yaml"
    path.write_text(text)
    return load_points(path, space, model)


def test_points_become_flat_optuna_parameters_in_file_order(tmp_path, space):
    loaded = points(
        tmp_path,
        "- method: magnitude\n  params: {criterion: std, c_fc: 1.7, rounds: 3, retrain_epochs: 1}\n"
        "- method: dense\n"
        "- method: snip\n  params: {sparsity: 0.9}\n"
        "- method: magnitude\n  models: [lenet5]\n  params: {c_fc: 0.6}\n",
        space,
    )
    assert loaded.points == [
        {
            "method": "magnitude",
            "magnitude.criterion": "std",
            "magnitude.c_fc": 1.7,
            "magnitude.rounds": 3,
        },  # fmt: skip
        {"method": "dense"},
    ]
    assert loaded.skipped == ["snip (not in this sweep)"]  # lenet5's point passes silently


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- method: magnitude\n  params: {c_fc: 3.0}\n", r"magnitude.c_fc=3.0 is outside .*2.5"),
        ("- method: magnitude\n  params: {rounds: 2.5}\n", "must be a whole number"),
        ("- method: magnitude\n  params: {criterion: layerwise}\n", "not one of \\['std'"),
        ("- method: magnitude\n  params: {retrain_epochs: 5}\n", "fixed at 1 in this space"),
        ("- method: magnitude\n  params: {sparsity: 0.9}\n", "no parameter 'sparsity'"),
        ("- method: magnitude\n  params: {c_fc: high}\n", "is not a number"),
        ("- method: magnitude\n  param: {c_fc: 1.0}\n", "unknown key\\(s\\) param"),
        ("- {params: {c_fc: 1.0}}\n", "point 1: expected a mapping with `method`"),
        ("method: magnitude\n", "expected a list of points"),
        ("- method: [\n", "not valid YAML"),
    ],
)
def test_a_bad_point_is_one_line_naming_it(tmp_path, space, text, message):
    with pytest.raises(ValueError, match=message):
        points(tmp_path, text, space)


PAPER_METHODS = {"dense", "magnitude", "lottery", "l0", "sensitivity", "snip", "grasp", "random"}


def test_the_papers_points_fit_every_built_in_space():
    assert enqueue_path("paper") == PAPER_POINTS
    assert PAPER_POINTS.parent == SPACES_DIR
    for model in ("lenet300", "lenet5", "resnet20", "resnet32", "resnet32x2", "vgg16", "vgg19"):
        space = load_space(default_space_path(model))
        loaded = load_points(PAPER_POINTS, space, model)
        methods = [p.get("method") for p in loaded.points]
        # one point for each method the space searches that the papers give, dense included
        # (a method without a point, e.g. a plugin's, is simply not enqueued)
        assert set(methods) == set(space.method_names) & PAPER_METHODS, model
        magnitude = next(p for p in loaded.points if p["method"] == "magnitude")
        assert magnitude["magnitude.c_fc"] == 1.7  # Han et al.'s 91% cut in fc layers
