"""Sparsity accounting: Han et al.'s per-layer weights and FLOPs, compression, architecture."""

from __future__ import annotations

import pytest
import torch

from sparsetune.models import build_model
from sparsetune.pruning.masking import attach_masks
from sparsetune.pruning.metrics import architecture_string, layer_macs, sparsity_report

LENET5_MACS = {
    "conv1.weight": 500 * 24 * 24,  # 20 filters of 1x5x5, at 24x24 output positions
    "conv2.weight": 25000 * 8 * 8,  # 50 filters of 20x5x5, at 8x8 (after the first pool)
    "fc1.weight": 400000,
    "fc2.weight": 5000,
}


def lenet5():
    torch.manual_seed(0)
    return build_model("lenet5", (1, 28, 28), 10)


def prune(model, changes):
    """Apply hand-made masks: `changes` maps a weight name to a function editing its mask."""
    masks = attach_masks(model)
    new = {}
    for name, edit in changes.items():
        mask = masks[name].clone()
        edit(mask)
        new[name] = mask
    masks.update(new)
    return masks


def test_lenet5_macs_per_layer():
    assert layer_macs(lenet5(), (1, 28, 28)) == LENET5_MACS


def test_lenet300_macs_equal_its_weights():
    model = build_model("lenet300", (1, 28, 28), 10)
    assert layer_macs(model, (1, 28, 28)) == {
        "fc1.weight": 784 * 300,
        "fc2.weight": 300 * 100,
        "fc3.weight": 100 * 10,
    }


def test_layer_macs_leaves_the_training_mode_alone():
    model = lenet5()
    model.train()
    layer_macs(model, (1, 28, 28))
    assert model.training
    model.eval()
    layer_macs(model, (1, 28, 28))
    assert not model.training


def test_macs_do_not_change_when_masks_are_attached():
    model = lenet5()
    prune(model, {"conv2.weight": lambda m: m.zero_()})
    assert layer_macs(model, (1, 28, 28)) == LENET5_MACS  # dense MACs, the denominator


def test_a_dense_model_reports_everything_left():
    model = lenet5()
    report = sparsity_report(model, layer_macs(model, (1, 28, 28)))
    assert report.total_weights == report.remaining_weights == 430_500
    assert report.compression == 1.0 and report.flops_ratio == 1.0
    assert [layer.name for layer in report.layers] == ["conv1", "conv2", "fc1", "fc2"]
    assert all(layer.remaining_pct == 100.0 for layer in report.layers)


def test_a_half_pruned_layer_keeps_half_its_macs():
    model = lenet5()

    def every_other(mask):
        mask.view(-1)[::2] = 0

    prune(model, {"conv2.weight": every_other})
    report = sparsity_report(model, LENET5_MACS)
    conv2 = report.layers[1]
    assert conv2.name == "conv2" and conv2.shape == (50, 20, 5, 5)
    assert (conv2.weights, conv2.remaining) == (25000, 12500)
    assert conv2.remaining_pct == 50.0
    assert conv2.remaining_macs == LENET5_MACS["conv2.weight"] / 2
    row = conv2.as_row()
    assert row["shape"] == "50x20x5x5"
    assert row["remaining_pct"] == row["flops_remaining_pct"] == 50.0


def test_compression_and_flops_ratio_from_a_hand_made_mask():
    model = lenet5()

    def keep_half(mask):  # conv1: 250 of 500
        mask[10:] = 0

    def keep_tenth(mask):  # fc1: 40,000 of 400,000
        mask[50:] = 0

    prune(model, {"conv1.weight": keep_half, "fc1.weight": keep_tenth})
    report = sparsity_report(model, layer_macs(model, (1, 28, 28)))
    remaining = 250 + 25000 + 40000 + 5000
    assert report.remaining_weights == remaining == 70_250
    assert report.compression == pytest.approx(430_500 / 70_250)  # 6.128x
    # MACs: conv1 288,000 -> 144,000; conv2 1,600,000; fc1 400,000 -> 40,000; fc2 5,000
    assert report.flops_ratio == pytest.approx(1_789_000 / 2_293_000)  # 0.7802
    # fc1's outputs are counted as fc2's inputs with a surviving weight, and fc2 is intact
    assert report.architecture == "10-50-800-500"


def test_everything_pruned_reports_infinite_compression_and_no_flops():
    model = build_model("lenet300", (1, 28, 28), 10)
    masks = attach_masks(model)
    masks.update({name: torch.zeros_like(mask) for name, mask in masks.items()})
    report = sparsity_report(model, layer_macs(model, (1, 28, 28)))
    assert report.compression == float("inf") and report.flops_ratio == 0.0
    assert report.architecture == "0-0-0"


def test_dense_architecture_strings():
    assert architecture_string(lenet5()) == "20-50-800-500"
    assert architecture_string(build_model("lenet300", (1, 28, 28), 10)) == "784-300-100"


def test_a_zeroed_conv2_filter_is_one_channel_less():
    model = lenet5()

    def drop_filter(mask):
        mask[7] = 0

    prune(model, {"conv2.weight": drop_filter})
    assert architecture_string(model) == "20-49-800-500"


def test_a_filter_with_one_weight_left_still_counts():
    model = lenet5()

    def all_but_one(mask):
        mask[7] = 0
        mask[7, 3, 2, 2] = 1

    prune(model, {"conv2.weight": all_but_one})
    assert architecture_string(model) == "20-50-800-500"


def test_zeroed_fc1_input_columns_reduce_the_third_number():
    model = lenet5()

    def drop_inputs(mask):
        mask[:, :100] = 0  # 100 of fc1's 800 inputs

    def drop_rows(mask):
        mask[3] = 0  # one fc1 output row: fc1's inputs all still have a weight elsewhere

    prune(model, {"fc1.weight": drop_inputs})
    assert architecture_string(model) == "20-50-700-500"
    prune(model, {"fc1.weight": drop_rows})
    assert architecture_string(model) == "20-50-700-500"


def test_zeroed_fc2_input_columns_reduce_the_fourth_number():
    model = lenet5()

    def drop_inputs(mask):
        mask[:, 10:15] = 0

    prune(model, {"fc2.weight": drop_inputs})
    assert architecture_string(model) == "20-50-800-495"


def test_lenet300_architecture_counts_input_neurons():
    model = build_model("lenet300", (1, 28, 28), 10)

    def drop(columns):
        def edit(mask):
            mask[:, :columns] = 0

        return edit

    prune(model, {"fc1.weight": drop(84), "fc2.weight": drop(100), "fc3.weight": drop(67)})
    assert architecture_string(model) == "700-200-33"


def test_an_unmasked_model_counts_its_nonzero_weights():
    model = lenet5()
    with torch.no_grad():
        model.conv2.weight[0] = 0
    assert architecture_string(model) == "20-49-800-500"
    report = sparsity_report(model, LENET5_MACS)
    assert report.remaining_weights == 430_500 - 500
