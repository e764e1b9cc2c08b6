"""Sensitivity-driven regularisation's own numerics, by hand (papers.md section 3, Tartaglione et
al. 2018): S on a one-layer linear net, the bounded insensitivity, the decay, the threshold, the
tolerance stop, and a short real run."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from sparsetune.config import TrainConfig, TrialConfig
from sparsetune.pruning.masking import attach_masks
from sparsetune.pruning.plans import PruneDuringTraining, RoundInfo, rate_factor
from sparsetune.pruning.sensitivity import (
    SensitivityConfig,
    SensitivityRegularization,
    insensitivity,
    labels_from_cross_entropy_grad,
    output_sensitivity,
    per_example_sensitivity,
)
from sparsetune.search.space import SPACES_DIR, load_space
from sparsetune.train import loop
from sparsetune.trial import run_trial
from sparsetune.trial.driver import run_plan

ROUND = RoundInfo(1, 1, None)
# Four examples, three inputs: y = W x with W of shape (2 classes, 3 inputs), no bias.
X = torch.tensor([[2.0, 0.5, -1.0], [2.0, -0.5, 0.2], [0.0, 0.1, 0.2], [2.0, 0.3, 0.2]])
LABELS = torch.tensor([0, 1, 1, 0])
W = torch.tensor([[0.5, -0.2, 0.3], [-0.4, 0.01, 0.6]])


def linear(weight=W) -> tuple[nn.Linear, object]:
    layer = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer, attach_masks(layer)


def method(**params) -> SensitivityRegularization:
    return SensitivityRegularization(SensitivityConfig(**params))


# dy_k/dW_kj = x_j and dy_k/dW_ij = 0 for i != k, so with the batch-mean output
# S_kj = sum_k' |mean_n dy_nk'/dW_kj| = |mean_n x_nj| for both rows:
# mean x = (6/4, 0.4/4, -0.4/4) = (1.5, 0.1, -0.1).
UNSPECIFIC = torch.tensor([[1.5, 0.1, 0.1], [1.5, 0.1, 0.1]])
# Specific: row k gets only the examples labelled k, still divided by the batch size 4:
# class 0 (examples 0, 3): (4, 0.8, -0.8) / 4; class 1 (examples 1, 2): (2, -0.4, 0.4) / 4.
SPECIFIC = torch.tensor([[1.0, 0.2, 0.2], [0.5, 0.1, 0.1]])


def test_unspecific_sensitivity_of_a_linear_layer_is_the_mean_input():
    layer, masks = linear()
    weight = masks.stored_weight("weight")
    (s,) = output_sensitivity(layer(X), [weight])
    torch.testing.assert_close(s, UNSPECIFIC)


def test_specific_sensitivity_counts_only_each_examples_true_class():
    layer, masks = linear()
    (s,) = output_sensitivity(layer(X), [masks.stored_weight("weight")], LABELS)
    torch.testing.assert_close(s, SPECIFIC)


def test_batched_sensitivity_equals_one_backward_per_class_through_softmax_and_conv():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(12, 4)
    )
    masks = attach_masks(model)
    weights = [masks.stored_weight(name) for name in masks]
    outputs = torch.softmax(model(torch.randn(5, 1, 6, 6)), 1)
    batched = output_sensitivity(outputs, weights)
    by_class = [torch.zeros_like(w) for w in weights]
    for k in range(4):  # the definition, one output at a time
        grads = torch.autograd.grad(outputs[:, k].mean(), weights, retain_graph=True)
        for total, grad in zip(by_class, grads, strict=True):
            total += grad.abs()
    for got, expected in zip(batched, by_class, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-8)


# The paper's S, averaged per example (`estimate: per_example`): the mean of |dy_nk/dW_kj| =
# |x_nj|, so opposite signs no longer cancel. mean |x| = (6/4, 1.4/4, 1.6/4) for both rows.
UNSPECIFIC_PER_EXAMPLE = torch.tensor([[1.5, 0.35, 0.4], [1.5, 0.35, 0.4]])
# Specific: class 0 (examples 0, 3): (4, 0.8, 1.2) / 4; class 1 (examples 1, 2): (2, 0.6, 0.4) / 4.
SPECIFIC_PER_EXAMPLE = torch.tensor([[1.0, 0.2, 0.3], [0.5, 0.15, 0.1]])


def recorded_forward(model, masks, inputs):
    """A training forward of `model` with the per-example hooks on: (outputs, layers recorded)."""
    m = method(estimate="per_example", output="logits")
    m.attach(model, masks)
    outputs = model(inputs)
    return outputs, [m._layer_io[name] for name in masks]


@pytest.mark.parametrize(
    "labels, expected", [(None, UNSPECIFIC_PER_EXAMPLE), (LABELS, SPECIFIC_PER_EXAMPLE)]
)
def test_per_example_sensitivity_of_a_linear_layer_is_the_mean_absolute_input(labels, expected):
    layer, masks = linear()
    outputs, layers = recorded_forward(layer, masks, X)
    (s,) = per_example_sensitivity(outputs, layers, labels)
    torch.testing.assert_close(s, expected)


@pytest.mark.parametrize("specific", [False, True])
def test_per_example_sensitivity_equals_the_definition_through_conv_and_tanh(specific):
    """Against one backward per example and class: strided, padded and dilated convolutions,
    then two Linear layers."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.Conv2d(3, 4, 2, dilation=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16, 5),
        nn.Tanh(),
        nn.Linear(5, 4),
    )
    masks = attach_masks(model)
    inputs, labels = torch.randn(6, 2, 8, 8), torch.tensor([0, 3, 1, 1, 2, 0])
    outputs, layers = recorded_forward(model, masks, inputs)
    found = per_example_sensitivity(outputs, layers, labels if specific else None)
    weights = [masks.stored_weight(name) for name in masks]
    expected = [torch.zeros_like(w) for w in weights]
    for n in range(6):
        for k in [labels[n]] if specific else range(4):
            grads = torch.autograd.grad(outputs[n, k], weights, retain_graph=True)
            for total, grad in zip(expected, grads, strict=True):
                total += grad.abs() / 6
    for got, want in zip(found, expected, strict=True):
        assert want.abs().max() > 0.01
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_per_example_decay_uses_the_per_example_s_and_falls_back_for_grouped_conv():
    def build():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(2, 2, 3, groups=2), nn.Flatten(), nn.Linear(8, 3))
        return model, attach_masks(model)

    inputs, labels = torch.randn(5, 2, 4, 4), torch.tensor([0, 1, 2, 0, 1])
    # The expected S, on a twin without hooks: a grouped conv gets the batch-mean estimate (unfold
    # does not cover it), the Linear layer the per-example one.
    twin, twin_masks = build()
    features = twin[1](twin[0](inputs))
    outputs = twin[2](features)
    (batch_mean,) = output_sensitivity(outputs, [twin_masks.stored_weight("0.weight")])
    (per_example,) = per_example_sensitivity(outputs, [(twin[2], features, outputs)])

    model, masks = build()
    m = method(estimate="per_example", output="logits", lmbda=0.1)
    m.attach(model, masks)
    F.cross_entropy(model(inputs), labels).backward()
    torch.testing.assert_close(m._insensitivity["0.weight"], insensitivity(batch_mean))
    torch.testing.assert_close(m._insensitivity["2.weight"], insensitivity(per_example))
    assert not m._layer_io  # the recorded activations are freed once S is measured
    fc = masks.stored_weight("2.weight")
    before = fc.detach().clone()
    m.on_step_end(model)
    torch.testing.assert_close(fc.detach(), before - 0.1 * before * insensitivity(per_example))


def test_insensitivity_is_one_minus_s_bounded_at_zero():
    s = torch.tensor([0.0, 0.25, 1.0, 1.5])
    assert insensitivity(s).tolist() == [1.0, 0.75, 0.0, 0.0]


def test_a_sensitivity_scale_multiplies_s_inside_the_bound():
    s = torch.tensor([0.0, 0.0025, 0.01, 0.5])
    # max(0, 1 - 100 S): 1, 0.75, 0, 0
    torch.testing.assert_close(insensitivity(s, 100.0), torch.tensor([1.0, 0.75, 0.0, 0.0]))
    assert SensitivityConfig().sensitivity_scale == 1.0  # the paper's equation by default


def test_the_step_applies_the_sensitivity_scale():
    # The per-example S of the logits (UNSPECIFIC_PER_EXAMPLE) at scale 2: the columns with
    # S 0.35 and 0.4 are now decayed by 1 - 0.7 and 1 - 0.8, the first column not at all.
    layer, masks = linear()
    m = method(lmbda=0.1, output="logits", estimate="per_example", sensitivity_scale=2.0)
    m.attach(layer, masks)
    F.cross_entropy(layer(X), LABELS).backward()
    m.on_step_end(layer)
    expected = W - 0.1 * W * torch.tensor([[0.0, 0.3, 0.2], [0.0, 0.3, 0.2]])
    torch.testing.assert_close(masks.stored_weight("weight").detach(), expected)


def test_labels_are_read_back_from_the_cross_entropy_gradient():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 50.0, 0.0], [1.0, 1.0, 1.0]], requires_grad=True)
    targets = torch.tensor([1, 1, 2])
    F.cross_entropy(logits, targets).backward()
    # Row 1 is predicted with p = 1 in float32, so its gradient holds no negative entry.
    assert not (logits.grad[1] < 0).any()
    assert labels_from_cross_entropy_grad(logits.detach(), logits.grad).tolist() == [1, 1, 2]
    with pytest.raises(RuntimeError, match="cross-entropy"):
        labels_from_cross_entropy_grad(logits.detach(), -torch.ones(3, 3))


@pytest.mark.parametrize(
    "variant, estimate, s",
    [
        ("unspecific", "batch_mean", UNSPECIFIC),
        ("specific", "batch_mean", SPECIFIC),
        ("unspecific", "per_example", UNSPECIFIC_PER_EXAMPLE),
        ("specific", "per_example", SPECIFIC_PER_EXAMPLE),
    ],
)
def test_one_step_decays_each_weight_by_lambda_w_times_one_minus_s(variant, estimate, s):
    layer, masks = linear()
    lmbda = 0.1
    m = method(variant=variant, lmbda=lmbda, output="logits", estimate=estimate)
    m.attach(layer, masks)
    F.cross_entropy(layer(X), LABELS).backward()  # the hook measures S during this backward
    before = masks.stored_weight("weight").detach().clone()
    m.on_step_end(layer)  # no optimiser step: only the decay moves the weights
    after = masks.stored_weight("weight").detach()
    expected = W - lmbda * W * (1 - s).clamp(min=0)
    torch.testing.assert_close(after, expected)
    # S >= 1 (the first input's column: 1.5, and 1.0 for the specific class-0 row): no decay.
    assert after[0, 0] == before[0, 0]
    if variant == "unspecific":
        assert after[1, 0] == before[1, 0]
    else:  # class 1 sees S = 0.5 there: decayed by 0.1 * w * 0.5
        assert after[1, 0] == pytest.approx(-0.4 + 0.1 * 0.4 * 0.5)
    # and only once: a second call without a new backward does nothing
    m.on_step_end(layer)
    assert torch.equal(masks.stored_weight("weight"), after)


@pytest.mark.parametrize("estimate", ["per_example", "batch_mean"])
def test_softmax_output_is_the_default_and_differs_from_the_logits(estimate):
    layer, masks = linear()
    logits = layer(X)
    probabilities = torch.softmax(logits, 1)
    if estimate == "batch_mean":
        (s_softmax,) = output_sensitivity(probabilities, [masks.stored_weight("weight")])
        logits_s = UNSPECIFIC
    else:
        (s_softmax,) = per_example_sensitivity(probabilities, [(layer, X, logits)])
        logits_s = UNSPECIFIC_PER_EXAMPLE
    assert SensitivityConfig().output == "softmax"
    assert not torch.allclose(s_softmax, logits_s)
    m = method(lmbda=0.1, estimate=estimate)
    m.attach(layer, masks)
    F.cross_entropy(layer(X), LABELS).backward()
    m.on_step_end(layer)
    expected = W - 0.1 * W * (1 - s_softmax).clamp(min=0)
    torch.testing.assert_close(masks.stored_weight("weight").detach(), expected)


def test_the_paper_s_per_example_is_the_default():
    assert SensitivityConfig().estimate == "per_example"


def test_a_pruned_weight_gets_no_decay_and_no_sensitivity():
    layer, masks = linear()
    masks.update({"weight": torch.tensor([[1, 0, 1], [1, 1, 1]])}, commit=False)
    with torch.no_grad():  # a stored value under the mask: the decay must not touch it either
        masks.stored_weight("weight")[0, 1] = 5.0
    (s,) = output_sensitivity(layer(X), [masks.stored_weight("weight")])
    assert s[0, 1] == 0
    m = method(lmbda=0.5, output="logits")
    m.attach(layer, masks)
    F.cross_entropy(layer(X), LABELS).backward()
    m.on_step_end(layer)
    assert masks.stored_weight("weight")[0, 1] == 5.0


def test_evaluation_and_no_grad_forwards_measure_nothing():
    layer, masks = linear()
    m = method(lmbda=0.5)
    m.attach(layer, masks)
    layer.eval()
    F.cross_entropy(layer(X), LABELS).backward()
    layer.train()
    with torch.no_grad():
        layer(X)
    m.on_step_end(layer)
    assert torch.equal(masks.stored_weight("weight").detach(), W)


def test_threshold_prunes_exactly_below_t_and_never_revives():
    layer, masks = linear()
    m = method(threshold=0.3)
    masks.update(m.compute_masks(layer, masks, ROUND))
    # |W| = [[0.5, 0.2, 0.3], [0.4, 0.01, 0.6]]: 0.2 and 0.01 go, 0.3 (= T) stays.
    assert masks["weight"].int().tolist() == [[1, 0, 1], [1, 0, 1]]
    assert masks.stored_weight("weight")[0, 1] == 0  # committed
    with torch.no_grad():
        masks.stored_weight("weight")[0, 1] = 9.0  # a large value under a pruned position
    masks.update(method(threshold=1e-6).compute_masks(layer, masks, ROUND))
    assert masks["weight"].int().tolist() == [[1, 0, 1], [1, 0, 1]]


class FakeTrial:
    """What the PruneDuringTraining runner uses of a trial, with a scripted criterion: each round
    prunes one more weight of a 2x3 layer."""

    def __init__(self, dense_acc: float):
        self.model, self.masks = linear()
        self.seed = 0
        self.splits = SimpleNamespace(val=None)
        self.dense = SimpleNamespace(checkpoint=SimpleNamespace(metrics={"val_acc": dense_acc}))
        self.method = SimpleNamespace(compute_masks=self._prune_next, begin_round=self._begin)
        self.reported: list[tuple[int, list]] = []
        self.retrained: list[int | None] = []
        self.events: list[str] = []

    def _begin(self, info):
        self.events.append(f"begin {info.index}/{info.total}")

    def _prune_next(self, model, masks, info):
        keep = torch.ones(6)
        keep[: info.index] = 0
        return {"weight": keep.view(2, 3)}

    def retrain(self, epochs):
        self.retrained.append(epochs)
        self.events.append("retrain")
        with torch.no_grad():
            self.masks.stored_weight("weight").add_(1.0)  # training moves the survivors

    def report(self, index):
        self.reported.append((index, self.masks["weight"].int().flatten().tolist()))


def scripted_accuracy(monkeypatch, values):
    accuracies = iter(values)
    monkeypatch.setattr(loop, "evaluate", lambda model, data: (next(accuracies), 0.0))


def test_the_first_round_past_the_tolerance_stops_and_is_not_kept(monkeypatch):
    trial = FakeTrial(dense_acc=0.90)
    scripted_accuracy(monkeypatch, [0.90, 0.885, 0.87, 0.95])  # floor 0.90 - 0.02 = 0.88
    run_plan(PruneDuringTraining(rounds=4, epochs_per_round=2, tolerance=0.02), trial)
    assert trial.retrained == [2, 2, 2]  # round 3 was trained, found wanting; no round 4
    assert trial.reported == [(1, [0, 1, 1, 1, 1, 1]), (2, [0, 0, 1, 1, 1, 1])]
    # the model is back at round 2: its masks and its weights (W + 2, pruned ones zero)
    assert trial.masks["weight"].int().flatten().tolist() == [0, 0, 1, 1, 1, 1]
    expected = (W + 2) * torch.tensor([[0.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    torch.testing.assert_close(trial.masks.stored_weight("weight").detach(), expected)


def test_every_round_within_the_tolerance_is_reported(monkeypatch):
    trial = FakeTrial(dense_acc=0.90)
    scripted_accuracy(monkeypatch, [0.89, 0.88, 0.95])  # exactly at the floor counts as within
    run_plan(PruneDuringTraining(rounds=3, epochs_per_round=1, tolerance=0.02), trial)
    assert [index for index, _ in trial.reported] == [1, 2, 3]
    # the method hears of each round before that round's training
    assert trial.events == ["begin 1/3", "retrain", "begin 2/3", "retrain", "begin 3/3", "retrain"]


def test_a_first_round_past_the_tolerance_reports_the_dense_model(monkeypatch):
    trial = FakeTrial(dense_acc=0.90)
    scripted_accuracy(monkeypatch, [0.5])
    run_plan(PruneDuringTraining(rounds=3, epochs_per_round=1, tolerance=0.0), trial)
    assert trial.reported == [(0, [1, 1, 1, 1, 1, 1])]
    torch.testing.assert_close(trial.masks.stored_weight("weight").detach(), W)


def test_patience_lets_a_run_recover_from_a_dip(monkeypatch):
    trial = FakeTrial(dense_acc=0.90)
    # floor 0.88: round 2 dips, round 3 recovers, rounds 4-5 stay below, patience 2 stops at 5
    scripted_accuracy(monkeypatch, [0.89, 0.80, 0.885, 0.85, 0.86, 0.95])
    run_plan(PruneDuringTraining(rounds=6, epochs_per_round=1, tolerance=0.02, patience=2), trial)
    assert trial.retrained == [1, 1, 1, 1, 1]
    assert [index for index, _ in trial.reported] == [1, 3]
    # back at round 3: three weights pruned, survivors moved by three retrainings
    assert trial.masks["weight"].int().flatten().tolist() == [0, 0, 0, 1, 1, 1]
    expected = (W + 3) * torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    torch.testing.assert_close(trial.masks.stored_weight("weight").detach(), expected)


def test_a_run_that_ends_below_the_tolerance_goes_back_to_its_last_reported_round(monkeypatch):
    trial = FakeTrial(dense_acc=0.90)
    scripted_accuracy(monkeypatch, [0.90, 0.70])  # the last round is past the floor
    run_plan(PruneDuringTraining(rounds=2, epochs_per_round=1, tolerance=0.02, patience=5), trial)
    assert [index for index, _ in trial.reported] == [1]
    assert trial.masks["weight"].int().flatten().tolist() == [0, 1, 1, 1, 1, 1]


def test_plan_and_recipe_follow_the_config():
    m = method(epochs=7, prune_every=3, tolerance=0.05, lr=0.02, momentum=0.5, patience=4)
    assert m.plan() == PruneDuringTraining(rounds=2, epochs_per_round=3, tolerance=0.05, patience=4)
    dense = TrainConfig(optimizer="adam", lr=0.3, weight_decay=1e-3, schedule="cosine")
    recipe = m.retrain_recipe(dense)
    assert (recipe.optimizer, recipe.lr, recipe.momentum) == ("sgd", 0.02, 0.5)
    assert (recipe.weight_decay, recipe.schedule) == (0.0, "constant")
    assert recipe.epochs == dense.epochs and recipe.batch_size == dense.batch_size


def test_the_rate_factor_is_one_or_a_cosine_over_the_rounds():
    assert [rate_factor("constant", i, 4) for i in (1, 2, 3, 4)] == [1.0] * 4
    # 0.5 (1 + cos(pi (i - 1) / 4)) for i = 1..4: 1, 0.8536, 0.5, 0.1464
    cosine = [rate_factor("cosine", i, 4) for i in (1, 2, 3, 4)]
    assert cosine == pytest.approx([1.0, 0.85355339, 0.5, 0.14644661])


def test_a_cosine_lr_schedule_scales_the_rate_and_lambda_of_each_round():
    dense = TrainConfig()
    assert method().config.lr_schedule == "constant"  # the paper's constant rate by default
    constant = method(lr=0.1, lmbda=0.1, output="logits", estimate="per_example")
    constant.begin_round(RoundInfo(3, 4, None))
    assert constant.retrain_recipe(dense).lr == 0.1
    m = method(lr=0.1, lmbda=0.1, output="logits", estimate="per_example", lr_schedule="cosine")
    m.begin_round(RoundInfo(3, 4, None))  # factor 0.5
    assert m.retrain_recipe(dense).lr == pytest.approx(0.05)
    # one step at lambda 0.1 x 0.5, on the per-example S of the logits
    layer, masks = linear()
    m.attach(layer, masks)
    F.cross_entropy(layer(X), LABELS).backward()
    m.on_step_end(layer)
    expected = W - 0.05 * W * (1 - UNSPECIFIC_PER_EXAMPLE).clamp(min=0)
    torch.testing.assert_close(masks.stored_weight("weight").detach(), expected)


@pytest.mark.parametrize("variant", ["unspecific", "specific"])
def test_a_short_real_run_prunes_and_stays_above_chance(variant, tmp_path, small_data):
    config = TrialConfig(
        model="lenet300",
        data=small_data,
        train=TrainConfig(epochs=1),
        method="sensitivity",
        params={"variant": variant, "lmbda": 0.05, "threshold": 0.005, "epochs": 2},
        device="cpu",
    )
    results = run_trial(config, cache_dir=tmp_path)
    last = results[-1]
    assert last.round >= 1 and last.compression > 1.1
    assert last.val_acc > 0.3 and last.test_acc > 0.3  # 10 classes: chance is 0.1
    compressions = [result.compression for result in results]
    assert compressions == sorted(compressions)


def test_the_regulariser_prunes_more_than_thresholding_alone(tmp_path, small_data):
    def final_remaining(lmbda: float) -> int:
        config = TrialConfig(
            model="lenet300",
            data=small_data,
            train=TrainConfig(epochs=1),
            method="sensitivity",
            params={"lmbda": lmbda, "threshold": 0.005, "epochs": 1, "tolerance": 1.0},
            device="cpu",
        )
        return run_trial(config, cache_dir=tmp_path)[-1].remaining_weights

    assert final_remaining(0.1) < 0.9 * final_remaining(1e-9)


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"lmbda": 0}, "lmbda"),
        ({"lmbda": 2.0}, "lmbda"),
        ({"threshold": -1e-3}, "threshold"),
        ({"epochs": 0}, "epochs"),
        ({"prune_every": 0}, "prune_every"),
        ({"epochs": 2, "prune_every": 3}, "prune_every"),
        ({"tolerance": -0.1}, "tolerance"),
        ({"patience": 0}, "patience"),
        ({"variant": "both"}, "variant"),
        ({"output": "probits"}, "output"),
        ({"estimate": "exact"}, "estimate"),
        ({"momentum": 1.0}, "momentum"),
        ({"sensitivity_scale": 0}, "sensitivity_scale"),
        ({"lr_schedule": "linear"}, "lr_schedule"),
    ],
)
def test_out_of_range_knobs_are_rejected_with_their_name(bad, field, small_data):
    with pytest.raises(ValidationError, match=field):
        SensitivityConfig(**bad)
    with pytest.raises(ValidationError, match=field):
        TrialConfig(model="lenet300", data=small_data, method="sensitivity", params=bad)


def test_the_search_space_fragment_is_valid(tmp_path):
    fragment = SPACES_DIR / "methods" / "sensitivity.yaml"
    space_file = tmp_path / "space.yaml"
    space_file.write_text(f"methods:\n  sensitivity: {fragment}\n")
    params = load_space(space_file).methods["sensitivity"]
    assert params["variant"].choices == ["unspecific", "specific"]
    assert (params["lmbda"].low, params["lmbda"].high, params["lmbda"].log) == (1e-5, 1e-2, True)
    assert (params["threshold"].low, params["threshold"].high) == (1e-4, 1e-2)
    # y and the estimate the search-efficiency benchmark was measured with (docs/methods.md)
    assert (params["output"].value, params["estimate"].value) == ("logits", "batch_mean")
