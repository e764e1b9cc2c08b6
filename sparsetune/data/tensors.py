"""Datasets held as whole tensors, and a loader that batches them by index.

Every built-in dataset fits in memory (MNIST-like sets are 220 MB as float32), so a trial decodes
and normalises once and then batches with `index_select`: no per-sample Python work, no PIL, no
worker processes. On a GPU the whole set can live on the device and an epoch never touches the
host. User data larger than the memory budget streams instead (`streaming.StreamSet`); training,
evaluation and scoring reach either through the few members of `Examples`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

# A batch transform `(x, generator) -> x'`: random draws come from the generator (on the CPU),
# so the result depends only on the loader's seed, whatever the device.
Augment = Callable[[Tensor, torch.Generator], Tensor]


@dataclass(frozen=True)
class TensorSet:
    """Inputs `x` (float32, normalised, N x C x H x W or N x D) and labels `y` (int64, N).

    `augment`, if set, is applied by `InMemoryLoader` to every batch it draws: a dataset's loader
    sets it on the training part only (crop-and-flip for CIFAR), so `fit` trains on augmented
    batches without knowing which dataset it has, and evaluation, which slices `x` directly,
    never sees it.
    """

    x: Tensor
    y: Tensor
    augment: Augment | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(
                f"x has {len(self.x)} examples but y has {len(self.y)}; they must match"
            )

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device | str) -> TensorSet:
        return TensorSet(self.x.to(device), self.y.to(device), self.augment)

    @property
    def device(self) -> torch.device:
        return self.x.device

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def select(self, index: Tensor, augment: bool = False) -> TensorSet:
        """The examples at `index`; `augment` keeps this set's augmentation."""
        return TensorSet(
            self.x.index_select(0, index),
            self.y.index_select(0, index),
            self.augment if augment else None,
        )

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> InMemoryLoader:
        """Training batches (augmented, if the set is)."""
        return InMemoryLoader(self, batch_size, shuffle=shuffle, seed=seed)

    def in_order(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Evaluation batches: views, in order, never augmented."""
        for start in range(0, len(self), batch_size):
            yield self.x[start : start + batch_size], self.y[start : start + batch_size]

    def take(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """The examples at `index` (never augmented), on this set's device."""
        index = index.to(self.x.device)
        return self.x[index], self.y[index]


class Examples(Protocol):
    """What training, evaluation and a trial use of a dataset part, held (`TensorSet`) or
    streamed (`streaming.StreamSet`)."""

    @property
    def device(self) -> torch.device: ...

    @property
    def input_shape(self) -> tuple[int, ...]: ...

    def __len__(self) -> int: ...

    def to(self, device: torch.device | str) -> Examples: ...

    def select(self, index: Tensor, augment: bool = False) -> Examples: ...

    def batches(
        self, batch_size: int, shuffle: bool = False, seed: int = 0
    ) -> Iterable[tuple[Tensor, Tensor]]: ...

    def in_order(self, batch_size: int) -> Iterable[tuple[Tensor, Tensor]]: ...

    def take(self, index: Tensor) -> tuple[Tensor, Tensor]: ...


@dataclass(frozen=True)
class RawData:
    """What a dataset loader returns: the published train and test parts, before any split."""

    train: Examples
    test: Examples
    num_classes: int


@dataclass(frozen=True)
class Splits:
    """Train, validation (held out of the published train part) and test sets of one dataset.

    Splits may be shared between trials of one process (see `load_splits`): never modify the
    tensors in place.
    """

    train: Examples
    val: Examples
    test: Examples
    input_shape: tuple[int, ...]
    num_classes: int
    name: str

    def to(self, device: torch.device | str) -> Splits:
        return Splits(
            train=self.train.to(device),
            val=self.val.to(device),
            test=self.test.to(device),
            input_shape=self.input_shape,
            num_classes=self.num_classes,
            name=self.name,
        )


class InMemoryLoader:
    """Batches of `(x, y)` from a TensorSet, the last batch possibly smaller (no drop_last).

    With `shuffle`, each pass draws a fresh permutation from the loader's own generator, seeded once
    here: epoch k's order depends only on `seed` and k, not on any other use of the global RNG.
    The data's `augment` transforms each batch, drawing from the same generator, so the
    augmentation of epoch k is seeded the same way.
    """

    def __init__(self, data: TensorSet, batch_size: int, shuffle: bool = False, seed: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer (got {batch_size})")
        self.data = data
        self.batch_size = batch_size
        self.shuffle = shuffle
        # The permutation is drawn on the CPU so that the order is the same on every device.
        self._generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.data) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        x, y = self.data.x, self.data.y
        count = len(self.data)
        augment = self.data.augment
        if not self.shuffle:
            # In order, a slice is a view: no copy at all (unless augmented).
            for start in range(0, count, self.batch_size):
                inputs = x[start : start + self.batch_size]
                if augment is not None:
                    inputs = augment(inputs, self._generator)
                yield inputs, y[start : start + self.batch_size]
            return
        order = torch.randperm(count, generator=self._generator).to(x.device)
        for start in range(0, count, self.batch_size):
            index = order[start : start + self.batch_size]
            inputs = x.index_select(0, index)
            if augment is not None:
                inputs = augment(inputs, self._generator)
            yield inputs, y.index_select(0, index)
