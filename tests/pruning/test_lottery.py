"""Lottery tickets' own numerics (papers.md section 4): the exact rewind to theta_j, the rate per
round and layer group, and the controls."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from pydantic import ValidationError

from sparsetune.config import TrainConfig, TrialConfig
from sparsetune.pruning.lottery import LotteryConfig
from sparsetune.trial import TrialContext, start_trial

# 1,000 training examples in batches of 8: 125 steps, so the dense run passes iteration 100.
DENSE = TrainConfig(epochs=1, batch_size=8, lr=0.02)
HIDDEN = ("fc1.weight", "fc2.weight")
OUTPUT = "fc3.weight"


@dataclass
class RoundStart:
    weights: dict[str, torch.Tensor]  # effective weights the round's training starts from
    masks: dict[str, torch.Tensor]  # the round's mask


def lottery_trial(small_data, tmp_path, **params) -> TrialContext:
    config = TrialConfig(
        model="lenet300",
        data=small_data,
        train=DENSE,
        method="lottery",
        params={"train_epochs": 1, **params},
        seed=3,
        device="cpu",
    )
    return start_trial(config, cache_dir=tmp_path / "cache")


def run_recording_starts(trial: TrialContext) -> list[RoundStart]:
    """Run the plan, keeping what each round's training starts from (a spy on `retrain`)."""
    starts = []
    train = trial.retrain

    def recording_retrain(epochs):
        weights = {n: trial.masks.effective_weight(n).detach().clone() for n in trial.masks}
        starts.append(RoundStart(weights, trial.masks.state()))
        train(epochs)

    trial.retrain = recording_retrain
    trial.run()
    return starts


@pytest.mark.parametrize("rewind_iteration", [0, 100])
def test_survivors_restart_from_theta_j_exactly(small_data, tmp_path, rewind_iteration):
    trial = lottery_trial(
        small_data, tmp_path, rounds=2, prune_fraction=0.3, rewind_iteration=rewind_iteration
    )
    theta_j = trial.dense.checkpoint.weights_at(rewind_iteration)
    if rewind_iteration:  # theta_100 is a real checkpoint of the dense run, not theta_0
        assert not torch.equal(theta_j["fc1.weight"], trial.dense.checkpoint.init["fc1.weight"])
    starts = run_recording_starts(trial)
    assert len(starts) == 2
    for start in starts:
        for name, weight in start.weights.items():
            kept = start.masks[name]
            assert torch.equal(weight[kept], theta_j[name][kept])
            assert not weight[~kept].any()
    # Round 2 prunes within round 1's mask.
    for name in HIDDEN:
        assert not (starts[1].masks[name] & ~starts[0].masks[name]).any()


def test_each_round_cuts_p_of_the_survivors_and_the_output_layer_at_half_rate(small_data, tmp_path):
    trial = lottery_trial(small_data, tmp_path, rounds=3, prune_fraction=0.4)
    starts = run_recording_starts(trial)
    for index, start in enumerate(starts, start=1):
        for name in HIDDEN:
            size = start.masks[name].numel()
            assert int(start.masks[name].sum()) == round(0.6**index * size)
        size = start.masks[OUTPUT].numel()
        assert int(start.masks[OUTPUT].sum()) == round(0.8**index * size)


def test_global_criterion_uses_one_threshold_across_hidden_layers(small_data, tmp_path):
    trial = lottery_trial(
        small_data, tmp_path, rounds=1, prune_fraction=0.5, criterion="global", output_rate="none"
    )
    trained = {n: trial.masks.effective_weight(n).detach().abs().clone() for n in HIDDEN}
    (start,) = run_recording_starts(trial)
    kept = torch.cat([trained[n][start.masks[n]] for n in HIDDEN])
    cut = torch.cat([trained[n][~start.masks[n]] for n in HIDDEN])
    assert kept.min() >= cut.max()
    total = sum(trained[n].numel() for n in HIDDEN)
    assert len(kept) == round(0.5 * total)
    assert start.masks[OUTPUT].all()  # output_rate: none leaves the output layer dense
    # Layer rates differ under one global threshold (fc1's weights are smaller at init scale).
    rates = [float(start.masks[n].float().mean()) for n in HIDDEN]
    assert rates[0] != pytest.approx(rates[1], abs=0.01)


def test_reinit_control_keeps_the_mask_and_draws_new_weights(small_data, tmp_path):
    ticket = run_recording_starts(lottery_trial(small_data, tmp_path / "a", rounds=1))[0]
    control = run_recording_starts(
        lottery_trial(small_data, tmp_path / "b", rounds=1, control="reinit")
    )[0]
    for name in ticket.masks:
        assert torch.equal(control.masks[name], ticket.masks[name])
        kept = ticket.masks[name]
        assert not torch.equal(control.weights[name][kept], ticket.weights[name][kept])
        assert not control.weights[name][~kept].any()
        # Drawn from the same initialiser: the same scale as theta_0.
        ratio = control.weights[name][kept].std() / ticket.weights[name][kept].std()
        assert 0.8 < float(ratio) < 1.25


def test_shuffle_control_keeps_counts_moves_positions_and_stays_nested(small_data, tmp_path):
    ticket = run_recording_starts(lottery_trial(small_data, tmp_path / "a", rounds=2))
    control = run_recording_starts(
        lottery_trial(small_data, tmp_path / "b", rounds=2, control="shuffle")
    )
    theta_0 = None
    for ours, theirs in zip(control, ticket, strict=True):
        for name in ours.masks:
            assert int(ours.masks[name].sum()) == int(theirs.masks[name].sum())
            assert not torch.equal(ours.masks[name], theirs.masks[name])
    for name in control[0].masks:
        assert not (control[1].masks[name] & ~control[0].masks[name]).any()
    # Survivors of the random mask start from theta_0 too.
    trial = lottery_trial(small_data, tmp_path / "b", rounds=2, control="shuffle")
    theta_0 = trial.dense.checkpoint.init
    for name, weight in control[0].weights.items():
        kept = control[0].masks[name]
        assert torch.equal(weight[kept], theta_0[name][kept])


def test_a_rewind_point_the_dense_run_never_reached_is_a_clear_error(small_data, tmp_path):
    trial = lottery_trial(small_data, tmp_path, rounds=1, rewind_iteration=1000)
    with pytest.raises(ValueError, match="no checkpoint at iteration 1000 .taken: 0, 100"):
        trial.run()


def test_rewind_points_outside_the_grid_are_rejected():
    with pytest.raises(ValidationError, match="rewind_iteration"):
        LotteryConfig(rewind_iteration=300)
    with pytest.raises(ValidationError, match="prune_fraction"):
        LotteryConfig(prune_fraction=1.0)
