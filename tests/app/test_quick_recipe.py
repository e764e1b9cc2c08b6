"""`--epochs N` is a quick run of the same recipe: dense training and every `*epochs` knob of the
method scale by the same factor, whether the recipe file lists the knob or the method's Config
default supplies it (user models have no recipe file at all)."""

from __future__ import annotations

import pytest

from sparsetune.app.options import PruneOptions
from sparsetune.app.prune import trial_config
from sparsetune.pruning.l0 import L0Config
from sparsetune.pruning.sensitivity import SensitivityConfig


def _params(model: str, method: str, epochs: int | None) -> tuple[dict, int]:
    """The trial's knobs in full (TrialConfig leaves out those at their defaults) and its dense
    epochs."""
    config, _ = trial_config(PruneOptions(model=model, method=method, epochs=epochs))
    return config.method_config().model_dump(), config.train.epochs


def test_a_model_without_a_recipe_scales_the_method_defaults():
    full, dense_epochs = _params("torchvision:resnet18", "l0", None)
    quick, quick_dense = _params("torchvision:resnet18", "l0", 2)
    assert full["epochs"] == L0Config().epochs
    assert quick_dense == 2
    assert quick["epochs"] == max(1, -(-L0Config().epochs * 2 // dense_epochs))
    assert quick["epochs"] < L0Config().epochs


def test_a_recipe_value_wins_over_the_default_and_is_scaled():
    full, dense_epochs = _params("lenet300", "sensitivity", None)
    quick, _ = _params("lenet300", "sensitivity", 1)
    assert full["epochs"] != SensitivityConfig().epochs  # the recipe lists its own value
    assert quick["epochs"] == max(1, -(-full["epochs"] // dense_epochs))


def test_set_overrides_the_scaled_value():
    quick, _ = _params("torchvision:resnet18", "l0", 2)
    config, _ = trial_config(
        PruneOptions(model="torchvision:resnet18", method="l0", epochs=2, params={"epochs": 7})
    )
    assert config.params["epochs"] == 7 != quick["epochs"]


@pytest.mark.parametrize("method", ["magnitude", "lottery", "sensitivity", "l0"])
def test_no_scaled_knob_drops_to_zero(method):
    quick, _ = _params("lenet5", method, 1)
    for key, value in quick.items():
        if key.endswith("epochs") and isinstance(value, int):
            assert value >= 1, (key, value)
