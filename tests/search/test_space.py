"""Search spaces: YAML in, validated, sampled define-by-run by a real Optuna study."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from sparsetune.catalog import BUILT_IN, METHODS
from sparsetune.search.space import (
    SPACES_DIR,
    default_space_path,
    load_space,
    method_fragment,
    params_from_flat,
    resolve_space_file,
    space_yaml,
)

CONDITIONAL = """
train: {epochs: 2}
methods:
  dense: {}
  magnitude:
    criterion: {choices: [std, global]}
    c_fc: {low: 0.5, high: 2.5, when: {criterion: std}}
    sparsity: {low: 0.5, high: 0.95, when: {criterion: global}}
    rounds: {low: 1, high: 4}
    retrain_lr_factor: {low: 0.01, high: 0.3, log: true}
    retrain_epochs: 1
"""


def write(tmp_path, text, name="space.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("model", ["lenet5", "lenet300"])
def test_the_lenet_spaces_search_every_method(model):
    space = load_space(default_space_path(model))
    # `methods: all`: every registered method with a fragment, in the catalog's order.
    with_fragment = [m for m in METHODS.in_order() if method_fragment(m) is not None]
    assert space.method_names == with_fragment
    assert set(BUILT_IN["method"]) <= set(space.method_names)
    assert space.is_conditional
    assert space.methods["magnitude"]["rounds"].integer


def test_every_built_in_method_has_a_fragment():
    for method in BUILT_IN["method"]:
        assert method_fragment(method) == SPACES_DIR / "methods" / f"{method}.yaml"


def test_the_lenet5_space_overrides_the_sensitivity_fragment():
    space = load_space(default_space_path("lenet5"))
    assert space.methods["sensitivity"]["variant"].value == "specific"
    fragment = load_space(default_space_path("lenet300")).methods["sensitivity"]
    assert fragment["variant"].choices == ["unspecific", "specific"]


def test_methods_all_reads_the_fragments_beside_the_space_first(tmp_path):
    (tmp_path / "methods").mkdir()
    (tmp_path / "methods" / "magnitude.yaml").write_text("rounds: 5\n")
    space = load_space(write(tmp_path, "methods: all\n"))
    assert space.methods["magnitude"]["rounds"].value == 5  # the copy beside the space
    assert space.methods["snip"] == load_space(default_space_path("lenet300")).methods["snip"]


def test_every_paper_point_names_a_registered_method():
    points = yaml.safe_load((SPACES_DIR / "paper_points.yaml").read_text())
    for point in points:
        METHODS.check(point["method"])


@pytest.mark.parametrize("model", ["resnet20", "resnet32", "resnet32x2", "vgg16", "vgg19"])
def test_the_cifar_spaces_search_the_methods_the_papers_run_there(model):
    space = load_space(default_space_path(model))
    assert space.method_names == ["dense", "magnitude", "lottery", "snip", "grasp", "random"]
    assert space.train.epochs == 160


def test_methods_restricts_a_space_in_the_order_given():
    space = load_space(default_space_path("lenet5"), ["snip", "lottery"])
    assert space.method_names == ["snip", "lottery"]


def test_sampling_follows_the_conditions_and_keeps_fixed_values(tmp_path):
    space = load_space(write(tmp_path, CONDITIONAL))
    assert space.train.epochs == 2
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_methods, seen_criteria = set(), set()
    for _ in range(40):
        trial = study.ask()
        flat = space.sample(trial)
        method, params = params_from_flat(flat)
        seen_methods.add(method)
        if method == "dense":
            assert params == {}
        else:
            seen_criteria.add(params["criterion"])
            assert ("c_fc" in params) == (params["criterion"] == "std")
            assert ("sparsity" in params) == (params["criterion"] == "global")
            assert isinstance(params["rounds"], int) and 1 <= params["rounds"] <= 4
            assert 0.01 <= params["retrain_lr_factor"] <= 0.3
            assert params["retrain_epochs"] == 1  # fixed values reach the trial
            assert "magnitude.retrain_epochs" not in trial.params  # but are not searched
        study.tell(trial, 0.0)
    assert seen_methods == {"dense", "magnitude"} and seen_criteria == {"std", "global"}


def test_methods_restriction_and_fragments(tmp_path):
    (tmp_path / "frag.yaml").write_text("rounds: 3\n")
    path = write(tmp_path, "methods:\n  dense: {}\n  magnitude: frag.yaml\n")
    space = load_space(path, methods=["magnitude"])
    assert space.method_names == ["magnitude"] and not space.is_conditional
    assert space.methods["magnitude"]["rounds"].value == 3
    trial = optuna.create_study().ask()
    assert space.sample(trial) == {"method": "magnitude", "magnitude.rounds": 3}


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "methods:\n  magnitude:\n    c_fc: {low: 0, high: 2}\n",
            "methods.magnitude.c_fc.low: Input should be greater than 0",
        ),
        (
            "methods:\n  magnitude:\n    sparsity: {low: 0.5, high: 1.5}\n",
            "methods.magnitude.sparsity.high",
        ),
        (
            "methods:\n  magnitude:\n    criterion: {choices: [std, l1]}\n",
            "methods.magnitude.criterion.choices",
        ),
        (
            "methods:\n  magnitude:\n    c_fc: {low: 0.5, high: 2, when: {criterion: std}}\n",
            "`when` refers to 'criterion'",
        ),
        ("methods:\n  magnitude:\n    c_fc: {low: 0.5}\n", "both `low` and `high`"),
        ("methods:\n  magnitude:\n    c_fc: {low: 0.0, high: 1.0, log: true}\n", "log range"),
        ("train: {lr: -1}\nmethods:\n  dense: {}\n", "train.lr"),
        ("train: {speed: 2}\nmethods:\n  dense: {}\n", "train.speed: unknown key"),
        ("methods: {}\n", "at least one method"),
        ("methods: some\n", "at least one method"),
        ("methods: all\noverrides: {nope: {}}\n", "overrides.nope: not among the space's methods"),
        ("methods: {dense: {}}\noverrides: [dense]\n", "overrides: expected a mapping"),
        ("- a\n- b\n", "needs a `methods:` mapping"),
    ],
)
def test_invalid_spaces_name_the_field(tmp_path, text, message):
    with pytest.raises(ValueError) as error:
        load_space(write(tmp_path, text))
    assert message in str(error.value)
    assert "space.yaml" in str(error.value)
    assert "\n" not in str(error.value)


def test_the_spaces_sit_at_the_top_level_of_the_checkout():
    # An installed wheel holds them in the package instead (tests/test_packaging.py).
    assert SPACES_DIR == Path(__file__).resolve().parents[2] / "search_spaces"
    assert (SPACES_DIR / "methods" / "magnitude.yaml").is_file()


# Every space file shipped (paper_points.yaml holds --enqueue points, not a space).
SHIPPED_SPACES = sorted(p.stem for p in SPACES_DIR.glob("*.yaml") if p.stem != "paper_points")


@pytest.mark.parametrize("model", SHIPPED_SPACES)
def test_every_space_written_as_one_file_loads_back_the_same(tmp_path, model):
    path = default_space_path(model)
    resolved, origins = resolve_space_file(path)
    notes = {method: f"from {origins[method]}" for method in resolved["methods"]}
    text = space_yaml(["one file", ""], resolved, notes)
    assert text.startswith("# one file\n#\n")
    single = write(tmp_path, text, name="single.yaml")
    assert load_space(single).model_dump(exclude={"source"}) == load_space(path).model_dump(
        exclude={"source"}
    )


def test_a_fragment_beside_a_space_is_its_origin(tmp_path):
    (tmp_path / "frag.yaml").write_text("rounds: 3\n")
    path = write(tmp_path, "methods:\n  dense: {}\n  magnitude: frag.yaml\n")
    resolved, origins = resolve_space_file(path)
    assert resolved["methods"] == {"dense": {}, "magnitude": {"rounds": 3}}
    assert origins == {"dense": str(path), "magnitude": str(tmp_path / "frag.yaml")}
