"""Prefix-consistent schedules: round r of a trial is exactly what the config that
`round_equivalent(r)` names reports as its last round. The search tells Optuna those rounds as
trials of that config (search/rounds.py), so this claim is what makes it honest: each case runs
both trials for real and compares every metric and the ticket's masks."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from trial_helpers import lenet300_trial

from sparsetune.config import TrialConfig
from sparsetune.pruning import METHODS
from sparsetune.trial import run_trial

CASES = [
    ("magnitude", {"criterion": "std", "c_fc": 1.0, "rounds": 3, "retrain_epochs": 1}, 2),
    ("magnitude", {"criterion": "global", "sparsity": 0.9, "rounds": 3, "retrain_epochs": 1}, 2),
    ("magnitude", {"criterion": "layerwise", "sparsity": 0.8, "rounds": 2, "retrain_epochs": 1}, 1),
    (
        "lottery",
        {"prune_fraction": 0.4, "rounds": 3, "rewind_iteration": 0, "train_epochs": 1},
        2,
    ),
    ("lottery", {"prune_fraction": 0.3, "rounds": 2, "criterion": "global", "train_epochs": 1}, 1),
]


def config(method: str, params: dict, data) -> TrialConfig:
    return lenet300_trial(method, params, data, seed=3)


def masks(result) -> dict[str, torch.Tensor]:
    ticket = load_file(result.ticket_path)
    return {k: v for k, v in ticket.items() if k.startswith("mask.")}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One dense stage for every case (same model, data, recipe and seed)."""
    return tmp_path_factory.mktemp("cache")


@pytest.mark.parametrize(("method", "params", "round_index"), CASES)
def test_a_round_is_the_last_round_of_its_equivalent_config(
    method, params, round_index, small_data, cache, tmp_path
):
    long = run_trial(config(method, params, small_data), cache_dir=cache, workdir=tmp_path / "a")
    instance = METHODS[method](config(method, params, small_data).method_config())
    overrides = instance.round_equivalent(round_index)
    assert overrides is not None and overrides["rounds"] == round_index
    short = run_trial(
        config(method, params | overrides, small_data),
        cache_dir=cache,
        workdir=tmp_path / "b",
    )
    assert len(short) == round_index
    ours, theirs = long[round_index - 1], short[-1]
    assert ours.round == theirs.round == round_index
    for name in ("val_acc", "val_loss", "test_acc", "compression", "flops_ratio"):
        assert getattr(ours, name) == pytest.approx(getattr(theirs, name), rel=1e-6, abs=1e-7), name
    ours_masks, theirs_masks = masks(ours), masks(theirs)
    assert ours_masks.keys() == theirs_masks.keys()
    for name, mask in ours_masks.items():
        assert torch.equal(mask, theirs_masks[name]), name


@pytest.mark.parametrize("method", ["l0", "sensitivity", "snip", "grasp", "random", "dense"])
def test_methods_without_a_prefix_consistent_schedule_name_no_equivalent(method, small_data):
    """Their rounds (where they have several) depend on the whole schedule: no config with fewer
    rounds gives them, so the search tells them with the trial's own parameters instead."""
    instance = METHODS[method](config(method, {}, small_data).method_config())
    assert instance.round_equivalent(1) is None


def test_per_layer_sparsity_targets_have_no_single_equivalent(small_data):
    params = {"criterion": "layerwise", "sparsity": 0.8, "layer_sparsity": {"fc3": 0.5}}
    instance = METHODS["magnitude"](config("magnitude", params, small_data).method_config())
    assert instance.round_equivalent(1) is None
