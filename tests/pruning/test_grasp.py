"""GraSP's own numerics, by hand (papers.md section 6, Wang et al. 2020)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn
from torch.func import functional_call

from sparsetune.config import TrainConfig, TrialConfig
from sparsetune.pruning.grasp import GraSP, GraSPConfig, _xavier_fc, grasp_scores
from sparsetune.pruning.grasp import hessian_gradient_product as hg_product
from sparsetune.pruning.init_scoring import class_balanced
from sparsetune.pruning.masking import attach_masks
from sparsetune.pruning.plans import AtInitialisation, RoundInfo
from sparsetune.trial import run_trial

NAMES = ["fc1.weight", "fc2.weight", "fc3.weight"]


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(5, 7)
        self.fc2 = nn.Linear(7, 6)
        self.fc3 = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def problem(seed: int = 0):
    """A float64 MLP, 10 examples of 3 classes; at 2 per class `class_balanced` takes rows
    [1, 3] (class 0), [2, 5] (class 1), [0, 4] (class 2), in that order."""
    torch.manual_seed(seed)
    model = MLP().double()
    inputs = torch.randn(10, 5, dtype=torch.float64)
    targets = torch.tensor([2, 0, 1, 0, 2, 1, 1, 0, 2, 0])
    return model, inputs, targets


def test_hg_is_exact_for_a_quadratic_loss():
    # L = 0.5 w^T A w - b^T w: g = A w - b, H = A, so H g = A (A w - b) and S = -w (.) A (A w - b).
    A = torch.tensor([[2.0, 0.5, 0.0], [0.5, 1.0, -0.3], [0.0, -0.3, 3.0]], dtype=torch.float64)
    b = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    w = torch.tensor([0.7, -1.1, 0.4], dtype=torch.float64, requires_grad=True)
    loss = lambda: 0.5 * w @ A @ w - b @ w  # noqa: E731
    (g,), (hg,) = hg_product([w], [loss])
    by_hand_g = A @ w.detach() - b
    torch.testing.assert_close(g, by_hand_g, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(hg, A @ by_hand_g, rtol=1e-14, atol=1e-14)
    (score,) = grasp_scores([w], [loss])
    torch.testing.assert_close(score, -w.detach() * (A @ by_hand_g), rtol=1e-14, atol=1e-14)
    # By hand: A w = [0.85, -0.87, 1.53], so g = A w - b = [-0.15, 1.13, 1.03];
    # H g = A g = [0.265, 0.746, 2.751]; S = -w (.) H g = [-0.1855, 0.8206, -1.1004].
    assert score.tolist() == pytest.approx([-0.1855, 0.8206, -1.1004], abs=1e-12)


def test_two_parts_sum_their_gradients_and_their_hessians():
    # L1 + L2 with A1, A2: g = (A1 + A2) w - (b1 + b2) and H g = (A1 + A2) g, the official code's
    # two halves.
    A1 = torch.tensor([[1.0, 0.2], [0.2, 0.5]], dtype=torch.float64)
    A2 = torch.tensor([[0.3, -0.1], [-0.1, 2.0]], dtype=torch.float64)
    b1, b2 = torch.tensor([0.5, 1.0], dtype=torch.float64), torch.tensor([-1.0, 0.2]).double()
    w = torch.tensor([0.3, -0.8], dtype=torch.float64, requires_grad=True)
    losses = [lambda: 0.5 * w @ A1 @ w - b1 @ w, lambda: 0.5 * w @ A2 @ w - b2 @ w]
    (g,), (hg,) = hg_product([w], losses)
    expected_g = (A1 + A2) @ w.detach() - (b1 + b2)
    torch.testing.assert_close(g, expected_g, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(hg, (A1 + A2) @ expected_g, rtol=1e-14, atol=1e-14)


def test_the_method_scores_match_a_finite_difference_of_the_gradient():
    model, inputs, targets = problem()
    temperature = 5.0
    plain = copy.deepcopy(model)
    masks = attach_masks(model)
    method = GraSP(
        GraSPConfig(samples_per_class=2, temperature=temperature, xavier_fc_scoring=False)
    )
    method.at_init(model, masks, (inputs, targets), RoundInfo(1, 1, 0.9, seed=0))

    # Independently: the balanced batch by hand, two halves, logits / T, summed losses.
    order = torch.tensor([1, 3, 2, 5, 0, 4])
    halves = [order[:3], order[3:]]
    base = {n: p.detach() for n, p in plain.named_parameters()}

    def gradient(weights: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        leaves = {n: weights[n].clone().requires_grad_(True) for n in NAMES}
        loss = sum(
            F.cross_entropy(
                functional_call(plain, base | leaves, (inputs[h],)) / temperature, targets[h]
            )
            for h in halves
        )
        return list(torch.autograd.grad(loss, [leaves[n] for n in NAMES]))

    g = gradient(base)
    eps = 1e-6
    moved = base | {n: base[n] + eps * gn for n, gn in zip(NAMES, g, strict=True)}
    hg = [(after - before) / eps for after, before in zip(gradient(moved), g, strict=True)]
    raw = [-base[n] * h for n, h in zip(NAMES, hg, strict=True)]
    normaliser = abs(float(sum(r.sum() for r in raw)))
    for name, expected in zip(NAMES, raw, strict=True):
        torch.testing.assert_close(method.scores[name], expected / normaliser, rtol=1e-4, atol=1e-8)
    # normalised by |sum|: the scores sum to +-1 (up to the official 1e-10 guard)
    assert float(sum(s.sum() for s in method.scores.values())) == pytest.approx(
        math.copysign(1.0, float(sum(r.sum() for r in raw))), abs=1e-6
    )
    # Scoring leaves the model as it found it.
    assert all(p.grad is None for p in model.parameters())
    for name in NAMES:
        assert torch.equal(masks.stored_weight(name), base[name])


def test_the_highest_scores_are_removed():
    layer = nn.Linear(3, 2, bias=False)
    masks = attach_masks(layer)
    method = GraSP(GraSPConfig(sparsity=0.5))
    method.scores = {"weight": torch.tensor([[0.5, -0.2, 0.1], [0.3, -0.4, 0.0]])}
    mask = method.compute_masks(layer, masks, RoundInfo(1, 1, 0.5))["weight"]
    assert mask.int().tolist() == [[0, 1, 0], [0, 1, 1]]  # 0.5, 0.3 and 0.1 go


@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.9])
def test_global_top_k_removes_exactly_the_right_count_of_the_highest(sparsity):
    model, inputs, targets = problem(seed=1)
    masks = attach_masks(model)
    method = GraSP(GraSPConfig(sparsity=sparsity, samples_per_class=3))
    info = RoundInfo(1, 1, sparsity, seed=1)
    method.at_init(model, masks, (inputs, targets), info)
    scores = {n: s.clone() for n, s in method.scores.items()}
    masks.update(method.compute_masks(model, masks, info))
    total = 35 + 42 + 18
    assert sum(int(m.sum()) for m in masks.values()) == round((1 - sparsity) * total)
    kept = torch.cat([scores[n][masks[n] == 1] for n in NAMES])
    removed = torch.cat([scores[n][masks[n] == 0] for n in NAMES])
    assert kept.max() <= removed.min()


def test_class_balanced_takes_the_first_examples_of_each_class_grouped_by_class():
    _, inputs, targets = problem()
    x, y = class_balanced(inputs, targets, 2)
    assert y.tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.equal(x, inputs[[1, 3, 2, 5, 0, 4]])
    x, y = class_balanced(inputs, targets, 4)  # class 1 has only 3, class 2 only 3: all of them
    assert y.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert torch.equal(x, inputs[[1, 3, 7, 9, 2, 5, 6, 0, 4, 8]])


def test_the_temperature_divides_the_logits():
    model, inputs, targets = problem(seed=2)
    masks = attach_masks(model)
    scores = {}
    for temperature in (1.0, 200.0):
        method = GraSP(GraSPConfig(temperature=temperature, xavier_fc_scoring=False))
        method.at_init(model, masks, (inputs, targets), RoundInfo(1, 1, 0.9, seed=2))
        scores[temperature] = method.scores
    # Checked against a finite difference above at T = 5; here: T changes the scores.
    assert not torch.allclose(scores[1.0]["fc1.weight"], scores[200.0]["fc1.weight"])


def test_the_xavier_redraw_scores_a_copy_and_is_seeded():
    model, inputs, targets = problem(seed=3)
    masks = attach_masks(model)
    before = {n: masks.stored_weight(n).clone() for n in NAMES}
    runs = []
    for seed in (7, 7, 8):
        method = GraSP(GraSPConfig(samples_per_class=3))
        # The trial's seed reaches the method in RoundInfo; the re-draw follows it.
        method.at_init(model, masks, (inputs, targets), RoundInfo(1, 1, 0.9, seed=seed))
        runs.append(method.scores)
    for name in NAMES:
        assert torch.equal(masks.stored_weight(name), before[name])  # theta_0 untouched
        assert torch.equal(runs[0][name], runs[1][name])
        assert not torch.equal(runs[0][name], runs[2][name])
    method = GraSP(GraSPConfig(samples_per_class=3, xavier_fc_scoring=False))
    method.at_init(model, masks, (inputs, targets), RoundInfo(1, 1, 0.9, seed=8))
    assert not torch.allclose(method.scores["fc1.weight"], runs[0]["fc1.weight"])


def test_the_xavier_redraw_touches_linear_layers_only_keeps_pruned_zeros_and_has_xavier_std():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(400, 300))
    masks = attach_masks(model)
    masks.update({"2.weight": (torch.arange(120_000).view(300, 400) % 2).float()})
    conv = masks.stored_weight("0.weight").clone()
    _xavier_fc(model, masks, seed=0)
    assert torch.equal(masks.stored_weight("0.weight"), conv)
    fc = masks.stored_weight("2.weight")
    assert (fc[masks["2.weight"] == 0] == 0).all()
    kept = fc[masks["2.weight"] == 1]
    assert float(kept.detach().std()) == pytest.approx(math.sqrt(2 / (400 + 300)), rel=0.02)


def test_the_plan_draws_from_the_pool_with_the_configured_control():
    config = GraSPConfig(sparsity=0.95, scoring_pool=300, control="reinit")
    assert GraSP(config).plan() == AtInitialisation(0.95, 300, "reinit")


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"temperature": 0}, "temperature"),
        ({"samples_per_class": 0}, "samples_per_class"),
        ({"scoring_pool": 0}, "scoring_pool"),
        ({"sparsity": 1.0}, "sparsity"),
        ({"control": "random"}, "control"),
    ],
)
def test_out_of_range_knobs_are_rejected_with_their_name(bad, field):
    with pytest.raises(ValidationError, match=field):
        GraSPConfig(**bad)


def test_a_short_real_run_reaches_its_target_and_beats_chance(tmp_path, small_data):
    config = TrialConfig(
        model="lenet300",
        data=small_data,
        train=TrainConfig(epochs=4, lr=0.1),
        method="grasp",
        params={"sparsity": 0.9},
        seed=0,
        device="cpu",
    )
    (result,) = run_trial(config, cache_dir=tmp_path)
    assert result.remaining_weights == round(0.1 * 266_200)
    # Chance is 0.1 (10 balanced classes); GraSP at 90% reaches about 0.95 with this recipe.
    assert result.val_acc > 0.5 and result.test_acc > 0.5
