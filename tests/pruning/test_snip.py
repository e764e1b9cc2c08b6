"""SNIP's own numerics, by hand (papers.md section 5, Lee et al. 2019), and the at-initialisation
controls of Frankle et al. 2021 that every pruning-at-initialisation method exposes."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn
from torch.func import functional_call

from sparsetune.config import TrainConfig, TrialConfig
from sparsetune.pruning.masking import attach_masks
from sparsetune.pruning.plans import AtInitialisation, RoundInfo
from sparsetune.pruning.snip import SNIP, SNIPConfig, snip_scores
from sparsetune.trial import run_trial, start_trial


class Tiny(nn.Module):
    """Two fc layers and a conv, small enough to check every score."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, kernel_size=3)
        self.fc1 = nn.Linear(2 * 4 * 4, 6)
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x):
        x = torch.relu(self.conv(x)).flatten(1)
        return self.fc2(torch.relu(self.fc1(x)))


def tiny_problem(seed: int = 0):
    torch.manual_seed(seed)
    model = Tiny()
    inputs, targets = torch.randn(12, 1, 6, 6), torch.randint(0, 3, (12,))
    return model, inputs, targets


def test_the_score_is_abs_w_times_the_gradient_computed_independently():
    model, inputs, targets = tiny_problem()
    plain = copy.deepcopy(model)  # no masks: plain autograd on the plain weights
    F.cross_entropy(plain(inputs), targets).backward()
    names = ["conv.weight", "fc1.weight", "fc2.weight"]
    expected = {n: (plain.get_parameter(n) * plain.get_parameter(n).grad).abs() for n in names}

    masks = attach_masks(model)
    method = SNIP(SNIPConfig())
    method.at_init(model, masks, (inputs, targets), RoundInfo(1, 1, 0.9))
    total = sum(e.sum() for e in expected.values())
    assert list(method.scores) == names
    for name in names:
        torch.testing.assert_close(method.scores[name], expected[name] / total, rtol=1e-5, atol=0)
    assert float(sum(s.sum() for s in method.scores.values())) == pytest.approx(1.0, abs=1e-6)
    # Scoring leaves the model as it found it: no gradients, same weights.
    assert all(p.grad is None for p in model.parameters())
    for name in names:
        assert torch.equal(masks.stored_weight(name), plain.get_parameter(name))


def test_the_score_equals_the_derivative_with_respect_to_a_multiplicative_gate_at_one():
    # The paper's definition: g_q = dL(c (.) w) / dc_q at c = 1, taken here on gates directly.
    model, inputs, targets = tiny_problem(seed=1)
    plain = copy.deepcopy(model)
    names = ["conv.weight", "fc1.weight", "fc2.weight"]
    gates = {n: torch.ones_like(plain.get_parameter(n), requires_grad=True) for n in names}
    params = {n: p.detach() for n, p in plain.named_parameters()}
    params |= {n: params[n] * gates[n] for n in names}
    loss = F.cross_entropy(functional_call(plain, params, (inputs,)), targets)
    by_gate = dict(zip(names, torch.autograd.grad(loss, [gates[n] for n in names]), strict=True))

    masks = attach_masks(model)
    scores = snip_scores(model, masks, inputs, targets)
    for name in names:
        torch.testing.assert_close(scores[name], by_gate[name].abs(), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.9])
def test_global_top_k_keeps_exactly_kappa_of_the_highest_scores(sparsity):
    model, inputs, targets = tiny_problem(seed=2)
    masks = attach_masks(model)
    method = SNIP(SNIPConfig(sparsity=sparsity))
    info = RoundInfo(1, 1, sparsity)
    method.at_init(model, masks, (inputs, targets), info)
    scores = {n: s.clone() for n, s in method.scores.items()}
    masks.update(method.compute_masks(model, masks, info))
    total = sum(m.numel() for m in masks.values())  # 18 + 192 + 18 = 228 weights
    assert total == 228
    assert sum(int(m.sum()) for m in masks.values()) == round((1 - sparsity) * total)
    kept = torch.cat([scores[n][masks[n] == 1] for n in masks])
    removed = torch.cat([scores[n][masks[n] == 0] for n in masks])
    assert kept.min() >= removed.max()  # one threshold across all layers
    for name in masks:  # committed: pruned stored weights are zero
        assert (masks.stored_weight(name)[masks[name] == 0] == 0).all()


def test_a_hand_made_score_table_gives_the_hand_made_mask():
    layer = nn.Linear(3, 2, bias=False)
    masks = attach_masks(layer)
    method = SNIP(SNIPConfig(sparsity=0.5))
    method.scores = {"weight": torch.tensor([[0.05, 0.30, 0.10], [0.25, 0.20, 0.10]])}
    mask = method.compute_masks(layer, masks, RoundInfo(1, 1, 0.5))["weight"]
    assert mask.int().tolist() == [[0, 1, 0], [1, 1, 0]]  # the three largest: 0.30, 0.25, 0.20


def test_already_pruned_weights_score_zero_and_stay_pruned():
    model, inputs, targets = tiny_problem(seed=3)
    masks = attach_masks(model)
    pruned = torch.zeros_like(masks["fc1.weight"])
    pruned[:3] = 1  # keep only the first three rows of fc1
    masks.update({"fc1.weight": pruned})
    method = SNIP(SNIPConfig(sparsity=0.2))
    info = RoundInfo(1, 1, 0.2)
    method.at_init(model, masks, (inputs, targets), info)
    assert (method.scores["fc1.weight"][3:] == 0).all()
    new = method.compute_masks(model, masks, info)
    assert not (new["fc1.weight"][3:]).any()


def test_compute_masks_before_at_init_is_an_error_that_says_so():
    model, _, _ = tiny_problem()
    with pytest.raises(RuntimeError, match="at_init"):
        SNIP(SNIPConfig()).compute_masks(model, attach_masks(model), RoundInfo(1, 1, 0.5))


def test_the_plan_is_pruning_at_initialisation_with_the_configured_batch_and_control():
    plan = SNIP(SNIPConfig(sparsity=0.8, scoring_batch=64, control="shuffle")).plan()
    assert plan == AtInitialisation(target=0.8, scoring_examples=64, control="shuffle")


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"sparsity": 1.0}, "sparsity"),
        ({"sparsity": 0.0}, "sparsity"),
        ({"scoring_batch": 0}, "scoring_batch"),
        ({"control": "permute"}, "control"),
    ],
)
def test_out_of_range_knobs_are_rejected_with_their_name(bad, field):
    with pytest.raises(ValidationError, match=field):
        SNIPConfig(**bad)


def trial_config(method: str, params: dict, data, train: TrainConfig | None = None) -> TrialConfig:
    return TrialConfig(
        model="lenet300",
        data=data,
        train=train or TrainConfig(epochs=1),
        method=method,
        params=params,
        seed=0,
        device="cpu",
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One dense stage for every trial in this module (they share model, data, recipe, seed)."""
    return tmp_path_factory.mktemp("dense-cache")


def prune_without_training(method: str, params: dict, data, cache_dir):
    """The AtInitialisation plan of a trial with its training step skipped, so that the
    mask and weights the control leaves can be compared with theta_0."""
    trial = start_trial(trial_config(method, params, data), cache_dir=cache_dir)
    trial.retrain = lambda epochs=None: None
    trial.run()
    masks = {name: mask.clone() for name, mask in trial.masks.items()}
    weights = {name: trial.masks.stored_weight(name).detach().clone() for name in trial.masks}
    return masks, weights, trial.dense.checkpoint.init


@pytest.mark.parametrize(
    "method, params",
    [
        ("snip", {"sparsity": 0.9}),
        ("grasp", {"sparsity": 0.9, "samples_per_class": 4}),
        ("random", {"sparsity": 0.9}),
    ],
)
def test_shuffle_keeps_each_layers_count_and_moves_positions_reinit_keeps_mask_new_weights(
    method, params, small_data, cache
):
    found, found_weights, init = prune_without_training(method, params, small_data, cache)
    shuffled, shuffled_weights, _ = prune_without_training(
        method, params | {"control": "shuffle"}, small_data, cache
    )
    reinit, reinit_weights, _ = prune_without_training(
        method, params | {"control": "reinit"}, small_data, cache
    )
    for name, mask in found.items():
        kept = mask.bool()
        # the method's own mask, on theta_0
        assert torch.equal(found_weights[name][kept], init[name][kept])
        # shuffle: same count in the layer, other positions, survivors at theta_0
        assert int(shuffled[name].sum()) == int(mask.sum())
        assert not torch.equal(shuffled[name], mask), name
        moved = shuffled[name].bool()
        assert torch.equal(shuffled_weights[name][moved], init[name][moved])
        assert (shuffled_weights[name][~moved] == 0).all()
        # reinit: the same mask, other values for the kept weights, pruned ones still zero
        assert torch.equal(reinit[name], mask)
        assert not torch.equal(reinit_weights[name][kept], init[name][kept]), name
        assert (reinit_weights[name][~kept] == 0).all()


def test_a_short_real_run_reaches_its_target_and_beats_chance(small_data, cache):
    (result,) = run_trial(
        trial_config("snip", {"sparsity": 0.9}, small_data, TrainConfig(epochs=4, lr=0.1)),
        cache_dir=cache,
    )
    assert result.round == 1
    assert result.remaining_weights == round(0.1 * 266_200)
    # Chance is 0.1 (10 balanced classes); the dense net of this recipe reaches 1.0, SNIP at 90%
    # about 0.9.
    assert result.val_acc > 0.5 and result.test_acc > 0.5
