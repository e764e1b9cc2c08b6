"""The trial driver: one runner per plan kind, the trial's seed passed to the method, and per
trial one model and one config hash."""

from __future__ import annotations

import dataclasses
import inspect
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import sparsetune.trial.context
import sparsetune.trial.start
from sparsetune.config import TrainConfig, TrialConfig
from sparsetune.pruning import plans
from sparsetune.pruning.masking import attach_masks
from sparsetune.trial import start_trial
from sparsetune.trial.driver import RUNNERS, run_plan


def test_every_plan_kind_has_a_runner():
    kinds = {
        value
        for value in vars(plans).values()
        if inspect.isclass(value) and issubclass(value, plans.Plan) and value is not plans.Plan
    }
    assert kinds == set(RUNNERS)


def test_a_plan_without_a_runner_is_a_clear_error():
    @dataclasses.dataclass(frozen=True)
    class Unknown(plans.Plan):
        pass

    with pytest.raises(TypeError, match="no runner for the plan Unknown; the plan kinds are"):
        run_plan(Unknown(), SimpleNamespace())


class RecordingTrial:
    """A trial whose method records the RoundInfo of every hook the driver calls."""

    def __init__(self, seed: int):
        self.seed = seed
        self.model = nn.Linear(3, 2, bias=False)
        self.masks = attach_masks(self.model)
        self.seen: list[tuple[str, plans.RoundInfo]] = []
        self.method = SimpleNamespace(
            at_init=lambda model, masks, batch, info: self.seen.append(("at_init", info)),
            compute_masks=lambda model, masks, info: self.seen.append(("compute", info)) or {},
        )
        weights = {"weight": self.model.state_dict()["parametrizations.weight.original"]}
        self.dense = SimpleNamespace(checkpoint=SimpleNamespace(init=weights))
        self.resume_after = 0
        self.reported: list[int] = []

    def load_weights(self, state):
        pass

    def scoring_batch(self, size):
        return torch.zeros(size, 3), torch.zeros(size, dtype=torch.long)

    def retrain(self, epochs=None):
        pass

    def report(self, index):
        self.reported.append(index)


@pytest.mark.parametrize(
    "plan",
    [
        plans.AtInitialisation(target=0.5, scoring_examples=2),
        plans.IterativePruning(rounds=2, targets=(0.3, 0.5), retrain_epochs=1),
        plans.TrainThenPrune(epochs=1),
    ],
    ids=lambda plan: type(plan).__name__,
)
def test_the_trials_seed_reaches_every_hook_in_round_info(plan):
    trial = RecordingTrial(seed=41)
    run_plan(plan, trial)
    assert trial.seen and all(info.seed == 41 for _, info in trial.seen)
    assert trial.reported == list(range(1, len(trial.reported) + 1))


def test_a_trial_builds_one_model_and_hashes_its_config_once(small_data, tmp_path, monkeypatch):
    config = TrialConfig(
        model="lenet300",
        data=small_data,
        train=TrainConfig(epochs=1),
        method="magnitude",
        params={"criterion": "global", "sparsity": 0.5, "rounds": 2, "retrain_epochs": 1},
        seed=0,
        device="cpu",
    )
    start_trial(config, cache_dir=tmp_path / "cache")  # the dense stage, trained once

    def counting(module, name):
        original = getattr(module, name)
        calls = []

        def counted(*args, **kwargs):
            calls.append(args)
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)
        return calls

    builds = counting(sparsetune.trial.start, "build_model")
    hashes = counting(sparsetune.trial.context, "trial_hash")
    trial = start_trial(config, cache_dir=tmp_path / "cache", workdir=tmp_path / "trial")
    results = trial.run()
    assert [r.round for r in results] == [1, 2]
    assert len(builds) == 1
    assert len(hashes) == 1
