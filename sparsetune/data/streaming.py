"""The streaming path: data larger than the memory budget is read from its source, batch by batch,
through a torch `DataLoader` with worker processes (and pinned memory on a GPU), never decoded
into whole tensors.

A `StreamSet` is the streaming counterpart of `TensorSet`: the same examples in the same order
(positions into a source Dataset), normalised the same way, one example at a time in the workers,
and the same shuffled order per epoch (`randperm` from a generator seeded like
`InMemoryLoader`'s). So the two paths train on the same batches; only the standardisation's mean
and standard deviation differ, by float rounding (summed here in float64, one pass, against
float32 over the whole tensor in memory).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

# Decoded size (float32, train and test) above which a dataset streams, when neither
# DataConfig.memory_budget_gb nor this environment variable says otherwise.
BUDGET_ENV = "SPARSETUNE_MEMORY_BUDGET_GB"
DEFAULT_BUDGET_FRACTION = 0.25  # of this machine's physical memory
# Worker processes per DataLoader (at most the cores this process may use).
MAX_WORKERS = 4
# Examples per batch of the load-time pass (labels and statistics).
_SURVEY_BATCH = 256


def memory_budget_bytes(budget_gb: float | None) -> int:
    """The budget in bytes: `budget_gb`, else $SPARSETUNE_MEMORY_BUDGET_GB, else a quarter of
    this machine's physical memory (each training process holds its own copy of the data)."""
    if budget_gb is None and os.environ.get(BUDGET_ENV):
        try:
            budget_gb = float(os.environ[BUDGET_ENV])
        except ValueError:
            raise ValueError(
                f"{BUDGET_ENV}={os.environ[BUDGET_ENV]!r} is not a number; give gigabytes, "
                "e.g. 8 or 0.5"
            ) from None
    if budget_gb is not None:
        return int(budget_gb * 1e9)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * DEFAULT_BUDGET_FRACTION)


def worker_count() -> int:
    return min(MAX_WORKERS, len(os.sched_getaffinity(0)))


def describe_path(name: str, decoded_bytes: int, memory_budget_gb: float | None) -> str:
    """The line a streamed dataset prints when it first streams: which path, and why."""
    return (
        f"data {name}: streaming through a DataLoader ({worker_count()} workers): "
        f"{decoded_bytes / 1e9:.3g} GB as float32 exceeds the memory budget of "
        f"{memory_budget_bytes(memory_budget_gb) / 1e9:.3g} GB"
    )


# The notes printed so far in this process: each dataset says it streams once.
_printed: set[str] = set()


class _Examples(Dataset):
    """The examples of `source` at `indices`, as float32 inputs (uint8 scaled to [0, 1], then
    standardised when `mean` is set) and int64 labels: what a worker returns per example."""

    def __init__(self, source: Dataset, indices: Tensor, mean: Tensor | None, std: Tensor | None):
        self.source, self.indices, self.mean, self.std = source, indices.tolist(), mean, std

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[Tensor, Tensor]:
        x, y = self.source[self.indices[position]]
        x = torch.as_tensor(x)
        # The same element-wise operations as the in-memory path's, so the same values.
        x = x.to(torch.float32).div_(255) if x.dtype == torch.uint8 else x.to(torch.float32)
        if self.mean is not None:
            x = x.sub(self.mean).div_(self.std)
        return x, torch.as_tensor(y, dtype=torch.int64)


class _EpochBatches:
    """Positions per batch: in order, or a fresh permutation per pass drawn exactly as
    `InMemoryLoader` draws it (same generator, same seed, same batches)."""

    def __init__(self, count: int, batch_size: int, shuffle: bool, seed: int):
        self.count, self.batch_size, self.shuffle = count, batch_size, shuffle
        self._generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(self.count / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = (
            torch.randperm(self.count, generator=self._generator)
            if self.shuffle
            else torch.arange(self.count)
        )
        for start in range(0, self.count, self.batch_size):
            yield order[start : start + self.batch_size].tolist()


class StreamLoader:
    """Batches of `(x, y)` of a StreamSet on its device, through a DataLoader with workers."""

    def __init__(self, data: StreamSet, batch_size: int, shuffle: bool = False, seed: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer (got {batch_size})")
        if data.note and data.note not in _printed:
            # Here, when the first batch is drawn, not at load time: a bad input found after
            # loading (a model that does not fit the data) must still be a single line.
            print(data.note, file=sys.stderr, flush=True)
            _printed.add(data.note)
        self.device = data.device
        workers = worker_count() if data.workers is None else data.workers
        self._loader = DataLoader(
            _Examples(data.source, data.indices, data.mean, data.std),
            batch_sampler=_EpochBatches(len(data), batch_size, shuffle, seed),
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
        )

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for x, y in self._loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


@dataclass(frozen=True)
class StreamSet:
    """Examples `indices` of a map-style Dataset `source` of `(x, y)`, normalised with `mean` and
    `std` (shaped like one input; None: used as they are), read on demand; batches on `device`.
    `workers` None: `worker_count()`. `note`, if set, is printed once per process when the set
    first streams."""

    source: Any
    indices: Tensor
    input_shape: tuple[int, ...]
    mean: Tensor | None = None
    std: Tensor | None = None
    device: torch.device = torch.device("cpu")
    workers: int | None = None
    note: str = ""  # printed on stderr when the set first streams (`describe_path`)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[Tensor, Tensor]:
        return _Examples(self.source, self.indices[position : position + 1], self.mean, self.std)[0]

    def to(self, device: torch.device | str) -> StreamSet:
        return replace(self, device=torch.device(device))

    def select(self, index: Tensor, augment: bool = False) -> StreamSet:
        """The examples at positions `index` (user data has no augmentation to keep)."""
        return replace(self, indices=self.indices.index_select(0, index))

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> StreamLoader:
        return StreamLoader(self, batch_size, shuffle=shuffle, seed=seed)

    def in_order(self, batch_size: int) -> StreamLoader:
        return StreamLoader(self, batch_size)

    def take(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """The examples at positions `index`, stacked, on the device."""
        items = [self[int(position)] for position in index]
        x, y = torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])
        return x.to(self.device), y.to(self.device)


def survey(name: str, which: str, data: StreamSet) -> tuple[Tensor, Tensor, Tensor]:
    """One pass over `data` (unnormalised) through the workers: its labels, and the per-channel
    mean and standard deviation of its inputs (over everything for N x D), shaped like one input
    to broadcast, as the in-memory path computes them. Any problem is a one-line ValueError."""
    labels: list[Tensor] = []
    total = squares = None
    count = 0
    try:
        for x, y in data.in_order(_SURVEY_BATCH):
            labels.append(y)
            x = x.to(torch.float64)
            dims = [0, *range(2, x.ndim)] if x.ndim >= 3 else list(range(x.ndim))
            part, part_sq = x.sum(dim=dims), x.square().sum(dim=dims)
            total = part if total is None else total + part
            squares = part_sq if squares is None else squares + part_sq
            count += x.numel() // part.numel()
    except Exception as error:
        raise ValueError(
            f"dataset {name!r}: reading the {which} examples raised {type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}; give (x, y) examples, x a "
            "tensor of one shape (e.g. transforms.ToTensor()) and y an integer"
        ) from None
    if total is None:
        raise ValueError(f"dataset {name!r}: the {which} Dataset is empty; give it examples")
    mean = total / count
    variance = (squares - count * mean.square()) / max(count - 1, 1)
    std = variance.clamp_min(0).sqrt()
    std = torch.where(std > 0, std, torch.ones_like(std))
    shape = (-1,) + (1,) * (len(data.input_shape) - 1) if len(data.input_shape) >= 2 else ()
    return (
        torch.cat(labels),
        mean.to(torch.float32).reshape(shape),
        std.to(torch.float32).reshape(shape),
    )
