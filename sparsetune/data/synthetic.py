"""A learnable stand-in for image datasets: Gaussian class prototypes plus Gaussian noise.

Needs no files, so tests and smoke runs work anywhere. Each class has a prototype ~ N(0, I) of the
configured input shape; an example is its prototype plus `noise` * N(0, I), scaled to unit
variance like the normalised image datasets. The data are fixed by the options alone: `split_seed`
only chooses the validation split, as it does for real datasets.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from sparsetune.data.tensors import RawData, TensorSet

if TYPE_CHECKING:
    from sparsetune.config import DataConfig

# Separate streams for prototypes, train and test, so that changing train_size changes neither the
# task (the prototypes) nor the test set.
_PROTOTYPE_SEED, _TRAIN_SEED, _TEST_SEED = 1_000_003, 1_000_033, 1_000_037


def load_synthetic(config: DataConfig) -> RawData:
    options = config.synthetic
    shape = tuple(options.input_shape)
    prototypes = torch.randn(
        (options.num_classes, *shape), generator=torch.Generator().manual_seed(_PROTOTYPE_SEED)
    )
    scale = 1.0 / math.sqrt(1.0 + options.noise**2)

    def sample(count: int, seed: int) -> TensorSet:
        generator = torch.Generator().manual_seed(seed)
        # Balanced to within one example per class, then shuffled.
        labels = torch.arange(count) % options.num_classes
        labels = labels[torch.randperm(count, generator=generator)]
        noise = torch.randn((count, *shape), generator=generator)
        x = (prototypes[labels] + options.noise * noise) * scale
        return TensorSet(x.float(), labels.long())

    return RawData(
        train=sample(options.train_size, _TRAIN_SEED),
        test=sample(options.test_size, _TEST_SEED),
        num_classes=options.num_classes,
    )
