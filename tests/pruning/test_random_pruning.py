"""Random pruning at initialisation, the control baseline (papers.md section 7)."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from sparsetune.config import TrainConfig, TrialConfig
from sparsetune.pruning.masking import attach_masks
from sparsetune.pruning.plans import AtInitialisation, RoundInfo
from sparsetune.pruning.random_pruning import RandomPruning, RandomPruningConfig
from sparsetune.trial import run_trial

SIZES = {"0.weight": 40 * 30, "1.weight": 30 * 20, "2.weight": 20 * 7}  # 1200 + 600 + 140


def model_and_masks():
    model = nn.Sequential(nn.Linear(40, 30), nn.Linear(30, 20), nn.Linear(20, 7))
    return model, attach_masks(model)


def random_masks(distribution: str, sparsity: float, seed: int, model=None, masks=None):
    if model is None:
        model, masks = model_and_masks()
    method = RandomPruning(RandomPruningConfig(sparsity=sparsity, distribution=distribution))
    # The trial's seed, as the driver passes it.
    new = method.compute_masks(model, masks, RoundInfo(1, 1, sparsity, seed=seed))
    return {name: mask.bool() for name, mask in new.items()}


@pytest.mark.parametrize("sparsity", [0.5, 0.8, 0.95])
def test_layerwise_keeps_the_ratio_exactly_in_every_layer(sparsity):
    masks = random_masks("layerwise", sparsity, seed=0)
    for name, size in SIZES.items():
        assert int(masks[name].sum()) == round((1 - sparsity) * size), name


@pytest.mark.parametrize("sparsity", [0.5, 0.8, 0.95])
def test_global_keeps_the_ratio_exactly_overall_and_only_roughly_per_layer(sparsity):
    masks = random_masks("global", sparsity, seed=0)
    assert sum(int(m.sum()) for m in masks.values()) == round((1 - sparsity) * sum(SIZES.values()))
    kept = {name: int(masks[name].sum()) for name in SIZES}
    # Each layer keeps (1 - s) of its weights in expectation: hypergeometric, within 5 std.
    total = sum(SIZES.values())
    for name, size in SIZES.items():
        p = 1 - sparsity
        std = (size * p * (1 - p) * (total - size) / (total - 1)) ** 0.5
        assert abs(kept[name] - p * size) <= 5 * std + 1, name
    # and the per-layer counts are not the layer-wise rule's (with these sizes, at these ratios)
    assert kept != {name: round((1 - sparsity) * size) for name, size in SIZES.items()}


@pytest.mark.parametrize("distribution", ["layerwise", "global"])
def test_the_same_seed_gives_the_same_mask_and_another_seed_another(distribution):
    first = random_masks(distribution, 0.7, seed=11)
    again = random_masks(distribution, 0.7, seed=11)
    other = random_masks(distribution, 0.7, seed=12)
    for name in SIZES:
        assert torch.equal(first[name], again[name])
    assert any(not torch.equal(first[name], other[name]) for name in SIZES)


@pytest.mark.parametrize("distribution", ["layerwise", "global"])
def test_positions_are_spread_uniformly(distribution):
    # Over many seeds, every position of a layer survives about (1 - s) of the time.
    model, masks = model_and_masks()
    counts = torch.zeros(30, 40)
    draws = 200
    for seed in range(draws):
        counts += random_masks(distribution, 0.5, seed, model, masks)["0.weight"].float()
    frequency = counts / draws
    assert float(frequency.mean()) == pytest.approx(0.5, abs=0.02)
    assert float(frequency.min()) > 0.3 and float(frequency.max()) < 0.7  # 200 draws: std 0.035


@pytest.mark.parametrize("distribution", ["layerwise", "global"])
def test_already_pruned_weights_stay_pruned(distribution):
    model, masks = model_and_masks()
    half = torch.ones(30, 40)
    half[:, :20] = 0
    masks.update({"0.weight": half})
    new = random_masks(distribution, 0.75, seed=0, model=model, masks=masks)
    assert not new["0.weight"][:, :20].any()
    if distribution == "layerwise":  # 300 of 1200, all from the 600 survivors
        assert int(new["0.weight"].sum()) == 300


def test_the_plan_is_pruning_at_initialisation_without_a_scoring_batch():
    method = RandomPruning(RandomPruningConfig(sparsity=0.6, control="shuffle"))
    assert method.plan() == AtInitialisation(0.6, 0, "shuffle")


@pytest.mark.parametrize(
    "bad, field",
    [({"distribution": "per_layer"}, "distribution"), ({"sparsity": 1.5}, "sparsity")],
)
def test_out_of_range_knobs_are_rejected_with_their_name(bad, field):
    with pytest.raises(ValidationError, match=field):
        RandomPruningConfig(**bad)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One dense stage shared by both real runs (same model, data, recipe and seed)."""
    return tmp_path_factory.mktemp("dense-cache")


@pytest.mark.parametrize("distribution", ["layerwise", "global"])
def test_a_short_real_run_reaches_its_target_and_beats_chance(distribution, cache, small_data):
    # 50%: at 90% a random LeNet-300-100 (output layer pruned too) barely trains in 4 epochs,
    # which is the point of the baseline, but not a check that the sparse net trains at all.
    config = TrialConfig(
        model="lenet300",
        data=small_data,
        train=TrainConfig(epochs=4, lr=0.1),
        method="random",
        params={"sparsity": 0.5, "distribution": distribution},
        seed=0,
        device="cpu",
    )
    (result,) = run_trial(config, cache_dir=cache)
    assert result.remaining_weights == round(0.5 * 266_200)
    assert result.val_acc > 0.3 and result.test_acc > 0.3  # chance is 0.1 (10 classes)
