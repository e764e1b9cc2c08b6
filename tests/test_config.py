"""Config validated at the edge: defaults that are real paths, and method parameters reported
under their own name with the method's keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from sparsetune.config import DataConfig, TrialConfig
from sparsetune.search.options import SweepConfig
from sparsetune.validation import describe_validation_error


def test_default_folders_are_expanded_to_the_home_directory():
    # Defaults skip pydantic's validators, so an unexpanded "~" would create ./~ in the cwd.
    sweep = SweepConfig(model="lenet5", dataset="synthetic")
    for folder in (sweep.data_dir, sweep.cache_dir, sweep.data_config().data_dir):
        assert "~" not in folder.parts
        assert folder.is_absolute()
        assert folder.is_relative_to(Path.home())


def test_a_user_path_given_with_a_tilde_is_expanded():
    sweep = SweepConfig(model="lenet5", dataset="synthetic", data_dir="~/elsewhere")
    assert sweep.data_dir == Path.home() / "elsewhere"


def _trial_error(params: dict) -> str:
    with pytest.raises(ValidationError) as caught:
        TrialConfig(model="lenet5", data=DataConfig(name="synthetic"), params=params)
    return describe_validation_error(caught.value)


def test_an_unknown_method_parameter_names_it_and_lists_the_method_keys():
    message = _trial_error({"nope": 1})
    assert message.startswith("method magnitude: params.nope: unknown key; allowed keys: ")
    assert "c_conv" in message and "retrain_lr_factor" in message
    assert "seed" not in message  # TrialConfig's own keys are not the method's


def test_an_out_of_range_method_parameter_names_it_and_the_value():
    message = _trial_error({"c_conv": -1})
    assert message == "method magnitude: params.c_conv: Input should be greater than 0 (got -1)"


def test_the_memory_budget_reaches_the_data_and_not_the_identity():
    from sparsetune.app.options import PruneOptions
    from sparsetune.app.prune import trial_config
    from sparsetune.search.options import identity_fields

    sweep = SweepConfig(model="lenet5", dataset="synthetic", memory_budget_gb=0.5)
    assert sweep.data_config().memory_budget_gb == 0.5
    assert "memory_budget_gb" not in identity_fields(SweepConfig)
    options = PruneOptions(model="lenet5", dataset="synthetic", memory_budget_gb=0.25)
    config, _ = trial_config(options)
    assert config.data.memory_budget_gb == 0.25


def test_default_folders_of_path_and_import_names_do_not_nest(tmp_path):
    from sparsetune.app.options import PruneOptions

    data = tmp_path / "images"
    sweep = SweepConfig(model="torchvision:resnet18", dataset=f"imagefolder:{data}/")
    assert sweep.experiment_name == "torchvision-resnet18-imagefolder-images-pareto"
    assert sweep.sweep_dir == (Path("sparsetune-runs") / sweep.experiment_name).resolve()
    assert SweepConfig(model="lenet5", dataset="mnist").experiment_name == "lenet5-mnist-pareto"
    prune = PruneOptions(model="torchvision:resnet18", dataset="synthetic", method="snip")
    assert prune.folder.name == "prune-torchvision-resnet18-snip"


def test_a_bound_that_reads_like_the_input_still_names_the_input():
    # "greater than 0" holds the characters of the input 0; the value is named all the same.
    message = _trial_error({"c_conv": 0})
    assert message == "method magnitude: params.c_conv: Input should be greater than 0 (got 0)"
