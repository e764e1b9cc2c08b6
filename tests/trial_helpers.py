"""One LeNet-300-100 trial's config on given data, as the trial-level tests build it."""

from __future__ import annotations

from sparsetune.config import DataConfig, TrainConfig, TrialConfig


def lenet300_trial(method: str, params: dict, data: DataConfig, seed: int) -> TrialConfig:
    """A one-epoch dense recipe, on the CPU."""
    return TrialConfig(
        model="lenet300",
        data=data,
        train=TrainConfig(epochs=1),
        method=method,
        params=params,
        seed=seed,
        device="cpu",
    )
