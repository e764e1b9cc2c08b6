"""The dense stage is trained once, shared by concurrent trials, and appears atomically."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import torch

from sparsetune.train.dense_cache import DenseCache, DenseCheckpoint


def _checkpoint(value: float) -> DenseCheckpoint:
    return DenseCheckpoint(
        init={"w": torch.full((3,), value)},
        final={"w": torch.full((3,), value + 1)},
        metrics={"val_acc": value},
    )


def _train_in_process(root: str, counter: str, value: float, out: str) -> None:
    """Runs in a separate process: trains (slowly) unless another process already has."""

    def train() -> DenseCheckpoint:
        with open(counter, "a") as handle:
            handle.write("trained\n")
        time.sleep(1.0)
        return _checkpoint(value)

    cached = DenseCache(Path(root)).get_or_train("key", train)
    Path(out).write_text(f"{cached.checkpoint.final['w'][0].item()} {cached.trained_here}")


def test_trains_once_then_reads(tmp_path):
    cache = DenseCache(tmp_path)
    calls = []
    first = cache.get_or_train("k", lambda: calls.append(1) or _checkpoint(1.0))
    second = cache.get_or_train("k", lambda: calls.append(1) or _checkpoint(2.0))
    assert calls == [1]
    assert first.trained_here and not second.trained_here
    assert torch.equal(second.checkpoint.final["w"], torch.full((3,), 2.0))
    assert second.checkpoint.metrics == {"val_acc": 1.0}


def test_concurrent_processes_train_once_and_read_the_same_tensors(tmp_path):
    counter = tmp_path / "counter.txt"
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=_train_in_process,
            args=(str(tmp_path / "cache"), str(counter), float(i), str(tmp_path / f"o{i}")),
        )
        for i in range(3)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    assert counter.read_text().count("trained") == 1
    outputs = [(tmp_path / f"o{i}").read_text().split() for i in range(3)]
    assert len({value for value, _ in outputs}) == 1  # every process read the same weights
    assert sorted(flag for _, flag in outputs) == ["False", "False", "True"]


def test_a_stale_entry_without_meta_is_retrained(tmp_path):
    cache = DenseCache(tmp_path)
    stale = cache.entry("k")
    stale.mkdir(parents=True)
    (stale / "init.safetensors").write_bytes(b"torn")
    (tmp_path / "dense" / ".k.999.tmp").mkdir()  # a crashed writer's staging folder
    cached = cache.get_or_train("k", lambda: _checkpoint(5.0))
    assert cached.trained_here
    assert torch.equal(
        DenseCache(tmp_path).get_or_train("k", None).checkpoint.init["w"], torch.full((3,), 5.0)
    )


def test_an_entry_appears_whole(tmp_path):
    cache = DenseCache(tmp_path)
    seen = []

    def train() -> DenseCheckpoint:
        # While training, the entry does not exist: readers wait on the lock instead.
        seen.append(cache.entry("k").exists())
        return _checkpoint(1.0)

    cache.get_or_train("k", train)
    assert seen == [False]
    assert sorted(p.name for p in cache.entry("k").iterdir()) == [
        "final.safetensors",
        "init.safetensors",
        "meta.json",
    ]
    assert [p.name for p in (tmp_path / "dense").iterdir() if p.name.endswith(".tmp")] == []
