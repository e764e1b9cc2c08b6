"""Sparsity accounting: Han et al.'s per-layer weights and FLOPs, compression, architecture."""

from __future__ import annotations

import pytest
import torch

from sparsetune.models import build_model
from sparsetune.pruning.masking import attach_masks
from sparsetune.train.metrics import architecture_string, layer_macs, sparsity_report


def lenet5():
    torch.manual_seed(0)
    return build_model("lenet5", (1, 28, 28), 10)


def test_lenet5_macs_per_layer():
    macs = layer_macs(lenet5(), (1, 28, 28))
    assert macs == {
        "conv1.weight": 500 * 24 * 24,
        "conv2.weight": 25000 * 8 * 8,
        "fc1.weight": 400000,
        "fc2.weight": 5000,
    }


def test_dense_report_and_architecture_strings():
    model = lenet5()
    report = sparsity_report(model, layer_macs(model, (1, 28, 28)))
    assert report.total_weights == 430500 and report.compression == 1.0
    assert report.flops_ratio == 1.0
    assert report.architecture == "20-50-800-500"
    assert architecture_string(build_model("lenet300", (1, 28, 28), 10)) == "784-300-100"


def test_half_pruned_layer_keeps_half_its_flops_and_compression_counts_all_layers():
    model = lenet5()
    macs = layer_macs(model, (1, 28, 28))
    masks = attach_masks(model)
    half = torch.zeros_like(masks["conv2.weight"]).flatten()
    half[::2] = 1
    masks.update({"conv2.weight": half.view_as(masks["conv2.weight"])})
    report = sparsity_report(model, macs)
    conv2 = next(layer for layer in report.layers if layer.name == "conv2")
    assert conv2.remaining == 12500 and conv2.remaining_pct == 50.0
    assert conv2.remaining_macs == macs["conv2.weight"] / 2
    assert report.compression == pytest.approx(430500 / (430500 - 12500))
    total_macs = sum(macs.values())
    assert report.flops_ratio == pytest.approx(1 - macs["conv2.weight"] / 2 / total_macs)
    assert report.layers[1].as_row()["shape"] == "50x20x5x5"


def test_architecture_counts_surviving_channels_and_input_neurons():
    model = lenet5()
    masks = attach_masks(model)
    conv2 = masks["conv2.weight"].clone()
    conv2[7] = 0  # one output filter gone
    fc1 = masks["fc1.weight"].clone()
    fc1[:, :100] = 0  # 100 input neurons of fc1 gone
    fc2 = masks["fc2.weight"].clone()
    fc2[:, 10:15] = 0  # 5 inputs of fc2 (outputs of fc1) gone
    masks.update({"conv2.weight": conv2, "fc1.weight": fc1, "fc2.weight": fc2})
    assert architecture_string(model) == "20-49-700-495"


def test_everything_pruned_reports_infinite_compression():
    model = build_model("lenet300", (1, 28, 28), 10)
    masks = attach_masks(model)
    masks.update({name: torch.zeros_like(mask) for name, mask in masks.items()})
    report = sparsity_report(model, layer_macs(model, (1, 28, 28)))
    assert report.compression == float("inf") and report.flops_ratio == 0.0
