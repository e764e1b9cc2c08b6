"""The mask parametrization: attach, update in place, never revive, commit, account."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from sparsetune.pruning.masking import (
    attach_masks,
    find_masks,
    prunable_parameters,
    squashed_state_dict,
)


def model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3),  # 18 weights
        nn.BatchNorm2d(2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * 4 * 4, 3),  # 96 weights
    )


def test_masks_go_on_every_conv_and_linear_weight_and_nothing_else():
    net = model()
    masks = attach_masks(net)
    assert list(masks) == ["0.weight", "4.weight"] == prunable_parameters(net)
    for name, mask in masks.items():
        stored = masks.stored_weight(name)
        assert mask.shape == stored.shape and mask.dtype == stored.dtype
        assert (mask == 1).all()
    for index in (0, 4):
        assert parametrize.is_parametrized(net[index], "weight")
        assert not parametrize.is_parametrized(net[index], "bias")
    assert not parametrize.is_parametrized(net[1])  # BatchNorm's weight is not pruned
    names = {name for name, _ in net.named_parameters()}
    assert {"0.bias", "1.weight", "1.bias", "4.bias"} <= names
    assert {"0.parametrizations.weight.original", "4.parametrizations.weight.original"} <= names


def test_attaching_twice_keeps_the_first_masks():
    net = model()
    masks = attach_masks(net)
    masks.update({"4.weight": torch.zeros_like(masks["4.weight"])})
    again = attach_masks(net)
    assert list(again) == list(masks)
    assert again["4.weight"] is masks["4.weight"]
    assert len(net[4].parametrizations.weight) == 1  # no second parametrization stacked


def test_the_forward_uses_stored_weight_times_mask():
    net = model()
    masks = attach_masks(net)
    keep = torch.ones_like(masks["4.weight"])
    keep[:, ::2] = 0
    masks.update({"4.weight": keep}, commit=False)
    assert torch.equal(net[4].weight, masks.stored_weight("4.weight") * keep)
    assert torch.equal(masks.effective_weight("4.weight"), net[4].weight)


def test_update_is_in_place():
    net = model()
    masks = attach_masks(net)
    buffer = masks["4.weight"]
    pointer = buffer.data_ptr()
    new = torch.ones_like(buffer, dtype=torch.bool)
    new[0] = False
    masks.update({"4.weight": new})
    assert masks["4.weight"] is buffer and buffer.data_ptr() == pointer
    assert net[4].parametrizations.weight[0].mask is buffer  # the module holds the same tensor
    assert (buffer[0] == 0).all() and (buffer[1:] == 1).all()
    assert buffer.dtype == torch.float32  # a boolean request, stored as the weight's dtype


def test_update_intersects_and_never_revives():
    net = model()
    masks = attach_masks(net)
    first = torch.ones_like(masks["4.weight"])
    first[0] = 0
    masks.update({"4.weight": first})
    second = torch.ones_like(first)  # asks to bring row 0 back and to drop row 1
    second[1] = 0
    masks.update({"4.weight": second})
    assert masks["4.weight"][:2].eq(0).all() and masks["4.weight"][2].eq(1).all()
    masks.update({"4.weight": torch.ones_like(first)})  # asks to revive everything
    assert int(masks["4.weight"].sum()) == 32


def test_a_nonzero_score_counts_as_keep():
    masks = attach_masks(model())
    scores = torch.zeros_like(masks["0.weight"])
    scores.view(-1)[:5] = torch.tensor([0.5, -2.0, 3.0, 1e-9, 7.0])
    masks.update({"0.weight": scores})
    assert int(masks["0.weight"].sum()) == 5
    assert ((masks["0.weight"] == 0) | (masks["0.weight"] == 1)).all()


def test_shape_mismatch_is_rejected_naming_the_tensor():
    masks = attach_masks(model())
    before = masks["4.weight"].clone()
    with pytest.raises(ValueError, match=r"4\.weight.*\(3, 3\).*\(3, 32\)"):
        masks.update({"4.weight": torch.ones(3, 3)})
    assert torch.equal(masks["4.weight"], before)


def test_commit_zeroes_the_stored_weights_at_pruned_positions_only():
    net = model()
    masks = attach_masks(net)
    before = masks.stored_weight("0.weight").clone()
    assert (before != 0).all()
    keep = torch.ones_like(masks["0.weight"])
    keep[0] = 0
    masks.update({"0.weight": keep}, commit=False)
    assert torch.equal(masks.stored_weight("0.weight"), before)  # not yet
    assert (net[0].weight[0] == 0).all()  # though the forward already sees the mask
    masks.commit()
    stored = masks.stored_weight("0.weight")
    assert (stored[0] == 0).all()
    assert torch.equal(stored[1], before[1])
    masks.update({"0.weight": keep})  # update commits by default
    assert (masks.stored_weight("0.weight")[0] == 0).all()


def test_gradients_of_pruned_weights_are_exactly_zero():
    net = model()
    masks = attach_masks(net)
    keep = torch.rand(masks["4.weight"].shape, generator=torch.Generator().manual_seed(0)) > 0.5
    masks.update({"4.weight": keep})
    net(torch.randn(4, 1, 6, 6)).square().sum().backward()
    grad = masks.stored_weight("4.weight").grad
    assert (grad[~keep] == 0).all() and (grad[keep] != 0).any()


def test_compression_and_counts_on_a_hand_made_mask():
    net = model()
    masks = attach_masks(net)
    conv = torch.ones_like(masks["0.weight"])
    conv.view(-1)[:9] = 0  # 9 of 18 left
    fc = torch.zeros_like(masks["4.weight"])
    fc[0, :6] = 1  # 6 of 96 left
    masks.update({"0.weight": conv, "4.weight": fc})
    assert masks.counts() == {"0.weight": (9, 18), "4.weight": (6, 96)}
    assert masks.compression() == pytest.approx(114 / 15)  # 7.6x: biases and BN not counted
    masks.update({"0.weight": torch.zeros_like(conv), "4.weight": torch.zeros_like(fc)})
    assert masks.compression() == float("inf")


def test_state_is_a_boolean_copy():
    masks = attach_masks(model())
    state = masks.state()
    assert all(value.dtype == torch.bool for value in state.values())
    masks.update({"4.weight": torch.zeros_like(masks["4.weight"])})
    assert state["4.weight"].all()  # not a view of the live mask


def test_find_masks_after_deepcopy_sees_the_copys_own_masks():
    net = model()
    masks = attach_masks(net)
    masks.update({"4.weight": torch.zeros_like(masks["4.weight"])})
    clone = copy.deepcopy(net)
    found = find_masks(clone)
    assert found is not None and list(found) == list(masks)
    assert (found["4.weight"] == 0).all() and (found["0.weight"] == 1).all()
    assert found.model is clone
    found["4.weight"].fill_(1)  # the copy's masks are its own
    assert (masks["4.weight"] == 0).all()
    assert find_masks(model()) is None


def test_squashed_state_dict_has_plain_keys_and_masked_values():
    net = model()
    masks = attach_masks(net)
    keep = torch.ones_like(masks["4.weight"])
    keep[1] = 0
    masks.update({"4.weight": keep}, commit=False)
    state = squashed_state_dict(net)
    assert state.keys() == model().state_dict().keys()
    assert (state["4.weight"][1] == 0).all()
    assert torch.equal(state["4.weight"][0], masks.stored_weight("4.weight")[0])
    assert (masks.stored_weight("4.weight")[1] != 0).all()  # export leaves the model alone
