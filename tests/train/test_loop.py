"""The training loop: deterministic, NaN-aware, schedules as configured."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsetune.config import DataConfig, SyntheticOptions, TrainConfig
from sparsetune.data import load_splits
from sparsetune.data.tensors import TensorSet
from sparsetune.models import build_model
from sparsetune.pruning.base import TrainingHooks
from sparsetune.train.loop import TrainingDiverged, evaluate, fit, make_optimizer, make_scheduler

DATA = DataConfig(
    name="synthetic",
    val_size=200,
    synthetic=SyntheticOptions(train_size=700, test_size=100, noise=2.0),
)


def trained(seed: int, **recipe) -> nn.Module:
    splits = load_splits(DATA)
    torch.manual_seed(seed)
    model = build_model("lenet300", splits.input_shape, splits.num_classes)
    fit(model, splits.train, TrainConfig(epochs=2, **recipe), seed=seed)
    return model


def test_fit_is_deterministic_under_a_seed_and_learns():
    first, second = trained(3), trained(3)
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    other = trained(4)
    assert not torch.equal(first.fc1.weight, other.fc1.weight)
    accuracy, _ = evaluate(first, load_splits(DATA).val)
    assert accuracy > 0.5  # ten classes: chance is 0.1


def test_a_nan_loss_raises_training_diverged_naming_the_epoch():
    class NanPenalty(TrainingHooks):
        def penalty(self, model):
            return torch.tensor(float("nan"))

    splits = load_splits(DATA)
    model = build_model("lenet300", splits.input_shape, splits.num_classes)
    with pytest.raises(TrainingDiverged, match="nan in epoch 1"):
        fit(model, splits.train, TrainConfig(epochs=2), seed=0, hooks=NanPenalty())


def test_hooks_are_called_in_order_each_step():
    calls = []

    class Recorder(TrainingHooks):
        def penalty(self, model):
            calls.append("penalty")

        def after_backward(self, model):
            calls.append("after_backward")
            assert model.fc1.weight.grad is not None

        def on_step_end(self, model):
            calls.append("on_step_end")

    splits = load_splits(DATA)
    model = build_model("lenet300", splits.input_shape, splits.num_classes)
    fit(
        model,
        TensorSet(splits.train.x[:256], splits.train.y[:256]),
        TrainConfig(epochs=1, batch_size=128),
        seed=0,
        hooks=Recorder(),
    )
    assert calls == ["penalty", "after_backward", "on_step_end"] * 2


def test_evaluate_matches_a_hand_count():
    class Fixed(nn.Module):
        def forward(self, x):
            return x  # logits are the inputs

    data = TensorSet(
        torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 5.0]]), torch.tensor([0, 1, 1, 1])
    )
    accuracy, loss = evaluate(Fixed(), data, batch_size=3)
    assert accuracy == 0.75
    expected = nn.functional.cross_entropy(data.x, data.y).item()
    assert loss == pytest.approx(expected)


@pytest.mark.parametrize(
    "schedule, expected",
    [
        ("constant", [0.1, 0.1, 0.1, 0.1]),
        ("step", [0.1, 0.1, 0.01, 0.01]),
        # cosine annealing over 4 epochs: 0.1 * (1 + cos(pi * t / 4)) / 2
        ("cosine", [0.1, 0.0853553, 0.05, 0.0146447]),
    ],
)
def test_learning_rate_schedules(schedule, expected):
    recipe = TrainConfig(
        lr=0.1, schedule=schedule, step_epochs=2, step_gamma=0.1, epochs=4, optimizer="adam"
    )
    optimizer = make_optimizer(nn.Linear(2, 2), recipe)
    assert isinstance(optimizer, torch.optim.Adam)
    scheduler = make_scheduler(optimizer, recipe)
    rates = []
    for _ in range(4):
        rates.append(optimizer.param_groups[0]["lr"])
        if scheduler is not None:
            optimizer.step()
            scheduler.step()
    assert rates == pytest.approx(expected, abs=1e-6)
