"""A user's model by import path, "package.module:factory", and the one-line errors around it."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from sparsetune.config import DataConfig, TrialConfig
from sparsetune.models import build_model, check_model_name
from sparsetune.pruning.metrics import architecture_string
from sparsetune.validation import describe_validation_error

USER_MODULE = """
    import torch
    from torch import nn

    NOT_A_FACTORY = 3

    class Net(nn.Module):
        output_layer = "head"

        def __init__(self, input_shape, num_classes):
            super().__init__()
            self.body = nn.Linear(input_shape[0] * input_shape[1] * input_shape[2], 7)
            self.head = nn.Linear(7, num_classes)

        def forward(self, x):
            return self.head(torch.relu(self.body(x.flatten(1))))

    def tiny(input_shape, num_classes, hidden=5):
        return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[-1] ** 2, num_classes))

    def positional_only(shape, classes):
        return nn.Linear(shape, classes)

    def not_a_module(input_shape, num_classes):
        return "a model"
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module `user_models_<n>` in tmp_path, importable for this test only."""
    name = f"user_models_{abs(hash(str(tmp_path)))}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_MODULE))
    (tmp_path / "broken_user_models.py").write_text("1 / 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)
    sys.modules.pop("broken_user_models", None)


def test_a_function_factory_builds_and_trains(user_module):
    model = build_model(f"{user_module}:tiny", (1, 6, 6), 4)
    assert isinstance(model, nn.Sequential) and model(torch.zeros(3, 1, 6, 6)).shape == (3, 4)
    # A model without `architecture_units` gets the generic string: output units per layer.
    assert architecture_string(model) == "4"


def test_a_class_factory_with_its_own_attributes(user_module):
    model = build_model(f"{user_module}:Net", (3, 4, 4), 5)
    assert model.output_layer == "head" and model(torch.zeros(2, 3, 4, 4)).shape == (2, 5)


def test_the_config_accepts_an_import_path(user_module):
    config = TrialConfig(
        model=f"{user_module}:Net", data=DataConfig(name="synthetic"), method="dense"
    )
    assert config.model == f"{user_module}:Net"


def one_line_error(name: str) -> str:
    with pytest.raises(ValueError) as error:
        check_model_name(name)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_unimportable_module_names_the_fix():
    message = one_line_error("no_such_package_for_sparsetune.models:make")
    assert "cannot import 'no_such_package_for_sparsetune.models'" in message
    assert "PYTHONPATH" in message


def test_missing_attribute(user_module):
    message = one_line_error(f"{user_module}:make_net")
    assert f"{user_module!r} has no attribute 'make_net'" in message


def test_malformed_path():
    assert "must look like 'package.module:attribute'" in one_line_error("models:")


def test_not_callable(user_module):
    message = one_line_error(f"{user_module}:NOT_A_FACTORY")
    assert "is not callable (int)" in message and "building a torch.nn.Module" in message


def test_wrong_signature(user_module):
    message = one_line_error(f"{user_module}:positional_only")
    assert "must be callable with keywords only, those it takes of input_shape and" in message
    assert "(shape, classes)" in message


def test_module_that_fails_while_importing(user_module):
    message = one_line_error("broken_user_models:make")
    assert "importing 'broken_user_models' raised ZeroDivisionError: division by zero" in message


def test_factory_returning_something_else(user_module):
    with pytest.raises(ValueError, match="returned a str, not a torch.nn.Module"):
        build_model(f"{user_module}:not_a_module", (1, 4, 4), 2)


def test_unknown_name_mentions_import_paths():
    message = one_line_error("resnet21")
    assert message.startswith("unknown model 'resnet21'; choose one of: lenet300, lenet5")
    assert message.endswith("or a factory 'package.module:function' importable here")


def test_the_config_error_is_one_line_naming_the_field():
    with pytest.raises(ValidationError) as error:
        TrialConfig(model="nowhere_pkg:make", data=DataConfig(name="synthetic"), method="dense")
    line = describe_validation_error(error.value)
    assert line.startswith("model: cannot import 'nowhere_pkg'") and "\n" not in line
