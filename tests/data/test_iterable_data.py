"""Iterable-style datasets (`torch.utils.data.IterableDataset`) from a factory or as `data=`
objects: within the memory budget they are decoded into tensors and split like any data; they
cannot stream (no length, no index: no held-out validation split), so passing the budget while
they are read stops the reading with one line, an endless one included."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch
from cli_helpers import assert_one_error_line, run_cli

from sparsetune.config import DataConfig
from sparsetune.data import load_splits
from sparsetune.data.sources import from_train_and_test
from sparsetune.data.streaming import BUDGET_ENV
from sparsetune.data.tensors import TensorSet
from sparsetune.search.objects import data_name

FACTORIES = """
import itertools

import torch
from torch.utils.data import Dataset, IterableDataset

def example(index, generator):
    # 1 x 6 x 6 uint8 images of three classes, as a camera or a shard reader would yield them.
    label = index % 3
    pixels = torch.randint(0, 60, (1, 6, 6), generator=generator, dtype=torch.uint8)
    return pixels + label * 60, label

class Stream(IterableDataset):
    # `count` examples, or endless when None; made as they are read.
    def __init__(self, count, seed):
        self.count, self.seed = count, seed
    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed)
        indices = itertools.count() if self.count is None else range(self.count)
        for index in indices:
            yield example(index, generator)

class Indexed(Dataset):
    # The same examples as Stream, map-style.
    def __init__(self, count, seed):
        generator = torch.Generator().manual_seed(seed)
        self.examples = [example(index, generator) for index in range(count)]
    def __len__(self):
        return len(self.examples)
    def __getitem__(self, index):
        return self.examples[index]

def streams():
    return Stream(120, 1), Stream(30, 2)

def indexed():
    return Indexed(120, 1), Indexed(30, 2)

def endless():
    return Stream(None, 1), Stream(30, 2)
"""

# One example decodes to 1 x 6 x 6 float32: 144 bytes. train is 120 of them, test 30.
EXAMPLE_BYTES = 144


@pytest.fixture
def factories(tmp_path, monkeypatch):
    (tmp_path / "iterable_factories.py").write_text(textwrap.dedent(FACTORIES))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "iterable_factories"
    sys.modules.pop("iterable_factories", None)


def refusal(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    for words in ("an IterableDataset cannot stream", "no held-out validation split"):
        assert words in message
    assert "return map-style Datasets (__len__ and __getitem__), or raise the budget" in message
    return message


def test_iterables_within_the_budget_are_decoded_and_split_like_map_style_data(factories):
    streamed = load_splits(DataConfig(name=f"{factories}:streams", val_size=20))
    indexed = load_splits(DataConfig(name=f"{factories}:indexed", val_size=20))
    assert (streamed.input_shape, streamed.num_classes) == ((1, 6, 6), 3)
    # The validation split is held out of the decoded train part, seeded as for any data.
    assert [len(streamed.train), len(streamed.val), len(streamed.test)] == [100, 20, 30]
    for part in ("train", "val", "test"):
        ours, theirs = getattr(streamed, part), getattr(indexed, part)
        assert isinstance(ours, TensorSet)
        assert torch.equal(ours.x, theirs.x) and torch.equal(ours.y, theirs.y)


def test_an_endless_iterable_stops_at_the_budget(factories):
    budget_gb = 50 * EXAMPLE_BYTES / 1e9
    with pytest.raises(ValueError) as error:
        load_splits(DataConfig(name=f"{factories}:endless", val_size=5, memory_budget_gb=budget_gb))
    # Stopped by the first batch read (256 examples) that passed the 50 examples' worth.
    assert "passed the memory budget of 7.2e-06 GB at train example 256" in refusal(error)


def test_the_budget_counts_train_and_test_together(factories):
    # Train alone fits (120 examples); with 10 test examples it does not.
    budget_gb = 130 * EXAMPLE_BYTES / 1e9
    with pytest.raises(ValueError) as error:
        load_splits(DataConfig(name=f"{factories}:streams", val_size=5, memory_budget_gb=budget_gb))
    assert "at test example 30 (2.16e-05 GB as float32)" in refusal(error)
    # Map-style Datasets of the same size stream instead.
    splits = load_splits(
        DataConfig(name=f"{factories}:indexed", val_size=5, memory_budget_gb=budget_gb)
    )
    assert not isinstance(splits.train, TensorSet) and len(splits.train) == 115


def test_iterables_given_as_objects(factories, monkeypatch):
    from iterable_factories import Stream  # written by the fixture

    raw = from_train_and_test(
        "data=", (Stream(120, 1), (torch.zeros(4, 1, 6, 6), torch.arange(4) % 3))
    )
    assert (len(raw.train), len(raw.test), raw.num_classes) == (120, 4, 3)
    assert data_name((Stream(40, 1), Stream(10, 2))).startswith("python-data-")
    monkeypatch.setenv(BUDGET_ENV, str(100 * EXAMPLE_BYTES / 1e9))
    with pytest.raises(ValueError) as error:
        data_name((Stream(None, 3), Stream(10, 2)))
    assert refusal(error).startswith("dataset 'data=': decoding it passed the memory budget")


def test_the_cli_refuses_an_endless_iterable_in_one_line_writing_nothing(tmp_path, factories):
    before = sorted(path.name for path in tmp_path.iterdir())
    result = run_cli(
        "prune",
        *("--model", "lenet300", "--dataset", f"{factories}:endless", "--val-size", "5"),
        *("--memory-budget-gb", "0.00001", "--method", "magnitude", "--epochs", "1"),
        *("--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")),
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=120,
    )
    assert_one_error_line(result, ["an IterableDataset cannot stream", "--memory-budget-gb"])
    assert sorted(path.name for path in tmp_path.iterdir()) == before
