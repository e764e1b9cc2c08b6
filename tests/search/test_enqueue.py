"""`--enqueue`: points read, checked against the space and turned into Optuna's flat names."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparsetune.models import build_model
from sparsetune.recipe import method_recipe
from sparsetune.search.enqueue import (
    AUTO,
    AUTO_TRIALS_PER_POINT,
    NONE,
    PAPER_POINTS,
    auto_points,
    enqueue_path,
    load_points,
)
from sparsetune.search.options import SweepConfig
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


@pytest.mark.parametrize("model", ["lenet300", "lenet5"])
def test_the_recipe_schedule_point_is_the_lenet_recipe_within_the_space(model):
    """The magnitude point of the LeNet recipe's schedule: its rounds, retraining and rate as
    `sparsetune prune`'s recipe, and its one global cut at least what the recipe's per-layer
    targets remove in all, by less than half a point (so each round is compressed at least as
    much as the recipe's, as its per-layer cut counts)."""
    recipe = method_recipe(model, "magnitude").params
    loaded = load_points(PAPER_POINTS, load_space(default_space_path(model)), model)
    point = next(
        p for p in loaded.points if p["method"] == "magnitude" and "magnitude.sparsity" in p
    )
    for knob in ("rounds", "retrain_epochs", "retrain_lr_factor", "retrain_schedule"):
        assert point[f"magnitude.{knob}"] == recipe[knob], knob
    net = build_model(model, (1, 28, 28), 10)
    sizes = {name: net.get_submodule(name).weight.numel() for name in recipe["layer_sparsity"]}
    removed = sum(sizes[name] * share for name, share in recipe["layer_sparsity"].items())
    assert 0 <= point["magnitude.sparsity"] - removed / sum(sizes.values()) < 0.005


def test_the_far_end_point_is_the_recipe_schedule_at_the_spaces_highest_threshold():
    """LeNet-300-100's far-end magnitude point: the recipe schedule's rounds, retraining, rate and
    decay, with Han's per-layer C x std criterion at the top of the space's `c_fc` range."""
    space = load_space(default_space_path("lenet300"))
    loaded = load_points(PAPER_POINTS, space, "lenet300").points
    schedule = next(p for p in loaded if "magnitude.sparsity" in p)
    far_end = [
        p for p in loaded if p.get("magnitude.c_fc") == space.methods["magnitude"]["c_fc"].high
    ]
    assert len(far_end) == 1
    assert far_end[0]["magnitude.criterion"] == "std"
    for knob in (
        "rounds",
        "retrain_epochs",
        "retrain_lr_factor",
        "retrain_schedule",
        "weight_decay",
    ):
        assert far_end[0][f"magnitude.{knob}"] == schedule[f"magnitude.{knob}"], knob


def test_auto_runs_the_papers_points_that_fit_in_a_sweep_with_room_for_the_sampler(space):
    # The test space: dense, and magnitude without sparsity and with retraining fixed at one
    # epoch. Han's point (c_conv, a knob this space does not sample) does not fit: `auto`
    # leaves it out and says why, where `--enqueue paper` refuses the sweep.
    with pytest.raises(ValueError, match="no parameter 'c_conv'"):
        load_points(PAPER_POINTS, space, "lenet300")
    loaded = auto_points(space, "lenet300", trials=2 * AUTO_TRIALS_PER_POINT)
    assert loaded.points == [{"method": "dense"}]
    assert "magnitude (magnitude has no parameter 'c_conv' in this space)" in loaded.skipped
    # A sweep too short to leave the sampler half its trials runs no points.
    too_few = auto_points(space, "lenet300", trials=AUTO_TRIALS_PER_POINT - 1)
    assert too_few.points == []
    built_in = load_space(default_space_path("lenet300"))
    paper = load_points(PAPER_POINTS, built_in, "lenet300").points
    every = auto_points(built_in, "lenet300", trials=2 * AUTO_TRIALS_PER_POINT * len(paper))
    assert every.points == paper
    assert auto_points(built_in, "lenet300", AUTO_TRIALS_PER_POINT * len(paper) - 1).points == []


def test_the_run_check_skips_an_auto_point_it_refuses(tmp_path, space):
    def no_dense(where: str, method: str, params: dict) -> None:
        if method == "dense":
            raise ValueError(f"{where}: dense cannot run here")

    loaded = auto_points(space, "lenet300", trials=100, check=no_dense)
    assert loaded.points == []
    assert "dense (dense cannot run here)" in loaded.skipped


def test_the_option_defaults_to_auto_and_none_means_no_points():
    assert SweepConfig(model="lenet300").enqueue == AUTO
    assert SweepConfig(model="lenet300", enqueue=None).enqueue == NONE  # recorded before auto
