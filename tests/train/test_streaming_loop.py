"""`fit`, `evaluate` and the trial's scoring batch on streamed data: the same batches, the same
numbers, as on the same data held in memory."""

from __future__ import annotations

import copy

import torch
from torch.utils.data import TensorDataset

from sparsetune.config import TrainConfig
from sparsetune.data.streaming import StreamSet
from sparsetune.data.tensors import TensorSet
from sparsetune.models import build_model
from sparsetune.train.loop import evaluate, fit


def same_data(count: int = 150) -> tuple[TensorSet, StreamSet]:
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(count) % 3
    x = torch.randn(count, 12, generator=generator) + y.view(-1, 1).float()
    # Every fifth example from a larger source: the streamed set maps positions through indices.
    source = TensorDataset(
        torch.zeros(5 * count, 12).index_copy(0, torch.arange(0, 5 * count, 5), x),
        torch.zeros(5 * count, dtype=torch.int64).index_copy(0, torch.arange(0, 5 * count, 5), y),
    )
    streamed = StreamSet(source, torch.arange(0, 5 * count, 5), (12,), workers=1)
    return TensorSet(x, y), streamed


def test_a_streamed_epoch_has_the_same_batches_as_the_in_memory_one():
    held, streamed = same_data()
    ours, theirs = (
        held.batches(32, shuffle=True, seed=7),
        streamed.batches(32, shuffle=True, seed=7),
    )
    assert len(ours) == len(theirs) == 5
    for _ in range(2):  # two epochs: each draws its own permutation, the same on both paths
        pairs = list(zip(ours, theirs, strict=True))
        assert sum(len(y) for (_, y), _ in pairs) == len(held)
        for (x, y), (sx, sy) in pairs:
            assert torch.equal(x, sx) and torch.equal(y, sy)


def test_fit_and_evaluate_agree_on_both_paths():
    held, streamed = same_data()
    torch.manual_seed(0)
    model = build_model("lenet300", (12,), 3)
    assert evaluate(model, held, batch_size=40) == evaluate(model, streamed, batch_size=40)
    recipe = TrainConfig(epochs=2, batch_size=16, lr=0.05)
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    assert fit(a, held, recipe, seed=3) == fit(b, streamed, recipe, seed=3)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert evaluate(a, held) == evaluate(b, streamed)


def test_take_gives_the_same_examples_on_both_paths():
    held, streamed = same_data()
    index = torch.randperm(len(held), generator=torch.Generator().manual_seed(1))[:20]
    for x, y in zip(held.take(index), streamed.take(index), strict=True):
        assert torch.equal(x, y)
