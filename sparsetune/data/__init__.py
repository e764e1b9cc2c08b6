"""Datasets by name, and the train / validation / test splits every trial uses.

A loader is `(DataConfig) -> RawData`: the published train and test parts as normalised tensors,
the train part carrying its augmentation if the dataset has one (CIFAR: crop and flip).
`load_splits` holds a seeded validation set out of train and applies `subset`. Your own data
(`npz:FILE`, `imagefolder:FOLDER`, `package.module:factory`) is read by `sources.py` into the same
RawData and split the same way; when it is larger than the memory budget
(`DataConfig.memory_budget_gb`) its parts stream from the source instead (`streaming.py`).
Importing this package does not import torch: the config validates built-in dataset names
through `DATASETS` alone.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from sparsetune.catalog import DATASETS

if TYPE_CHECKING:
    from sparsetune.config import DataConfig
    from sparsetune.data.tensors import Splits

__all__ = ["DATASETS", "load_splits"]

# Several trials in one worker process share a dataset: decode it once. Bounded, because one
# MNIST-like set is about 220 MB as float32.
_MAX_CACHED_SPLITS = 2
_cached_splits: OrderedDict[DataConfig, Splits] = OrderedDict()


def load_splits(config: DataConfig) -> Splits:
    """Train, validation and test sets for `config`, on the CPU; shared within a process.

    Validation is `val_size` examples of the published train part, chosen by a permutation seeded
    with `split_seed`; `subset` then keeps the first `subset` of the remaining train examples.
    The test set is always the published one.
    """
    if config in _cached_splits:
        _cached_splits.move_to_end(config)
        return _cached_splits[config]
    splits = _split(config)
    adopt_splits(config, splits)
    return splits


def has_splits(config: DataConfig) -> bool:
    return config in _cached_splits


def adopt_splits(config: DataConfig, splits: Splits) -> None:
    """Make `splits` what `load_splits(config)` returns in this process (a sweep's workers get
    them from the driver: `data/shared.py`)."""
    _cached_splits[config] = splits
    _cached_splits.move_to_end(config)
    while len(_cached_splits) > _MAX_CACHED_SPLITS:
        _cached_splits.popitem(last=False)


def _split(config: DataConfig) -> Splits:
    import torch

    from sparsetune.data.sources import dataset_loader
    from sparsetune.data.tensors import Splits

    raw = dataset_loader(config.name)(config)
    train_count = len(raw.train)
    if config.val_size >= train_count:
        raise ValueError(
            f"val_size={config.val_size} leaves no training data: dataset {config.name!r} has "
            f"{train_count} training examples; pass a smaller --val-size (val_size)"
        )
    order = torch.randperm(train_count, generator=torch.Generator().manual_seed(config.split_seed))
    val_index, train_index = order[: config.val_size], order[config.val_size :]
    if config.subset is not None:
        if config.subset > len(train_index):
            raise ValueError(
                f"subset={config.subset} exceeds the {len(train_index)} training examples of "
                f"{config.name!r} left after val_size={config.val_size}; pass a smaller --subset"
            )
        # The remaining train part is already in seeded random order, so this is a random subset.
        train_index = train_index[: config.subset]

    return Splits(
        # Validation comes out of the published train part but is evaluated, so never augmented.
        train=raw.train.select(train_index, augment=True),
        val=raw.train.select(val_index, augment=False),
        test=raw.test,
        input_shape=raw.train.input_shape,
        num_classes=raw.num_classes,
        name=config.name,
    )
