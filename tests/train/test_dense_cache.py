"""The dense stage is trained once, shared by concurrent trials, and appears atomically."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sparsetune.train.dense_cache import DenseCache, DenseCheckpoint


def _checkpoint(value: float) -> DenseCheckpoint:
    return DenseCheckpoint(
        init={"w": torch.full((3,), value), "b": torch.arange(4.0)},
        final={"w": torch.full((3,), value + 1), "b": torch.arange(4.0) * value},
        metrics={"val_acc": value / 10, "val_loss": 2.5},
    )


def _train_in_process(root: str, counter: str, value: float, out: str) -> None:
    """Runs in a spawned process: trains (slowly) unless another process already has."""

    def train() -> DenseCheckpoint:
        with open(counter, "a") as handle:
            handle.write(f"trained by {value}\n")
        time.sleep(1.0)  # long enough for the other processes to find the lock taken
        return _checkpoint(value)

    cached = DenseCache(Path(root)).get_or_train("key", train)
    tensors = {f"init.{k}": v for k, v in cached.checkpoint.init.items()}
    tensors |= {f"final.{k}": v for k, v in cached.checkpoint.final.items()}
    save_file(tensors, out)
    Path(out + ".json").write_text(
        json.dumps({"trained_here": cached.trained_here, "metrics": cached.checkpoint.metrics})
    )


def test_trains_once_then_reads(tmp_path):
    cache = DenseCache(tmp_path)
    calls = []

    def train(value):
        def run():
            calls.append(value)
            return _checkpoint(value)

        return run

    first = cache.get_or_train("k", train(1.0))
    second = cache.get_or_train("k", train(2.0))
    third = DenseCache(tmp_path).get_or_train("k", train(3.0))  # another instance, same folder
    assert calls == [1.0]
    assert first.trained_here and not second.trained_here and not third.trained_here
    assert first.path == second.path == tmp_path / "dense" / "k"
    for cached in (second, third):
        for part in ("init", "final"):
            expected = getattr(first.checkpoint, part)
            got = getattr(cached.checkpoint, part)
            assert got.keys() == expected.keys()
            assert all(torch.equal(got[k], expected[k]) for k in expected)
        assert cached.checkpoint.metrics == {"val_acc": 0.1, "val_loss": 2.5}


def test_keys_are_separate_entries(tmp_path):
    cache = DenseCache(tmp_path)
    a = cache.get_or_train("a", lambda: _checkpoint(1.0))
    b = cache.get_or_train("b", lambda: _checkpoint(2.0))
    assert a.trained_here and b.trained_here
    assert torch.equal(cache.get_or_train("a", None).checkpoint.final["w"], torch.full((3,), 2.0))
    assert torch.equal(cache.get_or_train("b", None).checkpoint.final["w"], torch.full((3,), 3.0))


def test_concurrent_processes_train_once_and_read_identical_tensors(tmp_path):
    counter = tmp_path / "counter.txt"
    outputs = [str(tmp_path / f"out-{i}.safetensors") for i in range(3)]
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=_train_in_process,
            args=(str(tmp_path / "cache"), str(counter), float(i), outputs[i]),
        )
        for i in range(3)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    assert len(counter.read_text().splitlines()) == 1, counter.read_text()
    tensors = [load_file(out) for out in outputs]
    for other in tensors[1:]:
        assert other.keys() == tensors[0].keys()
        assert all(torch.equal(other[k], tensors[0][k]) for k in tensors[0])
    infos = [json.loads(Path(out + ".json").read_text()) for out in outputs]
    assert sorted(info["trained_here"] for info in infos) == [False, False, True]
    assert len({json.dumps(info["metrics"], sort_keys=True) for info in infos}) == 1
    # and the one that trained wrote what everyone read
    winner = float(counter.read_text().split()[-1])
    assert torch.equal(tensors[0]["final.w"], torch.full((3,), winner + 1))


def test_a_stale_entry_without_meta_and_a_stale_staging_folder_are_ignored(tmp_path):
    cache = DenseCache(tmp_path)
    stale = cache.entry("k")
    stale.mkdir(parents=True)
    (stale / "init.safetensors").write_bytes(b"torn")  # a writer that died mid-way
    staging = tmp_path / "dense" / ".k.999999.tmp"  # a crashed writer's staging folder
    staging.mkdir()
    (staging / "meta.json").write_text("{")
    cached = cache.get_or_train("k", lambda: _checkpoint(5.0))
    assert cached.trained_here
    again = DenseCache(tmp_path).get_or_train("k", None)
    assert not again.trained_here
    assert torch.equal(again.checkpoint.init["w"], torch.full((3,), 5.0))
    assert sorted(p.name for p in stale.iterdir()) == [
        "final.safetensors",
        "init.safetensors",
        "meta.json",
    ]


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
    leftovers = [p.name for p in (tmp_path / "dense").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_a_store_that_fails_half_way_leaves_no_entry(tmp_path):
    cache = DenseCache(tmp_path)
    # `final` cannot be written (not a tensor) after `init` already was: no meta.json may appear
    # without both weight files, so the next trial trains again instead of reading a torn entry.
    broken = DenseCheckpoint(init={"w": torch.zeros(3)}, final={"w": "not a tensor"})
    with pytest.raises(AttributeError):
        cache.get_or_train("k", lambda: broken)
    assert not (cache.entry("k") / "meta.json").exists()
    cached = cache.get_or_train("k", lambda: _checkpoint(4.0))
    assert cached.trained_here
    assert torch.equal(cache.get_or_train("k", None).checkpoint.final["w"], torch.full((3,), 5.0))


def test_a_training_failure_stores_nothing_and_releases_the_lock(tmp_path):
    cache = DenseCache(tmp_path)

    def fail() -> DenseCheckpoint:
        raise RuntimeError("diverged")

    with pytest.raises(RuntimeError, match="diverged"):
        cache.get_or_train("k", fail)
    assert not cache.entry("k").exists()
    assert cache.get_or_train("k", lambda: _checkpoint(1.0)).trained_here  # not deadlocked


def test_non_contiguous_tensors_are_stored(tmp_path):
    base = torch.arange(12.0).view(3, 4)
    checkpoint = DenseCheckpoint(init={"t": base.t()}, final={"t": base.t().clone()})
    DenseCache(tmp_path).get_or_train("k", lambda: checkpoint)
    read = DenseCache(tmp_path).get_or_train("k", None).checkpoint
    assert torch.equal(read.init["t"], base.t()) and torch.equal(read.final["t"], base.t())
