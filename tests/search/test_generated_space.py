"""The space generated for a model without one: built from its layers, valid, and sampled."""

from __future__ import annotations

import sys
from dataclasses import replace

import optuna
import pytest
from user_model_helpers import USER_MODULE, write_user_models

from sparsetune.app.checks import checked_space
from sparsetune.app.errors import BadInput
from sparsetune.catalog import METHODS
from sparsetune.config import DataConfig, SyntheticOptions, TrainConfig, TrialConfig
from sparsetune.search.generated_space import generate_space
from sparsetune.search.options import SweepConfig
from sparsetune.search.space import (
    default_space_path,
    load_space,
    method_fragment,
    params_from_flat,
)

SHAPE, CLASSES = (1, 8, 8), 3


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """The user models' module, importable for this test only; its name."""
    monkeypatch.syspath_prepend(str(write_user_models(tmp_path)))
    yield USER_MODULE
    sys.modules.pop(USER_MODULE, None)


def with_fragment() -> list[str]:
    return [method for method in METHODS.in_order() if method_fragment(method) is not None]


def test_an_mlp_gets_every_method_without_the_conv_knobs(user_module):
    generated = generate_space(f"{user_module}:mlp", SHAPE, CLASSES)
    space = generated.space
    assert space.method_names == with_fragment() and not generated.left_out
    assert generated.layers.names == ("1", "3")
    magnitude = space.methods["magnitude"]
    assert "c_fc" in magnitude and "c_conv" not in magnitude
    assert "fc_lambda_scale" in space.methods["l0"]
    assert "conv_lambda_scale" not in space.methods["l0"]
    # Every other knob is the fragment's, as the built-in LeNet-300-100 space has it.
    lenet = load_space(default_space_path("lenet300"))
    assert space.methods["snip"] == lenet.methods["snip"]
    assert {k: v for k, v in lenet.methods["magnitude"].items() if k != "c_conv"} == magnitude
    # An import-path model has no recipe: TrainConfig's defaults (`--epochs` shortens them).
    assert space.train == TrainConfig()
    assert "without c_conv (no convolution)" in generated.notes["magnitude"]


def test_a_conv_only_model_loses_the_fc_knobs(user_module):
    space = generate_space(f"{user_module}:all_conv", SHAPE, CLASSES).space
    assert "c_conv" in space.methods["magnitude"] and "c_fc" not in space.methods["magnitude"]
    assert "fc_lambda_scale" not in space.methods["l0"]
    # GraSP's Xavier re-draw acts on Linear layers only: without any, the knob changes nothing.
    assert "xavier_fc_scoring" not in space.methods["grasp"]
    assert "sensitivity" in space.method_names


def test_batch_norm_leaves_sensitivity_out_and_gates_l0_by_weight(user_module):
    generated = generate_space(f"{user_module}:BatchNormNet", (3, 6, 6), CLASSES)
    assert "sensitivity" not in generated.space.method_names
    assert "BatchNorm" in generated.left_out["sensitivity"]
    assert generated.space.methods["l0"]["granularity"].value == "weight"
    assert {"c_conv", "c_fc"} <= set(generated.space.methods["magnitude"])
    assert "Left out: sensitivity" in generated.yaml()


def test_the_written_space_loads_back_the_same(user_module, tmp_path):
    for factory in ("mlp", "all_conv", "BatchNormNet"):
        generated = generate_space(f"{user_module}:{factory}", (3, 8, 8), CLASSES)
        path = tmp_path / f"{factory}.yaml"
        path.write_text(generated.yaml())
        loaded = load_space(path)
        assert loaded.model_dump(exclude={"source"}) == generated.space.model_dump(
            exclude={"source"}
        )


def test_every_sampled_trial_is_a_valid_configuration(user_module):
    model = f"{user_module}:all_conv"
    space = generate_space(model, SHAPE, CLASSES).space
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    methods = set()
    for _ in range(40):
        trial = study.ask()
        method, params = params_from_flat(space.sample(trial))
        TrialConfig(model=model, data=DataConfig(name="synthetic"), method=method, params=params)
        methods.add(method)
        study.tell(trial, 0.0)
    assert methods == set(space.method_names)


def test_methods_restrict_the_space_and_refuse_what_does_not_apply(user_module):
    space = generate_space(f"{user_module}:mlp", SHAPE, CLASSES, ["snip", "dense"]).space
    assert space.method_names == ["snip", "dense"]
    with pytest.raises(ValueError, match=r"--methods: sensitivity: BatchNorm .*--space"):
        generate_space(f"{user_module}:BatchNormNet", (3, 6, 6), CLASSES, ["sensitivity"])
    with pytest.raises(
        ValueError, match=r"--methods: snipp: not a method with a search-space fragment"
    ):
        generate_space(f"{user_module}:mlp", SHAPE, CLASSES, ["snipp"])


def test_a_model_with_nothing_to_prune_is_refused(user_module):
    with pytest.raises(ValueError, match="no Linear or Conv layer, so nothing to prune"):
        generate_space(f"{user_module}:nothing_to_prune", SHAPE, CLASSES)


def test_a_sweep_of_a_user_model_generates_its_space_and_says_so(user_module, tmp_path):
    model = f"{user_module}:mlp"
    sweep = SweepConfig(model=model, dataset="synthetic", val_size=100, out=tmp_path / "sweep")
    notes: list[str] = []
    space = checked_space(sweep, notes)
    # Built for the data's shape: the synthetic set's 1x28x28 inputs and 10 classes.
    generated = generate_space(model, SyntheticOptions().input_shape, 10)
    assert space == generated.space
    assert notes == [
        f"space: generated for {model} from its 2 prunable layers and methods "
        f"{', '.join(space.method_names)}; write it out with "
        f"`sparsetune space --model {model} --dataset synthetic > space.yaml`"
    ]
    assert not (tmp_path / "sweep").exists()
    # No command line names a Python object: no command to copy for one.
    for note in (
        generated.note("python-data-0123456789ab"),
        replace(generated, model="python-Net-0123456789ab").note("synthetic"),
    ):
        assert note.endswith("; to choose the space yourself, pass space= a space file"), note
        assert "sparsetune space" not in note


def test_a_sweep_of_a_model_with_nothing_to_prune_is_bad_input(user_module):
    sweep = SweepConfig(model=f"{user_module}:nothing_to_prune", dataset="synthetic", val_size=9)
    with pytest.raises(BadInput, match="nothing to prune"):
        checked_space(sweep, [])


def test_under_ray_client_data_that_is_not_here_asks_for_a_space(
    user_module, tmp_path, monkeypatch
):
    # A Ray Client sweep reads its data on the cluster; a generated space needs it here.
    monkeypatch.setenv("SPARSETUNE_OFFLINE", "1")
    sweep = SweepConfig(
        model=f"{user_module}:mlp",
        dataset="mnist",
        data_dir=tmp_path / "no-data",
        address="ray://127.0.0.1:1",
    )
    with pytest.raises(BadInput) as error:
        checked_space(sweep, [])
    message = str(error.value)
    assert message.startswith("dataset 'mnist': no files under")
    assert f"sparsetune space --model {user_module}:mlp --dataset mnist > space.yaml" in message
    assert message.endswith("and pass --space") and "\n" not in message
