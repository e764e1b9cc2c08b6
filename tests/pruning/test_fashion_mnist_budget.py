"""Every registered method, a small budget, real Fashion-MNIST (Debian's `dataset-fashion-mnist`):
each reaches its sparsity with accuracy well above chance (0.1). Budgets are laptop-sized, so the
bar is "learns and prunes", not the papers' numbers (scripts/paper_check.py compares those). A
method without an entry in BUDGETS (a new one, a plugin's) runs with its Config defaults and
must only learn; give it an entry to make it prune on a budget."""

from __future__ import annotations

import pytest

from sparsetune.catalog import METHODS
from sparsetune.config import DataConfig, TrainConfig, TrialConfig
from sparsetune.trial import run_trial

pytestmark = pytest.mark.slow

DENSE = TrainConfig(epochs=2, lr=0.05, batch_size=128)
# method -> (params, the overall sparsity the last round must reach)
BUDGETS: dict[str, tuple[dict, float]] = {
    "dense": ({}, 0.0),
    "magnitude": ({"criterion": "global", "sparsity": 0.9, "rounds": 2, "retrain_epochs": 1}, 0.9),
    "lottery": (
        {"prune_fraction": 0.5, "rounds": 3, "output_rate": "same", "train_epochs": 1},
        0.875,
    ),
    "l0": ({"granularity": "weight", "l0_lambda": 0.5, "gate_lr_factor": 100, "epochs": 3}, 0.5),
    "sensitivity": ({"lmbda": 1e-2, "threshold": 2e-2, "epochs": 2, "lr": 0.05}, 0.5),
    "snip": ({"sparsity": 0.9}, 0.9),
    "grasp": ({"sparsity": 0.9}, 0.9),
    # A random mask keeps small weights too: at 80-90% LeNet-300 needs more than these 48 steps.
    "random": ({"sparsity": 0.7}, 0.7),
}
DEFAULT_BUDGET: tuple[dict, float] = ({}, 0.0)


def test_every_budget_names_a_registered_method():
    assert set(BUDGETS) <= set(METHODS.names())


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("fashion-mnist")
    return DataConfig(name="fashion-mnist", data_dir=data_dir, subset=3000, val_size=1000)


@pytest.mark.parametrize("method", METHODS.names())
def test_method_prunes_fashion_mnist_and_learns(method, fashion, tmp_path_factory):
    params, sparsity = BUDGETS.get(method, DEFAULT_BUDGET)
    config = TrialConfig(
        model="lenet300", data=fashion, train=DENSE, method=method, params=params, device="cpu"
    )
    # One cache for the module: all methods share the dense stage, as in a sweep.
    cache = tmp_path_factory.getbasetemp() / "budget-cache"
    final = run_trial(config, cache_dir=cache)[-1]
    reached = 1 - final.remaining_weights / final.total_weights
    assert reached >= sparsity - 1e-3, (method, reached)
    assert final.val_acc > 0.5 and final.test_acc > 0.5, (method, final.val_acc, final.test_acc)
