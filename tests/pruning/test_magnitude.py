"""Magnitude pruning's own numerics, by hand (papers.md section 1)."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from sparsetune.config import TrainConfig
from sparsetune.pruning.magnitude import MagnitudeConfig, MagnitudePruning
from sparsetune.pruning.masking import attach_masks
from sparsetune.pruning.schedule import RoundInfo
from sparsetune.pruning.scoring import sparsity_schedule

STD_ROUND = RoundInfo(index=1, total=1, target_sparsity=None)


class Tiny(nn.Module):
    """A conv layer and two fc layers with weights set by hand."""

    output_layer = "out"

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, kernel_size=(1, 3), bias=False)
        self.fc = nn.Linear(3, 2, bias=False)
        self.out = nn.Linear(2, 2, bias=False)


def tiny(fc_weight: list[list[float]]) -> tuple[Tiny, object]:
    model = Tiny()
    with torch.no_grad():
        model.conv.weight.copy_(torch.tensor([[[[0.1, -2.0, 0.5]]]]))
        model.fc.weight.copy_(torch.tensor(fc_weight))
        model.out.weight.copy_(torch.tensor([[0.01, 1.0], [1.0, 0.02]]))
    return model, attach_masks(model)


def prune(model, masks, round_info=STD_ROUND, **params):
    method = MagnitudePruning(MagnitudeConfig(**params))
    masks.update(method.compute_masks(model, masks, round_info))
    return {name: mask.clone() for name, mask in masks.items()}


def test_std_criterion_masks_exactly_the_entries_below_c_times_std():
    weights = [[1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]]
    model, masks = tiny(weights)
    # std of {1,-2,3,-4,5,-6} (sample std, as torch.std): mean -0.5, squared deviations
    # 2.25 + 2.25 + 12.25 + 12.25 + 30.25 + 30.25 = 89.5, / 5 = 17.9
    std = (89.5 / 5) ** 0.5
    assert torch.tensor(weights).std().item() == pytest.approx(std)
    kept = prune(model, masks, c_fc=0.8, c_conv=1.0)
    # threshold 0.8 * 4.2308 = 3.385: keeps |w| >= 3.385
    assert kept["fc.weight"].tolist() == [[0, 0, 0], [1, 1, 1]]


def test_a_second_round_with_a_larger_c_never_unmasks():
    model, masks = tiny([[1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]])
    first = prune(model, masks, c_fc=0.5)
    # the survivors' std decides round two; put a pruned weight back to a large stored value
    # to check that no rule revives it
    with torch.no_grad():
        masks.stored_weight("fc.weight")[0, 0] = 100.0
    second = prune(model, masks, c_fc=1.5)
    assert not (second["fc.weight"].bool() & ~first["fc.weight"].bool()).any()
    assert second["fc.weight"].sum() < first["fc.weight"].sum()


def test_second_round_threshold_uses_the_survivors_std():
    model, masks = tiny([[1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]])
    first = prune(model, masks, c_fc=0.5)  # threshold 0.5 * 4.2308 = 2.115
    assert first["fc.weight"].tolist() == [[0, 0, 1], [1, 1, 1]]
    # survivors {3,-4,5,-6}: mean -0.5, squared deviations 12.25*2 + 30.25*2 = 85, / 3
    threshold = 0.9 * (85 / 3) ** 0.5  # 4.79: of the survivors only 5 and -6 stay
    kept = prune(model, masks, c_fc=0.9)
    assert kept["fc.weight"].tolist() == [[0, 0, 0], [0, 1, 1]]
    assert 4.0 < threshold < 5.0


def test_c_conv_applies_to_conv_and_c_fc_to_fc_layers():
    model, masks = tiny([[1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]])
    kept = prune(model, masks, c_conv=0.01, c_fc=5.0)
    assert kept["conv.weight"].sum() == 3  # a tiny C keeps every conv weight
    assert kept["fc.weight"].sum() == 0  # a huge C removes every fc weight


def test_layerwise_target_keeps_the_same_fraction_in_every_layer():
    model, masks = tiny([[1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]])
    kept = prune(model, masks, RoundInfo(1, 1, 0.5), criterion="layerwise")
    assert kept["fc.weight"].tolist() == [[0, 0, 0], [1, 1, 1]]
    assert kept["conv.weight"].sum() == round(0.5 * 3)
    assert kept["out.weight"].tolist() == [[0, 1], [1, 0]]


def test_global_target_uses_one_threshold_across_layers():
    model, masks = tiny([[1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]])
    # 13 weights; keep round(0.5 * 13) = 6 (topk over all |w|): 6, 5, -4, 3, -2, -2.0
    kept = prune(model, masks, RoundInfo(1, 1, 0.5), criterion="global")
    total = sum(int(m.sum()) for m in kept.values())
    assert total == round(0.5 * 13)
    assert kept["fc.weight"].sum() == 5  # the layer of large weights keeps most
    assert kept["out.weight"].sum() == 0  # weights of 1.0 lose to the fc layer's 2..6


def test_output_layer_can_be_left_unpruned():
    model, masks = tiny([[1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]])
    kept = prune(
        model, masks, RoundInfo(1, 1, 0.9), criterion="layerwise", prune_output_layer=False
    )
    assert kept["out.weight"].sum() == 4
    assert kept["fc.weight"].sum() == round(0.1 * 6)


def test_sparsity_schedule_removes_the_same_fraction_of_survivors_each_round():
    targets = sparsity_schedule(0.875, 3)
    assert targets == pytest.approx([0.5, 0.75, 0.875])


def test_schedule_follows_the_criterion():
    assert MagnitudePruning(MagnitudeConfig(rounds=3)).schedule().targets == (None, None, None)
    schedule = MagnitudePruning(
        MagnitudeConfig(criterion="global", sparsity=0.75, rounds=2)
    ).schedule()
    assert schedule.targets == pytest.approx((0.5, 0.75))


def test_retraining_lowers_the_rate_and_uses_l2():
    dense = TrainConfig(lr=0.1, weight_decay=1e-4, schedule="cosine")
    recipe = MagnitudePruning(
        MagnitudeConfig(retrain_lr_factor=0.1, weight_decay=5e-4)
    ).retrain_recipe(dense)
    assert recipe.lr == pytest.approx(0.01)
    assert recipe.weight_decay == 5e-4
    assert recipe.schedule == "constant"
    assert recipe.optimizer == dense.optimizer


@pytest.mark.parametrize(
    "bad",
    [
        {"c_fc": -1.0},
        {"c_conv": 0},
        {"sparsity": 1.0},
        {"sparsity": 0},
        {"rounds": 0},
        {"retrain_lr_factor": 2.0},
        {"criterion": "l1"},
    ],
)
def test_out_of_range_knobs_are_rejected(bad):
    with pytest.raises(ValidationError):
        MagnitudeConfig(**bad)
