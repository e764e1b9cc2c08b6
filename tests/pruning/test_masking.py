"""The mask parametrization: attach, update in place, never revive, commit."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sparsetune.pruning.masking import attach_masks, find_masks, prunable_parameters


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))


def test_masks_go_on_every_conv_and_linear_weight_and_no_bias():
    net = model()
    masks = attach_masks(net)
    assert list(masks) == ["0.weight", "2.weight"] == prunable_parameters(net)
    assert all(mask.dtype == torch.float32 and (mask == 1).all() for mask in masks.values())
    assert not any("bias" in name for name in masks)
    assert attach_masks(net) is not masks and list(attach_masks(net)) == list(masks)  # idempotent


def test_update_is_in_place_intersects_and_commits():
    net = model()
    masks = attach_masks(net)
    buffer = masks["2.weight"]
    pointer = buffer.data_ptr()
    first = torch.ones_like(buffer)
    first[0] = 0
    masks.update({"2.weight": first})
    assert masks["2.weight"].data_ptr() == pointer
    assert (masks.stored_weight("2.weight")[0] == 0).all()  # committed
    second = torch.ones_like(buffer)  # asks to revive row 0
    second[1] = 0
    masks.update({"2.weight": second})
    assert (masks["2.weight"][0] == 0).all() and (masks["2.weight"][1] == 0).all()
    assert (masks["2.weight"][2] == 1).all()


def test_update_without_commit_leaves_stored_weights():
    net = model()
    masks = attach_masks(net)
    before = masks.stored_weight("0.weight").clone()
    masks.update({"0.weight": torch.zeros_like(masks["0.weight"])}, commit=False)
    assert torch.equal(masks.stored_weight("0.weight"), before)
    assert (net[0].weight == 0).all()  # the forward already sees the mask


def test_shape_mismatch_is_rejected():
    masks = attach_masks(model())
    with pytest.raises(ValueError, match="2.weight"):
        masks.update({"2.weight": torch.ones(3, 3)})


def test_compression_and_counts():
    net = model()
    masks = attach_masks(net)
    conv = torch.ones_like(masks["0.weight"])
    conv.view(-1)[:9] = 0
    masks.update({"0.weight": conv})
    assert masks.counts() == {"0.weight": (9, 18), "2.weight": (96, 96)}
    assert masks.compression() == pytest.approx(114 / 105)


def test_find_masks_after_deepcopy_sees_the_copy():
    net = model()
    masks = attach_masks(net)
    masks.update({"2.weight": torch.zeros_like(masks["2.weight"])})
    clone = copy.deepcopy(net)
    found = find_masks(clone)
    assert found is not None and list(found) == list(masks)
    assert (found["2.weight"] == 0).all()
    found["2.weight"].fill_(1)  # the copy's masks are its own
    assert (masks["2.weight"] == 0).all()
    assert find_masks(model()) is None
