"""The training loop: deterministic, NaN-aware, schedules as configured, hooks in order."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsetune.config import TrainConfig
from sparsetune.data.tensors import TensorSet
from sparsetune.models import build_model
from sparsetune.train.hooks import TrainingHooks
from sparsetune.train.loop import (
    EpochDone,
    TrainingDiverged,
    evaluate,
    fit,
    make_optimizer,
    make_scheduler,
)


def lenet300(splits, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("lenet300", splits.input_shape, splits.num_classes)


def test_fit_is_deterministic_under_a_seed_and_learns(small_splits):
    recipe = TrainConfig(epochs=2)
    runs = []
    for _ in range(2):
        model = lenet300(small_splits, seed=3)
        loss = fit(model, small_splits.train, recipe, seed=3)
        runs.append((model, loss))
    (first, first_loss), (second, second_loss) = runs
    assert first_loss == second_loss and math.isfinite(first_loss)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    # the batch order is the seed's too: same initial weights, another loader seed, other result
    other = lenet300(small_splits, seed=3)
    fit(other, small_splits.train, recipe, seed=4)
    assert not torch.equal(first.fc1.weight, other.fc1.weight)
    accuracy, loss = evaluate(first, small_splits.val)
    assert accuracy > 0.5  # ten classes: chance is 0.1
    assert 0 < loss < math.log(10)  # better than a uniform guess


def test_fit_tells_on_epoch_of_each_epoch_in_order(small_splits):
    told: list[EpochDone] = []
    loss = fit(
        lenet300(small_splits, seed=0),
        small_splits.train,
        TrainConfig(epochs=3),
        seed=0,
        on_epoch=told.append,
    )
    seen = [done for done in told if done.finished]  # within an epoch only on a slow machine
    assert [(done.epoch, done.epochs) for done in seen] == [(1, 3), (2, 3), (3, 3)]
    assert seen[-1].mean_loss == loss  # the epoch's mean loss, the one fit returns
    assert seen[0].mean_loss > seen[-1].mean_loss  # it learns: the first epoch's loss is higher
    assert 0 < seen[0].seconds <= seen[1].seconds <= seen[2].seconds  # since the phase started


def test_fit_tells_how_far_an_epoch_has_got_without_reading_the_loss(small_splits, monkeypatch):
    """Within an epoch, news at most every STEP_NEWS_SECONDS (here: every step), with the share
    of the phase done and an ETA from the pace so far; the loss only once the epoch is over."""
    monkeypatch.setattr("sparsetune.train.loop.STEP_NEWS_SECONDS", 0.0)
    told: list[EpochDone] = []
    recipe = TrainConfig(epochs=2, batch_size=128)
    fit(lenet300(small_splits, seed=0), small_splits.train, recipe, seed=0, on_epoch=told.append)
    steps = math.ceil(len(small_splits.train) / 128)
    assert [(d.epoch, d.step) for d in told] == [
        (epoch, step) for epoch in (1, 2) for step in range(1, steps + 1)
    ]
    assert all(d.steps == steps for d in told)
    within = [d for d in told if not d.finished]
    assert within and all(math.isnan(d.mean_loss) for d in within)
    assert all(math.isfinite(d.mean_loss) for d in told if d.finished)
    fractions = [d.fraction for d in told]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert all(d.eta_seconds is not None and d.eta_seconds >= 0 for d in told)
    assert "step 1/" in within[0].describe() and "ETA" in within[0].describe()
    assert "ETA" not in told[-1].describe()  # the phase is over


def test_fit_ignores_the_global_random_state(small_splits):
    """Batch order depends on `seed` alone, not on what else drew from torch's global RNG."""
    recipe = TrainConfig(epochs=1)
    first = lenet300(small_splits, seed=0)
    fit(first, small_splits.train, recipe, seed=5)
    second = lenet300(small_splits, seed=0)
    torch.rand(1000)  # disturb the global generator
    fit(second, small_splits.train, recipe, seed=5)
    assert torch.equal(first.fc1.weight, second.fc1.weight)


class NanAfter(TrainingHooks):
    """A penalty that turns the loss into `value` from step `start` (0-based) on."""

    def __init__(self, start: int, value: float = math.nan):
        self.start, self.value, self.steps = start, value, 0

    def penalty(self, model):
        self.steps += 1
        return torch.tensor(self.value if self.steps > self.start else 0.0)


@pytest.mark.parametrize(
    "start, value, message",
    [
        (0, math.nan, "training loss became nan in epoch 1"),
        (8, math.nan, "training loss became nan in epoch 2"),  # 1,000 examples / 128: 8 steps
        (17, math.inf, "training loss became inf in epoch 3"),
    ],
)
def test_a_non_finite_loss_raises_training_diverged_naming_the_epoch(
    small_splits, start, value, message
):
    hooks = NanAfter(start, value)
    model = lenet300(small_splits, seed=0)
    with pytest.raises(TrainingDiverged, match=message):
        fit(model, small_splits.train, TrainConfig(epochs=4), seed=0, hooks=hooks)
    assert hooks.steps == 8 * int(message[-1])  # raised at the end of that epoch, not later


def test_hooks_are_called_in_order_each_step(small_splits):
    calls = []

    class Recorder(TrainingHooks):
        def penalty(self, model):
            calls.append("penalty")
            return model.fc1.weight.square().sum() * 0  # a tensor: it joins the loss

        def after_backward(self, model):
            calls.append("after_backward")
            assert model.fc1.weight.grad is not None

        def on_step_end(self, model):
            calls.append("on_step_end")

    model = lenet300(small_splits, seed=0)
    data = TensorSet(small_splits.train.x[:300], small_splits.train.y[:300])
    fit(model, data, TrainConfig(epochs=2, batch_size=128), seed=0, hooks=Recorder())
    assert calls == ["penalty", "after_backward", "on_step_end"] * 3 * 2  # 128 + 128 + 44


def test_the_penalty_joins_the_loss(small_splits):
    class Constant(TrainingHooks):
        def penalty(self, model):
            return torch.tensor(5.0)

    data = TensorSet(small_splits.train.x[:256], small_splits.train.y[:256])
    recipe = TrainConfig(epochs=1, batch_size=128)
    plain = fit(lenet300(small_splits, seed=0), data, recipe, seed=0)
    penalised = fit(lenet300(small_splits, seed=0), data, recipe, seed=0, hooks=Constant())
    assert penalised == pytest.approx(plain + 5.0)


class Fixed(nn.Module):
    """Logits are the inputs."""

    def forward(self, x):
        return x


def test_evaluate_matches_a_hand_count():
    data = TensorSet(
        torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 5.0], [1.0, 4.0]]),
        torch.tensor([0, 1, 1, 1, 0]),
    )
    # argmax: 0, 1, 0, 1, 1 against 0, 1, 1, 1, 0: right 3 of 5
    for batch_size in (1, 2, 3, 5, 1000):
        accuracy, loss = evaluate(Fixed(), data, batch_size=batch_size)
        assert accuracy == 0.6
        assert loss == pytest.approx(F.cross_entropy(data.x, data.y).item())
    assert evaluate(Fixed(), TensorSet(data.x[:2], data.y[:2])) == (
        1.0,
        pytest.approx(0.2201, abs=1e-4),
    )


def test_evaluate_returns_an_accuracy_in_0_1_and_restores_the_mode(small_splits):
    model = lenet300(small_splits, seed=0)
    model.train()
    accuracy, loss = evaluate(model, small_splits.val)
    assert 0.0 <= accuracy <= 1.0 and loss > 0
    assert accuracy * len(small_splits.val) == round(accuracy * len(small_splits.val))
    assert model.training
    model.eval()
    evaluate(model, small_splits.val)
    assert not model.training


def test_evaluate_runs_in_eval_mode():
    class ModeOut(nn.Module):
        def forward(self, x):  # predicts class 1 in eval mode, class 0 in train mode
            return torch.tensor([[0.0, 1.0]] if not self.training else [[1.0, 0.0]]).expand(
                len(x), 2
            )

    data = TensorSet(torch.zeros(4, 2), torch.ones(4, dtype=torch.long))
    assert evaluate(ModeOut().train(), data)[0] == 1.0


@pytest.mark.parametrize(
    "schedule, expected",
    [
        ("constant", [0.1, 0.1, 0.1, 0.1]),
        ("step", [0.1, 0.1, 0.01, 0.01]),  # step_epochs 2, gamma 0.1
        # cosine annealing over the 4 epochs: 0.1 * (1 + cos(pi * t / 4)) / 2
        ("cosine", [0.1, 0.0853553, 0.05, 0.0146447]),
    ],
)
def test_learning_rate_schedules(schedule, expected):
    recipe = TrainConfig(lr=0.1, schedule=schedule, step_epochs=2, step_gamma=0.1, epochs=4)
    optimizer = make_optimizer(nn.Linear(2, 2), recipe)
    scheduler = make_scheduler(optimizer, recipe)
    assert (scheduler is None) == (schedule == "constant")
    rates = []
    for _ in range(4):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    assert rates == pytest.approx(expected, abs=1e-7)


def test_fit_steps_the_schedule_once_per_epoch(small_splits):
    """A step schedule with gamma 1e-9 after every epoch all but freezes the weights after one."""
    data = TensorSet(small_splits.train.x[:256], small_splits.train.y[:256])
    frozen = TrainConfig(
        epochs=3, schedule="step", step_epochs=1, step_gamma=1e-9, momentum=0, weight_decay=0
    )
    one_epoch = frozen.model_copy(update={"epochs": 1})
    a, b = lenet300(small_splits, seed=0), lenet300(small_splits, seed=0)
    fit(a, data, frozen, seed=0)
    fit(b, data, one_epoch, seed=0)
    # epochs 2 and 3 ran at lr 5e-11 and 5e-20: the weights barely move past epoch 1
    torch.testing.assert_close(a.fc1.weight, b.fc1.weight, rtol=0, atol=1e-7)
    assert not torch.equal(a.fc1.weight, b.fc1.weight)  # but they did run


@pytest.mark.parametrize("name, kind", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam)])
def test_the_optimizer_follows_the_recipe(name, kind):
    recipe = TrainConfig(optimizer=name, lr=0.3, weight_decay=1e-3, momentum=0.5)
    layer = nn.Linear(2, 2)
    layer.bias.requires_grad_(False)
    optimizer = make_optimizer(layer, recipe)
    assert isinstance(optimizer, kind)
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.3 and group["weight_decay"] == 1e-3
    assert [p for p in group["params"]] == [layer.weight]  # frozen parameters are left out
    if name == "sgd":
        assert group["momentum"] == 0.5
