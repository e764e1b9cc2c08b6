"""Two real trials, run once per session, whose tickets the export tests read.

- `l0_trial`: LeNet-5 with L0 neuron and channel gates (Louizos et al.'s structured variant),
  which removes whole channels and neurons: the structured format's case.
- `magnitude_trial`: LeNet-300-100, layer-wise magnitude pruning of fc1 and fc2 to 90% in two
  rounds: an unstructured ticket with no removable unit, the dense and sparse formats' case.

Both run on synthetic 20x20 images (LeNet-5 takes 16x16 and up): a quarter of MNIST's pixels
keeps the convolutions cheap, and 20x20 still gives conv2 a 2x2 map, so fc1 reads 4 features per
channel (the flatten mapping `shrink` must get right).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from sparsetune.config import DataConfig, SyntheticOptions, TrainConfig, TrialConfig
from sparsetune.data import load_splits
from sparsetune.data.tensors import Splits
from sparsetune.trial import RoundResult, TrialContext, start_trial

INPUT_SHAPE = (1, 20, 20)


@dataclass
class Trial:
    config: TrialConfig
    context: TrialContext  # the live model, masks and splits after the last round
    results: list[RoundResult]
    workdir: Path  # its tickets: round-N.safetensors

    @property
    def splits(self) -> Splits:
        return self.context.splits


@pytest.fixture(scope="session")
def export_data() -> DataConfig:
    return DataConfig(
        name="synthetic",
        val_size=200,
        synthetic=SyntheticOptions(
            input_shape=INPUT_SHAPE, num_classes=10, train_size=800, test_size=200, noise=1.0
        ),
    )


def _run(config: TrialConfig, tmp_path_factory) -> Trial:
    workdir = tmp_path_factory.mktemp("trial")
    context = start_trial(config, cache_dir=tmp_path_factory.mktemp("cache"), workdir=workdir)
    results = context.run()
    context.model.eval()
    return Trial(config, context, results, workdir)


@pytest.fixture(scope="session")
def l0_trial(export_data, tmp_path_factory) -> Trial:
    config = TrialConfig(
        model="lenet5",
        data=export_data,
        train=TrainConfig(
            optimizer="adam",
            lr=2e-3,
            weight_decay=0.0,
            schedule="constant",
            batch_size=50,
            epochs=2,
        ),
        method="l0",
        # A fast gate rate and a start from the trained dense weights: two short epochs close
        # about a third of conv2's channels and most of fc1's inputs (20-32-124-372 here).
        params={
            "granularity": "neuron",
            "epochs": 2,
            "gate_lr_factor": 300,
            "l0_lambda": 0.001,
            "start": "dense",
        },
        seed=0,
        device="cpu",
    )
    return _run(config, tmp_path_factory)


@pytest.fixture(scope="session")
def magnitude_trial(export_data, tmp_path_factory) -> Trial:
    config = TrialConfig(
        model="lenet300",
        data=export_data,
        train=TrainConfig(epochs=1),
        method="magnitude",
        # The output layer unpruned: at 90% some of fc3's 10-weight columns would go entirely,
        # which makes fc2 outputs removable; this ticket is to have no removable unit at all.
        params={
            "criterion": "layerwise",
            "sparsity": 0.9,
            "rounds": 2,
            "retrain_epochs": 1,
            "prune_output_layer": False,
        },
        seed=0,
        device="cpu",
    )
    return _run(config, tmp_path_factory)


@pytest.fixture(scope="session")
def export_splits(export_data) -> Splits:
    return load_splits(export_data)
