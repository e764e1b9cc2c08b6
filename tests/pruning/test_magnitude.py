"""Magnitude pruning's own numerics, by hand (papers.md section 1, Han et al. 2015)."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from sparsetune.config import TrainConfig, TrialConfig
from sparsetune.pruning.magnitude import MagnitudeConfig, MagnitudePruning
from sparsetune.pruning.masking import attach_masks, prunable_parameters
from sparsetune.pruning.plans import IterativePruning, RoundInfo
from sparsetune.pruning.scoring import sparsity_schedule
from sparsetune.trial import run_trial

STD_ROUND = RoundInfo(index=1, total=1, target_sparsity=None)
FC = [[1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]]


def sample_std(values: list[float]) -> float:
    """The sample standard deviation (n - 1), as torch.std computes it, by hand."""
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def one_layer(weight: list[list[float]]):
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.fill_(10.0)  # large on purpose: biases are never scored nor pruned
    return layer, attach_masks(layer)


class Tiny(nn.Module):
    """A conv layer and two fc layers with weights set by hand; `out` is the output layer."""

    output_layer = "out"

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, kernel_size=(1, 3), bias=False)
        self.fc = nn.Linear(3, 2, bias=False)
        self.out = nn.Linear(2, 2, bias=False)


def tiny():
    model = Tiny()
    with torch.no_grad():
        model.conv.weight.copy_(torch.tensor([[[[0.1, -2.0, 0.5]]]]))
        model.fc.weight.copy_(torch.tensor(FC))
        model.out.weight.copy_(torch.tensor([[0.01, 1.0], [1.0, 0.02]]))
    return model, attach_masks(model)


def prune(model, masks, round_info=STD_ROUND, **params) -> dict[str, list]:
    """One pruning step, applied as a trial applies it; returns the masks as nested lists."""
    method = MagnitudePruning(MagnitudeConfig(**params))
    masks.update(method.compute_masks(model, masks, round_info))
    return {name: mask.int().tolist() for name, mask in masks.items()}


def test_std_criterion_masks_exactly_the_entries_below_c_times_std():
    layer, masks = one_layer(FC)
    std = sample_std([1.0, -2.0, 3.0, -4.0, 5.0, -6.0])  # mean -0.5; sqrt(89.5 / 5) = 4.2308
    assert std == pytest.approx(math.sqrt(17.9))
    for c, expected in [
        (0.2, [[1, 1, 1], [1, 1, 1]]),  # threshold 0.846: every |w| >= 1 stays
        (0.5, [[0, 0, 1], [1, 1, 1]]),  # 2.115: 1 and -2 go
        (0.8, [[0, 0, 0], [1, 1, 1]]),  # 3.385: 3 goes too
        (1.3, [[0, 0, 0], [0, 0, 1]]),  # 5.500: only -6 stays
    ]:
        layer, masks = one_layer(FC)
        assert prune(layer, masks, c_fc=c)["weight"] == expected, f"C = {c}"
        # |w| < C * std is pruned and nothing else: check the rule itself on the stored weights
        kept = torch.tensor(FC).abs() >= c * std
        assert torch.equal(masks["weight"].bool(), kept)
        assert (masks.stored_weight("weight")[~kept] == 0).all()  # committed
        assert torch.equal(masks.stored_weight("weight")[kept], torch.tensor(FC)[kept])
        assert (layer.bias == 10.0).all()


def test_a_weight_exactly_at_the_threshold_is_kept():
    layer = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[-2.0, 0.0, 2.0]]))  # sample std exactly 2
    masks = attach_masks(layer)
    assert prune(layer, masks, c_fc=1.0)["weight"] == [[1, 0, 1]]  # pruned only if |w| < 2


def test_a_second_round_with_a_larger_c_never_unmasks_a_weight():
    layer, masks = one_layer(FC)
    first = prune(layer, masks, c_fc=0.5)
    assert first["weight"] == [[0, 0, 1], [1, 1, 1]]
    # Round two thresholds on the whole layer, pruned zeros included: {0, 0, 3, -4, 5, -6} has
    # mean -1/3 and sample std sqrt(85.33 / 5) = 4.131 by hand; C = 1.0 gives 4.13,
    # so 3 and -4 go; C = 0.9 gives 3.72 and only 3 goes.
    assert sample_std([0.0, 0.0, 3.0, -4.0, 5.0, -6.0]) == pytest.approx(4.1312, abs=1e-4)
    second = prune(layer, masks, c_fc=1.0)
    assert second["weight"] == [[0, 0, 0], [0, 1, 1]]
    # Had the std been over the survivors {3, -4, 5, -6} (5.323), C = 0.9 would cut at 4.79 and
    # take -4 too: the whole layer's std is the documented rule (Distiller's reading of Han).
    layer, masks = one_layer(FC)
    prune(layer, masks, c_fc=0.5)
    assert prune(layer, masks, c_fc=0.9)["weight"] == [[0, 0, 0], [1, 1, 1]]


def test_a_pruned_weight_stays_pruned_whatever_its_stored_value():
    layer, masks = one_layer(FC)
    first = torch.tensor(prune(layer, masks, c_fc=0.5)["weight"]).bool()
    with torch.no_grad():  # put a huge value back under a pruned position
        masks.stored_weight("weight")[0, 0] = 100.0
    for c in (0.6, 1.0, 0.01):  # larger C, and a tiny C that would keep everything
        now = torch.tensor(prune(layer, masks, c_fc=c)["weight"]).bool()
        assert not (now & ~first).any()
        first = now


def test_c_conv_applies_to_conv_weights_and_c_fc_to_fc_weights():
    # conv weights {0.1, -2.0, 0.5}: sample std 1.3429; fc weights: std 4.2308 (above)
    conv_std = sample_std([0.1, -2.0, 0.5])
    assert conv_std == pytest.approx(1.3429, abs=1e-4)
    model, masks = tiny()
    kept = prune(model, masks, c_conv=0.3, c_fc=0.8)  # thresholds 0.403 (conv), 3.385 (fc)
    assert kept["conv.weight"] == [[[[0, 1, 1]]]]
    assert kept["fc.weight"] == [[0, 0, 0], [1, 1, 1]]
    model, masks = tiny()
    kept = prune(model, masks, c_conv=0.8, c_fc=0.3)  # thresholds 1.074 (conv), 1.269 (fc)
    assert kept["conv.weight"] == [[[[0, 1, 0]]]]
    assert kept["fc.weight"] == [[0, 1, 1], [1, 1, 1]]
    # the output layer is an fc layer: {0.01, 1, 1, 0.02}, std 0.5687, threshold 0.171
    assert kept["out.weight"] == [[0, 1], [1, 0]]


def test_layer_c_gives_one_layer_its_own_c_and_the_rest_keep_theirs():
    model, masks = tiny()
    # fc keeps C = 0.8 (threshold 3.385); the output layer gets C = 1.5: 0.5687 * 1.5 = 0.853,
    # so both 1.0s stay (at c_fc = 0.8 too); C = 1.8 cuts at 1.024 and only the conv survives.
    kept = prune(model, masks, c_conv=0.3, c_fc=0.8, layer_c={"out": 1.5})
    assert kept["fc.weight"] == [[0, 0, 0], [1, 1, 1]]
    assert kept["out.weight"] == [[0, 1], [1, 0]]
    model, masks = tiny()
    kept = prune(model, masks, c_conv=0.3, c_fc=0.8, layer_c={"out": 1.8, "conv": 0.8})
    assert kept["out.weight"] == [[0, 0], [0, 0]]
    assert kept["conv.weight"] == [[[[0, 1, 0]]]]  # 0.8 * 1.3429 = 1.074, not c_conv's 0.403
    assert kept["fc.weight"] == [[0, 0, 0], [1, 1, 1]]


def test_layer_sparsity_sets_each_layers_final_target_over_the_rounds():
    model, masks = tiny()
    params = {"criterion": "layerwise", "sparsity": 0.5, "layer_sparsity": {"fc": 5 / 6}}
    # Round 1 of 2: fc at 1 - (1/6)^(1/2) = 0.592 -> keep round(0.408 * 6) = 2 (-6, 5);
    # the others at 1 - 0.5^(1/2) = 0.293 -> conv keeps 2 of 3, out keeps 3 of 4.
    kept = prune(model, masks, RoundInfo(1, 2, 0.293), **params)
    assert kept["fc.weight"] == [[0, 0, 0], [0, 1, 1]]
    assert sum(map(sum, kept["out.weight"])) == 3
    kept = prune(model, masks, RoundInfo(2, 2, 0.5), **params)
    assert kept["fc.weight"] == [[0, 0, 0], [0, 0, 1]]  # 1 of 6 at 5/6
    assert sum(map(sum, kept["out.weight"])) == 2  # 2 of 4 at 0.5
    assert kept["conv.weight"] == [[[[0, 1, 1]]]]  # round(0.5 * 3) = 2: -2.0 and 0.5


@pytest.mark.parametrize("knob", ["layer_c", "layer_sparsity"])
def test_a_per_layer_knob_naming_no_layer_is_rejected_with_the_layers_listed(knob):
    method = MagnitudePruning(MagnitudeConfig(**{knob: {"fc9": 0.5}}))
    with pytest.raises(ValueError, match=rf"^{knob}: unknown layer\(s\) fc9; .* conv, fc, out$"):
        method.check_layers(prunable_parameters(Tiny()))
    known = MagnitudePruning(MagnitudeConfig(**{knob: {"fc": 0.5}}))
    known.check_layers(prunable_parameters(Tiny()))  # a layer it has: no error


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.75, 0.9])
def test_layerwise_target_keeps_round_of_the_fraction_in_every_layer(sparsity):
    model, masks = tiny()
    original = {name: masks.stored_weight(name).abs().clone() for name in masks}
    kept = prune(model, masks, RoundInfo(1, 1, sparsity), criterion="layerwise")
    for name, mask in masks.items():
        assert int(mask.sum()) == round((1 - sparsity) * mask.numel()), name
        survivors, pruned = original[name][mask == 1], original[name][mask == 0]
        if survivors.numel() and pruned.numel():  # the largest magnitudes of its own layer
            assert survivors.min() >= pruned.max(), name
    if sparsity == 0.5:
        assert kept["fc.weight"] == [[0, 0, 0], [1, 1, 1]]  # 6 weights, keep 3: 6, 5, -4
        assert kept["out.weight"] == [[0, 1], [1, 0]]


def test_global_target_uses_one_threshold_across_layers():
    model, masks = tiny()
    # 13 weights, keep round(0.5 * 13) = 6 largest of all: -6, 5, -4, 3, -2.0 (fc), -2.0 (conv);
    # the output layer's 1.0s lose to them although they are the largest in their own layer.
    kept = prune(model, masks, RoundInfo(1, 1, 0.5), criterion="global")
    assert sum(int(m.sum()) for m in masks.values()) == round(0.5 * 13) == 6
    assert kept["fc.weight"] == [[0, 1, 1], [1, 1, 1]]
    assert kept["conv.weight"] == [[[[0, 1, 0]]]]
    assert kept["out.weight"] == [[0, 0], [0, 0]]


def test_global_target_on_a_second_round_counts_the_already_pruned():
    model, masks = tiny()
    prune(model, masks, RoundInfo(1, 2, 0.5), criterion="global")
    # s = 0.75 overall: keep round(0.25 * 13) = 3 (of the 6 survivors): -6, 5, -4
    kept = prune(model, masks, RoundInfo(2, 2, 0.75), criterion="global")
    assert kept["fc.weight"] == [[0, 0, 0], [1, 1, 1]]
    assert sum(int(m.sum()) for m in masks.values()) == 3


@pytest.mark.parametrize("criterion", ["layerwise", "global", "std"])
def test_the_output_layer_can_be_left_unpruned(criterion):
    model, masks = tiny()
    kept = prune(
        model,
        masks,
        RoundInfo(1, 1, None if criterion == "std" else 0.9),
        criterion=criterion,
        c_fc=1.5,
        prune_output_layer=False,
    )
    assert kept["out.weight"] == [[1, 1], [1, 1]]
    assert sum(map(sum, kept["fc.weight"])) < 6  # the other layers were pruned
    model, masks = tiny()
    assert prune(model, masks, RoundInfo(1, 1, 0.9), criterion="layerwise")["out.weight"] != [
        [1, 1],
        [1, 1],
    ]


def test_sparsity_schedule_removes_the_same_fraction_of_survivors_each_round():
    targets = sparsity_schedule(0.9, 3)
    # s_r = 1 - 0.1 ** (r / 3): 1 - 0.46416, 1 - 0.21544, 1 - 0.1
    assert targets == pytest.approx([0.5358411, 0.7845565, 0.9], abs=1e-7)
    assert targets[-1] == pytest.approx(0.9, abs=1e-15)
    survivors = [1.0] + [1 - s for s in targets]
    ratios = [after / before for before, after in zip(survivors, survivors[1:], strict=False)]
    assert ratios == pytest.approx([0.1 ** (1 / 3)] * 3)
    assert sparsity_schedule(0.5, 1) == [0.5]


def test_the_plan_follows_the_criterion():
    plan = MagnitudePruning(MagnitudeConfig(rounds=3, retrain_epochs=4)).plan()
    assert plan == IterativePruning(rounds=3, targets=(None, None, None), retrain_epochs=4)
    plan = MagnitudePruning(MagnitudeConfig(criterion="global", sparsity=0.9, rounds=3)).plan()
    assert plan.targets == pytest.approx(tuple(sparsity_schedule(0.9, 3)))


def test_a_trial_reaches_each_rounds_global_target_exactly(tmp_path, small_data):
    config = TrialConfig(
        model="lenet300",
        data=small_data,
        train=TrainConfig(epochs=1),
        method="magnitude",
        params={"criterion": "global", "sparsity": 0.9, "rounds": 3, "retrain_epochs": 1},
        device="cpu",
    )
    results = run_trial(config, cache_dir=tmp_path)
    assert [r.round for r in results] == [1, 2, 3]
    for result, target in zip(results, sparsity_schedule(0.9, 3), strict=True):
        assert result.total_weights == 266_200
        assert result.remaining_weights == round((1 - target) * 266_200)


def test_the_retrain_recipe_lowers_the_rate_and_uses_l2_at_a_constant_rate():
    dense = TrainConfig(lr=0.2, weight_decay=1e-4, schedule="cosine", optimizer="adam", epochs=9)
    recipe = MagnitudePruning(
        MagnitudeConfig(retrain_lr_factor=0.05, weight_decay=3e-4)
    ).retrain_recipe(dense)
    assert recipe.lr == pytest.approx(0.01)
    assert recipe.weight_decay == 3e-4
    assert recipe.schedule == "constant"
    # everything else is the dense recipe's
    assert recipe.model_dump(exclude={"lr", "weight_decay", "schedule"}) == dense.model_dump(
        exclude={"lr", "weight_decay", "schedule"}
    )


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"c_fc": -1.0}, "c_fc"),
        ({"c_conv": 0}, "c_conv"),
        ({"sparsity": 1.0}, "sparsity"),
        ({"sparsity": 0}, "sparsity"),
        ({"rounds": 0}, "rounds"),
        ({"retrain_epochs": -1}, "retrain_epochs"),
        ({"retrain_lr_factor": 2.0}, "retrain_lr_factor"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"criterion": "l1"}, "criterion"),
    ],
)
def test_out_of_range_knobs_are_rejected_with_their_name(bad, field, small_data):
    with pytest.raises(ValidationError, match=field):
        MagnitudeConfig(**bad)
    with pytest.raises(ValidationError, match=field):
        TrialConfig(model="lenet300", data=small_data, method="magnitude", params=bad)


def test_configs_are_frozen():
    config = MagnitudeConfig()
    with pytest.raises(ValidationError):
        config.c_fc = 2.0
