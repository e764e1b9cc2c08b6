"""A trial restarted from the state after one of its rounds (what the sweep checkpoints each
round) reports the rounds that follow exactly as the uninterrupted trial does."""

from __future__ import annotations

import pytest
import torch

from sparsetune.config import TrainConfig, TrialConfig
from sparsetune.pruning.plans import (
    AtInitialisation,
    IterativePruning,
    NoPruning,
    PruneDuringTraining,
)
from sparsetune.trial import RoundResult, start_trial

DENSE = TrainConfig(epochs=1, batch_size=32, lr=0.05)
CASES = {
    "magnitude": {"criterion": "global", "sparsity": 0.8, "rounds": 3, "retrain_epochs": 1},
    "lottery": {"train_epochs": 1, "rounds": 3, "control": "shuffle"},
}


def _config(small_data, method: str) -> TrialConfig:
    return TrialConfig(
        model="lenet300",
        data=small_data,
        train=DENSE,
        method=method,
        params=CASES[method],
        seed=5,
        device="cpu",
    )


@pytest.mark.parametrize("method", sorted(CASES))
def test_a_trial_continued_after_round_one_reports_what_the_whole_trial_does(
    small_data, tmp_path, method
):
    config = _config(small_data, method)
    saved = {}

    def keep_round_one(result: RoundResult) -> None:
        if result.round == 1:
            saved["state"] = whole.round_state()

    whole = start_trial(config, cache_dir=tmp_path / "cache", on_round=keep_round_one)
    expected = whole.run()
    assert [r.round for r in expected] == [1, 2, 3]

    continued = start_trial(config, cache_dir=tmp_path / "cache")
    plan = continued.method.plan()
    assert plan.continues_after(1) and not plan.finished_after(1)
    assert plan.finished_after(3) and not plan.continues_after(3)
    state, counters = saved["state"]
    continued.restore_round(state, counters, 1)
    results = continued.run()
    assert [r.round for r in results] == [2, 3]
    for got, want in zip(results, expected[1:], strict=True):
        assert got.compression == want.compression
        assert got.val_acc == pytest.approx(want.val_acc, abs=1e-6)
    for name, mask in whole.masks.items():
        assert torch.equal(mask, continued.masks[name])


def test_which_plans_continue_or_end_after_a_round():
    assert NoPruning().finished_after(0)
    one_shot = AtInitialisation(target=0.9, scoring_examples=10)
    assert one_shot.finished_after(1) and not one_shot.continues_after(1)
    iterative = IterativePruning(rounds=2, targets=(0.5, 0.75), retrain_epochs=1)
    assert iterative.continues_after(1) and iterative.finished_after(2)
    during = PruneDuringTraining(rounds=3, epochs_per_round=1, tolerance=0.01)
    assert not during.continues_after(1) and not during.finished_after(3)  # runs again
