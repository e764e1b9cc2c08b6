"""The LeNets of the papers, by name (papers.md, "Shared models")."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from sparsetune.config import DataConfig, TrialConfig
from sparsetune.models import MODELS, build_model
from sparsetune.pruning.masking import prunable_parameters


@pytest.mark.parametrize(
    "name, weights, with_biases",
    [("lenet300", 266_200, 266_610), ("lenet5", 430_500, 431_080)],
)
def test_weight_counts_match_the_papers(name, weights, with_biases):
    model = build_model(name, (1, 28, 28), 10)
    prunable = sum(model.get_parameter(p).numel() for p in prunable_parameters(model))
    assert prunable == weights
    assert sum(p.numel() for p in model.parameters()) == with_biases  # "267K" and "431K"


def test_layer_shapes():
    lenet300 = build_model("lenet300", (1, 28, 28), 10)
    assert [tuple(lenet300.get_parameter(p).shape) for p in prunable_parameters(lenet300)] == [
        (300, 784),
        (100, 300),
        (10, 100),
    ]
    lenet5 = build_model("lenet5", (1, 28, 28), 10)
    assert [tuple(lenet5.get_parameter(p).shape) for p in prunable_parameters(lenet5)] == [
        (20, 1, 5, 5),
        (50, 20, 5, 5),
        (500, 800),
        (10, 500),
    ]


@pytest.mark.parametrize("name", ["lenet300", "lenet5"])
@pytest.mark.parametrize("batch", [1, 5])
def test_output_shapes(name, batch):
    model = build_model(name, (1, 28, 28), 10)
    assert model(torch.zeros(batch, 1, 28, 28)).shape == (batch, 10)


def test_the_output_layer_is_named_and_is_the_last_layer():
    for name, expected in [("lenet300", "fc3"), ("lenet5", "fc2")]:
        model = build_model(name, (1, 28, 28), 7)
        assert model.output_layer == expected
        assert prunable_parameters(model)[-1] == f"{expected}.weight"
        assert model.get_submodule(expected).out_features == 7


def test_models_adapt_to_other_shapes():
    lenet5 = build_model("lenet5", (3, 32, 32), 100)
    assert lenet5.fc1.in_features == 50 * 5 * 5
    assert lenet5(torch.zeros(2, 3, 32, 32)).shape == (2, 100)
    lenet300 = build_model("lenet300", (3, 32, 32), 100)
    assert lenet300.fc1.in_features == 3 * 32 * 32
    assert lenet300(torch.zeros(2, 3, 32, 32)).shape == (2, 100)


@pytest.mark.parametrize("shape", [(784,), (1, 12, 12), (1, 28)])
def test_lenet5_rejects_inputs_it_cannot_convolve(shape):
    with pytest.raises(ValueError, match="lenet5 needs images"):
        build_model("lenet5", shape, 10)


def test_unknown_model_lists_the_known_ones():
    expected = "unknown model 'lenet7'; choose one of: lenet300, lenet5"
    with pytest.raises(ValueError, match=expected):
        build_model("lenet7", (1, 28, 28), 10)
    with pytest.raises(ValueError, match=expected):
        MODELS["lenet7"]
    with pytest.raises(ValidationError, match="lenet300, lenet5"):
        TrialConfig(model="lenet7", data=DataConfig(name="synthetic"), method="dense")
