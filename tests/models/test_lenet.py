"""The LeNets of the papers, by name."""

from __future__ import annotations

import pytest
import torch

from sparsetune.models import MODELS, build_model


@pytest.mark.parametrize("name, weights", [("lenet300", 266_200), ("lenet5", 430_500)])
def test_weight_counts_match_the_papers(name, weights):
    model = build_model(name, (1, 28, 28), 10)
    count = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight"))
    assert count == weights
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


def test_lenet5_adapts_to_other_image_shapes():
    model = build_model("lenet5", (3, 32, 32), 100)
    assert model.fc1.in_features == 50 * 5 * 5
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 100)
    with pytest.raises(ValueError, match="lenet5 needs images"):
        build_model("lenet5", (784,), 10)


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown model 'lenet7'; choose one of: lenet300, lenet5"):
        MODELS["lenet7"]
