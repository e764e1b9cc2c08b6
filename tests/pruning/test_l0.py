"""L0 regularisation's own numerics, by hand (papers.md section 2, Louizos et al. 2018), and the
physical shrinking of structurally pruned models."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from sparsetune.config import TrainConfig, TrialConfig
from sparsetune.export.shrink import SelectFeatures, shrink
from sparsetune.models.lenet import LeNet5, LeNet300
from sparsetune.pruning import METHODS
from sparsetune.pruning.l0 import (
    BETA,
    GAMMA,
    LOG_ALPHA_MAX,
    LOG_ALPHA_MIN,
    ZETA,
    L0Config,
    L0Regularization,
    deterministic_gate,
    find_gates,
    probability_nonzero,
    sample_gate,
)
from sparsetune.pruning.masking import attach_masks, prunable_parameters
from sparsetune.pruning.metrics import architecture_string
from sparsetune.pruning.plans import RoundInfo, TrainThenPrune
from sparsetune.train.loop import evaluate, fit

ROUND = RoundInfo(1, 1, None)


def gated(model: nn.Module, n: int = 10, **params):
    """`model` with masks and L0 gates attached, as a trial attaches them; N = `n`."""
    masks = attach_masks(model)
    method = L0Regularization(L0Config(**params))
    method.attach(model, masks)
    method.bind_data(n)
    return model, masks, method


def set_log_alpha(model: nn.Module, name: str, values) -> None:
    _, gate = find_gates(model)[name]
    with torch.no_grad():
        gate.log_alpha_scaled.copy_(torch.as_tensor(values, dtype=torch.float32) / gate.lr_factor)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_the_constants_are_the_papers_and_the_official_codes():
    assert (BETA, GAMMA, ZETA) == (2 / 3, -0.1, 1.1)
    assert (LOG_ALPHA_MIN, LOG_ALPHA_MAX) == (math.log(0.01), math.log(100))
    assert METHODS["l0"] is L0Regularization


def test_closed_form_expected_l0_matches_a_monte_carlo_mean():
    log_alpha = torch.tensor([-3.0, -1.0, 0.0, 1.0, 2.5])
    # by hand: P(z != 0) = sigmoid(log_alpha - beta log(-gamma / zeta)), -gamma / zeta = 1 / 11
    by_hand = [1 / (1 + math.exp(-(a - (2 / 3) * math.log(1 / 11)))) for a in log_alpha.tolist()]
    assert by_hand[2] == pytest.approx(0.831822, abs=1e-6)  # sigmoid((2/3) ln 11)
    closed = probability_nonzero(log_alpha)
    assert closed.tolist() == pytest.approx(by_hand, rel=1e-6)
    torch.manual_seed(0)
    draws = 200_000
    z = sample_gate(log_alpha.expand(draws, -1))
    assert ((z >= 0) & (z <= 1)).all()
    assert (z == 0).any() and (z == 1).any()  # the stretch and clamp give exact 0s and 1s
    mean = (z > 0).float().mean(0)
    sampling_error = (closed * (1 - closed) / draws).sqrt()
    assert ((mean - closed).abs() <= 4 * sampling_error).all(), (mean, closed)


def test_the_test_time_gate_of_log_alpha_zero_is_one_half_and_clamps_to_exact_zero_and_one():
    # min(1, max(0, sigmoid(0) * 1.2 - 0.1)) = 0.5
    assert deterministic_gate(torch.tensor(0.0)).item() == pytest.approx(0.5, abs=1e-7)
    # zero at and below sigmoid(log_alpha) = 1/12, i.e. log_alpha = log(1/11) = -2.3979
    gates = deterministic_gate(torch.tensor([-5.0, math.log(1 / 11) - 1e-4, -2.0, 3.0, 10.0]))
    assert gates[:2].tolist() == [0.0, 0.0]
    assert gates[2].item() == pytest.approx(1.2 / (1 + math.exp(2.0)) - 0.1)
    # one at and above sigmoid(log_alpha) = 11/12, i.e. log_alpha = log 11
    assert gates[3:].tolist() == [1.0, 1.0]


def test_penalty_is_the_official_group_cost_by_hand():
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]]))
        layer.bias.copy_(torch.tensor([0.5, -1.0]))
    layer, masks, method = gated(layer, n=10, l0_lambda=0.3, weight_decay=0.1)
    set_log_alpha(layer, "weight", [0.0, -1.0, 2.0])  # neuron: one gate per input column
    p = [1 / (1 + math.exp(-(a - BETA * math.log(1 / 11)))) for a in (0.0, -1.0, 2.0)]
    # per column: lambda * |g| (2 weights) + 0.5 wd ||w_col||^2; plus the ungated bias L2
    squares = [1 + 9, 4 + 0, 0.25 + 1]
    by_hand = sum(pj * (0.3 * 2 + 0.05 * sq) for pj, sq in zip(p, squares, strict=True))
    by_hand = (by_hand + 0.05 * (0.25 + 1)) / 10
    assert method.penalty(layer).item() == pytest.approx(by_hand, rel=1e-6)

    # A masked weight leaves its group's size and its L2 term: column 0 holds one weight now.
    masks.update({"weight": torch.tensor([[0, 1, 1], [1, 1, 1]])})
    squares[0] = 9
    by_hand = p[0] * (0.3 * 1 + 0.05 * 9) + p[1] * (0.6 + 0.05 * 4) + p[2] * (0.6 + 0.05 * 1.25)
    assert method.penalty(layer).item() == pytest.approx((by_hand + 0.05 * 1.25) / 10, rel=1e-6)


def test_weight_granularity_penalty_counts_each_weight_once():
    layer = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[2.0, -1.0]]))
    layer, _, method = gated(layer, n=4, granularity="weight", l0_lambda=1.0, weight_decay=0.5)
    set_log_alpha(layer, "weight", [[1.0, -2.0]])
    p = probability_nonzero(torch.tensor([1.0, -2.0])).tolist()
    by_hand = (p[0] * (1 + 0.25 * 4) + p[1] * (1 + 0.25 * 1)) / 4
    assert method.penalty(layer).item() == pytest.approx(by_hand, rel=1e-6)


def test_penalty_needs_the_training_set_size():
    method = L0Regularization(L0Config())
    model = nn.Linear(3, 2)
    method.attach(model, attach_masks(model))
    with pytest.raises(RuntimeError, match="training-set size"):
        method.penalty(model)


def test_log_alpha_is_clamped_after_each_step_whatever_the_gate_rate():
    for factor in (1.0, 10.0):
        model, _, method = gated(nn.Linear(3, 1), gate_lr_factor=factor)
        set_log_alpha(model, "weight", [-9.0, 0.3, 9.0])
        method.on_step_end(model)
        _, gate = find_gates(model)["weight"]
        expected = [math.log(0.01), 0.3, math.log(100)]
        assert gate.log_alpha.tolist() == pytest.approx(expected, rel=1e-6)


def test_initial_log_alpha_follows_droprate_init_and_granularity():
    torch.manual_seed(0)
    mlp, _, _ = gated(LeNet300())
    gates = {name: gate.log_alpha for name, (_, gate) in find_gates(mlp).items()}
    assert {name: tuple(a.shape) for name, a in gates.items()} == {
        "fc1.weight": (784,),  # input neurons of each fc layer
        "fc2.weight": (300,),
        "fc3.weight": (100,),
    }
    # log(1 - d) - log d + N(0, 0.01): d = 0.2 for the MLP's input layer, 0.5 elsewhere
    assert gates["fc1.weight"].mean().item() == pytest.approx(math.log(4), abs=0.003)
    assert gates["fc2.weight"].mean().item() == pytest.approx(0.0, abs=0.003)
    assert gates["fc1.weight"].std().item() == pytest.approx(0.01, rel=0.15)

    convnet, _, _ = gated(LeNet5())
    gates = {name: gate.log_alpha for name, (_, gate) in find_gates(convnet).items()}
    assert {name: tuple(a.shape) for name, a in gates.items()} == {
        "conv1.weight": (20,),  # output channels of each conv layer
        "conv2.weight": (50,),
        "fc1.weight": (800,),
        "fc2.weight": (500,),
    }
    assert all(abs(a.mean().item()) < 0.005 for a in gates.values())  # d = 0.5 in a convnet

    weights, _, _ = gated(LeNet5(), granularity="weight", droprate_init=0.25)
    for name, (module, gate) in find_gates(weights).items():
        assert gate.log_alpha.shape == module.parametrizations.weight.original.shape, name
        assert gate.log_alpha.mean().item() == pytest.approx(math.log(3), abs=0.005)


def test_lambda_per_layer_combines_the_conv_fc_and_named_scales():
    model, _, _ = gated(
        LeNet5(),
        l0_lambda=0.2,
        conv_lambda_scale=3.0,
        fc_lambda_scale=0.5,
        layer_lambda_scales={"conv2": 10.0, "fc2": 0.0},
    )
    lambdas = {name: gate.lambda_layer for name, (_, gate) in find_gates(model).items()}
    assert lambdas == pytest.approx(
        {"conv1.weight": 0.6, "conv2.weight": 6.0, "fc1.weight": 0.1, "fc2.weight": 0.0}
    )
    method = L0Regularization(L0Config(layer_lambda_scales={"fc9": 2.0}))
    with pytest.raises(ValueError, match="layer_lambda_scales: unknown layer.*fc9"):
        method.check_layers(prunable_parameters(LeNet300()))


def test_neuron_gates_act_on_whole_fc_columns_and_conv_channels():
    torch.manual_seed(0)
    model, masks, method = gated(LeNet5())
    # log_alpha = -20 closes a gate in every draw (the largest draw needs log_alpha > -15.4);
    # 8 leaves it open but with probability sigmoid(-9.6) < 1e-4
    set_log_alpha(model, "conv1.weight", [-20.0 if c in (2, 7) else 8.0 for c in range(20)])
    fc1 = torch.full((800,), 8.0)
    fc1[[0, 5, 799]] = -20.0
    set_log_alpha(model, "fc1.weight", fc1)
    for mode in (model.train, model.eval):
        mode()
        conv1, fc1_weight = model.conv1.weight, model.fc1.weight  # the gated weights
        assert (conv1[[2, 7]] == 0).all() and (conv1[[0, 1, 3]] != 0).all()
        assert (fc1_weight[:, [0, 5, 799]] == 0).all() and (fc1_weight[:, [1, 2]] != 0).all()

    model.eval()
    inputs = torch.randn(4, 1, 28, 28)
    before = model(inputs)
    masks.update(method.compute_masks(model, masks, ROUND))
    conv1, fc1 = masks["conv1.weight"].flatten(1), masks["fc1.weight"]
    assert torch.equal(conv1.amin(1), conv1.amax(1)) and torch.equal(fc1.amin(0), fc1.amax(0))
    assert (conv1.amax(1) == 0).nonzero().flatten().tolist() == [2, 7]
    assert (fc1.amax(0) == 0).nonzero().flatten().tolist() == [0, 5, 799]
    assert architecture_string(model) == "18-50-797-500"
    torch.testing.assert_close(model(inputs), before, rtol=1e-5, atol=1e-6)


def test_compute_masks_folds_the_surviving_gate_into_the_weight_and_turns_the_gate_off():
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0, 4.0], [3.0, 5.0, -1.0]]))
    layer, masks, method = gated(layer)
    set_log_alpha(layer, "weight", [0.0, -3.0, 5.0])  # test-time gates 0.5, 0, 1
    layer.eval()
    inputs = torch.randn(5, 3)
    before = layer(inputs)
    masks.update(method.compute_masks(layer, masks, ROUND))
    assert masks["weight"].tolist() == [[1, 0, 1], [1, 0, 1]]
    stored = masks.stored_weight("weight")
    assert stored.tolist() == [[0.5, 0.0, 4.0], [1.5, 0.0, -1.0]]  # z folded in
    _, gate = find_gates(layer)["weight"]
    assert not gate.active
    torch.testing.assert_close(layer(inputs), before)
    layer.train()  # the gate no longer samples: plain weights times the binary mask
    assert torch.equal(layer.weight, stored * masks["weight"])
    assert method.penalty(layer).item() == 0.0  # the method's training is over
    assert method.compute_masks(layer, masks, ROUND) == {}  # folded once, never again


def test_gates_learn_through_the_sampled_forward():
    torch.manual_seed(0)
    layer, _, method = gated(nn.Linear(4, 2))
    loss = layer(torch.randn(8, 4)).pow(2).sum() + method.penalty(layer)
    loss.backward()
    _, gate = find_gates(layer)["weight"]
    assert gate.log_alpha_scaled.grad is not None and (gate.log_alpha_scaled.grad != 0).all()


def test_the_recipe_is_the_official_adam_with_weight_decay_only_in_the_penalty():
    dense = TrainConfig(lr=0.05, weight_decay=5e-4, schedule="cosine", epochs=8)
    recipe = L0Regularization(L0Config(epochs=7)).retrain_recipe(dense)
    assert (recipe.optimizer, recipe.lr, recipe.weight_decay) == ("adam", 1e-3, 0.0)
    assert (recipe.schedule, recipe.batch_size, recipe.epochs) == ("constant", 100, 7)


def test_the_plan_trains_from_theta_0_unless_asked_for_the_dense_weights():
    assert L0Regularization(L0Config(epochs=3)).plan() == TrainThenPrune(epochs=3, from_init=True)
    method = L0Regularization(L0Config(start="dense"))
    assert method.plan() == TrainThenPrune(epochs=10, from_init=False)


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"l0_lambda": -0.1}, "l0_lambda"),
        ({"droprate_init": 1.0}, "droprate_init"),
        ({"droprate_init_mlp_input": 0.0}, "droprate_init_mlp_input"),
        ({"granularity": "filter"}, "granularity"),
        ({"layer_lambda_scales": {"fc1": -1.0}}, "layer_lambda_scales"),
        ({"conv_lambda_scale": -2.0}, "conv_lambda_scale"),
        ({"gate_lr_factor": 0}, "gate_lr_factor"),
        ({"start": "final"}, "start"),
        ({"lr": 0}, "lr"),
    ],
)
def test_out_of_range_knobs_are_rejected_with_their_name(bad, field, small_data):
    with pytest.raises(ValidationError, match=field):
        L0Config(**bad)
    with pytest.raises(ValidationError, match=field):
        TrialConfig(model="lenet300", data=small_data, method="l0", params=bad)


def test_shrink_lenet300_keeps_the_surviving_neurons_and_the_forward():
    torch.manual_seed(0)
    model, masks, method = gated(LeNet300())
    # close 88 input pixels, 60 fc1 outputs (fc2's columns) and 10 fc2 outputs (fc3's columns)
    set_log_alpha(model, "fc1.weight", [-5.0 if i % 9 == 0 else 2.0 for i in range(784)])
    set_log_alpha(model, "fc2.weight", [-5.0 if i % 5 == 0 else 2.0 for i in range(300)])
    set_log_alpha(model, "fc3.weight", [-5.0 if i < 10 else 2.0 for i in range(100)])
    masks.update(method.compute_masks(model, masks, ROUND))
    assert architecture_string(model) == "696-240-90"
    model.eval()
    small = shrink(model, (1, 28, 28))
    layers = [m for m in small if isinstance(m, nn.Linear)]
    assert [tuple(m.weight.shape) for m in layers] == [(240, 696), (90, 240), (10, 90)]
    assert isinstance(small[1], SelectFeatures)  # after flatten, before fc1
    inputs = torch.randn(16, 1, 28, 28)
    torch.testing.assert_close(small(inputs), model(inputs), rtol=1e-5, atol=1e-5)
    assert n_params(small) == 696 * 240 + 240 + 240 * 90 + 90 + 90 * 10 + 10 < n_params(LeNet300())


def test_shrink_lenet5_folds_dead_channels_into_the_next_bias():
    torch.manual_seed(0)
    model = LeNet5()
    masks = attach_masks(model)
    keep = {name: torch.ones_like(mask) for name, mask in masks.items()}
    keep["conv1.weight"][[3, 11]] = 0  # two dead channels: each outputs relu(bias), a constant
    keep["conv2.weight"][[0, 9, 49]] = 0
    keep["conv2.weight"][:, 5] = 0  # conv1 channel 5 is never read: dropped without folding
    keep["fc1.weight"][:, 96:160] = 0  # conv2's 16-pixel channels 6..9, column by column
    keep["fc1.weight"][:, 200:203] = 0  # three single columns of live channel 12
    keep["fc2.weight"][:, [7, 8]] = 0  # two fc1 outputs never read
    masks.update(keep)
    with torch.no_grad():
        model.conv1.bias.fill_(0.3)  # positive: the dead channels carry a nonzero constant
        model.conv2.bias.fill_(0.2)
    assert architecture_string(model) == "18-47-733-498"
    model.eval()
    small = shrink(model, (1, 28, 28))
    convs = [m for m in small if isinstance(m, nn.Conv2d)]
    fcs = [m for m in small if isinstance(m, nn.Linear)]
    # conv1: 20 less dead 3, 11 and unread 5; conv2: 50 less dead 0, 9, 49 and unread 6, 7, 8
    assert [tuple(m.weight.shape[:2]) for m in convs] == [(17, 1), (44, 17)]
    # fc1 reads 44 channels x 16 pixels less the 3 single columns; fc2 reads 498 of 500
    assert [tuple(m.weight.shape) for m in fcs] == [(498, 701), (10, 498)]
    inputs = torch.randn(16, 1, 28, 28)
    torch.testing.assert_close(small(inputs), model(inputs), rtol=1e-5, atol=1e-5)
    assert n_params(small) < n_params(LeNet5())


def test_shrink_keeps_a_dead_unit_whose_constant_cannot_be_folded_and_rejects_non_chains():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1), nn.Flatten()
    )
    with torch.no_grad():
        net[0].weight[1] = 0  # dead channel: relu(bias) is constant, but padding makes its
        net[0].bias[1] = 1.0  # contribution differ at the border, so it must stay
        net[0].weight[2] = 0
        net[0].bias[2] = -1.0  # relu(-1) = 0 everywhere: folding adds nothing, so it goes
    small = shrink(net, (2, 6, 6))
    assert small[0].weight.shape[0] == 3
    inputs = torch.randn(4, 2, 6, 6)
    torch.testing.assert_close(small(inputs), net(inputs), rtol=1e-5, atol=1e-6)

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return x + self.fc(x)

    with pytest.raises(ValueError, match="not a chain"):
        shrink(Residual(), (4,))


def l0_fit(splits, **params):
    torch.manual_seed(0)
    model, masks, method = gated(LeNet300(), n=len(splits.train), **params)
    fit(model, splits.train, method.retrain_recipe(TrainConfig()), seed=0, hooks=method)
    masks.update(method.compute_masks(model, masks, ROUND))
    return model, masks


def test_short_training_learns_sparse_weights_with_accuracy_far_above_chance(small_splits):
    # 40 Adam steps on 1,000 examples; gate_lr_factor 100 lets log_alpha cross the closing value
    model, masks = l0_fit(
        small_splits, granularity="weight", l0_lambda=0.05, gate_lr_factor=100, epochs=4
    )
    accuracy, _ = evaluate(model, small_splits.val)
    assert masks.compression() > 2  # over half the weights gone
    assert accuracy > 0.8  # chance is 0.1
    for name, mask in masks.items():  # and what was pruned is exactly zero in the model
        module = model.get_submodule(name.rpartition(".")[0])
        assert (module.weight[mask == 0] == 0).all()


def test_short_structured_training_removes_neurons_and_shrinks(small_splits):
    model, masks = l0_fit(
        small_splits, granularity="neuron", l0_lambda=0.005, gate_lr_factor=100, epochs=4
    )
    accuracy, _ = evaluate(model, small_splits.val)
    inputs_kept, hidden1, hidden2 = map(int, architecture_string(model).split("-"))
    assert inputs_kept < 784 and hidden1 < 300 and accuracy > 0.8
    small = shrink(model, (1, 28, 28))
    assert [m.weight.shape[1] for m in small if isinstance(m, nn.Linear)] == [
        inputs_kept,
        hidden1,
        hidden2,
    ]
    model.eval()
    torch.testing.assert_close(
        small(small_splits.val.x), model(small_splits.val.x), rtol=1e-5, atol=1e-5
    )
