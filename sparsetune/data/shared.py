"""A process's splits as plain arrays, so that a sweep loads its data once and its workers share
it: the sweep's driver puts `splits_payload(...)` in Ray's object store, where NumPy arrays are
stored once and read by every worker on the node without a copy, and each worker adopts them as
the splits of that DataConfig (`adopt_payload`) instead of decoding the dataset again.

Only in-memory data travels this way; streamed data (larger than the memory budget) is read by
each worker from its source, as before. No Ray here: the search layer does the putting."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sparsetune.config import DataConfig
    from sparsetune.data.tensors import Splits

PARTS = ("train", "val", "test")


def splits_payload(splits: Splits) -> dict[str, Any] | None:
    """The splits as NumPy arrays and their metadata; None when a part is streamed."""
    from sparsetune.data.tensors import TensorSet

    parts = {name: getattr(splits, name) for name in PARTS}
    in_memory = (isinstance(p, TensorSet) and p.device.type == "cpu" for p in parts.values())
    if not all(in_memory):
        return None
    return {
        "parts": {name: (p.x.numpy(), p.y.numpy(), p.augment) for name, p in parts.items()},
        "input_shape": splits.input_shape,
        "num_classes": splits.num_classes,
        "name": splits.name,
    }


def splits_from_payload(payload: dict[str, Any]) -> Splits:
    import torch

    from sparsetune.data.tensors import Splits, TensorSet

    with warnings.catch_warnings():
        # The arrays are the object store's read-only pages, shared by every worker: the tensors
        # are never written in place (Splits' contract), so no copy is made.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        parts = {
            name: TensorSet(torch.from_numpy(x), torch.from_numpy(y), augment)
            for name, (x, y, augment) in payload["parts"].items()
        }
    return Splits(
        **parts,
        input_shape=tuple(payload["input_shape"]),
        num_classes=int(payload["num_classes"]),
        name=str(payload["name"]),
    )


def adopt_payload(config: DataConfig, payload: dict[str, Any] | None) -> None:
    """Make `payload` this process's splits of `config`, unless it holds them already."""
    from sparsetune.data import adopt_splits, has_splits

    if payload is not None and not has_splits(config):
        adopt_splits(config, splits_from_payload(payload))
