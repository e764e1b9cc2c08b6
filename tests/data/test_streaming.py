"""The streaming path: own data larger than the memory budget is read through a DataLoader with
workers instead of being decoded into tensors, and gives the same examples, in the same order, as
the in-memory path (inputs equal up to the float rounding of the standardisation statistics)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from cli_helpers import MAGNITUDE_GLOBAL_SPACE, run_cli
from image_folders import write_fashion_mnist_folder

from sparsetune.config import DataConfig
from sparsetune.data import load_splits
from sparsetune.data.streaming import BUDGET_ENV, StreamSet, memory_budget_bytes
from sparsetune.data.tensors import TensorSet

TINY = 1e-9  # GB: everything streams


def both_paths(name: str, **options) -> tuple:
    held = load_splits(DataConfig(name=name, **options))
    streamed = load_splits(DataConfig(name=name, memory_budget_gb=TINY, **options))
    return held, streamed


def assert_same_examples(held, streamed) -> None:
    assert isinstance(streamed.train, StreamSet) and isinstance(held.train, TensorSet)
    assert (streamed.input_shape, streamed.num_classes) == (held.input_shape, held.num_classes)
    for part in ("train", "val", "test"):
        ours, theirs = getattr(held, part), getattr(streamed, part)
        assert len(ours) == len(theirs)
        x, y = theirs.take(torch.arange(len(theirs)))
        assert torch.equal(y, ours.y)
        # The same pixels, standardised with statistics summed in another order.
        assert torch.allclose(x, ours.x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("split", [True, False])
def test_an_image_folder_over_budget_streams_the_same_examples(tmp_path, split, capsys):
    write_fashion_mnist_folder(tmp_path / "images", classes=2, train_per_class=40, split=split)
    held, streamed = both_paths(f"imagefolder:{tmp_path / 'images'}", val_size=10)
    assert_same_examples(held, streamed)
    # Nothing at load time (a bad input found next must stay one line); one line when it streams.
    assert capsys.readouterr().err == ""
    for _ in range(2):
        next(iter(streamed.train.batches(8)))
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(
        f"data imagefolder:{tmp_path / 'images'}: streaming through a DataLoader"
    )
    assert "exceeds the memory budget of 1e-09 GB" in line


FACTORIES = """
import torch
from torch.utils.data import Dataset

class Pixels(Dataset):
    # uint8 images, read one at a time: standardised per channel like an image folder.
    def __init__(self, count, seed):
        generator = torch.Generator().manual_seed(seed)
        self.y = torch.arange(count) % 3
        self.x = torch.randint(0, 60, (count, 2, 6, 6), generator=generator, dtype=torch.uint8)
        self.x += (self.y * 60).to(torch.uint8).view(-1, 1, 1, 1)
    def __len__(self):
        return len(self.y)
    def __getitem__(self, index):
        return self.x[index], int(self.y[index])

class Features(Pixels):
    # float features, used as they are.
    def __getitem__(self, index):
        return self.x[index].flatten().float() / 7, int(self.y[index])

def pixels():
    return Pixels(90, 1), Pixels(30, 2)

def features():
    return Features(90, 1), Features(30, 2)

class Negative(Pixels):
    def __getitem__(self, index):
        return self.x[index], -1 if index == 5 else int(self.y[index])

def negative():
    return Negative(90, 1), Pixels(30, 2)
"""


@pytest.fixture
def factories(tmp_path, monkeypatch) -> str:
    (tmp_path / "stream_factories.py").write_text(textwrap.dedent(FACTORIES))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "stream_factories"


@pytest.mark.parametrize("factory", ["pixels", "features"])
def test_a_factory_of_datasets_over_budget_streams_the_same_examples(factories, factory):
    held, streamed = both_paths(f"{factories}:{factory}", val_size=12, subset=50)
    assert_same_examples(held, streamed)
    assert (streamed.train.mean is None) == (factory == "features")


def test_streamed_labels_out_of_range_are_one_line(factories):
    with pytest.raises(ValueError, match="label -1 is out of range"):
        load_splits(DataConfig(name=f"{factories}:negative", val_size=5, memory_budget_gb=TINY))


def test_the_budget_comes_from_the_config_then_the_environment_then_the_machine(monkeypatch):
    monkeypatch.delenv(BUDGET_ENV, raising=False)
    machine = memory_budget_bytes(None)
    assert machine > 0
    monkeypatch.setenv(BUDGET_ENV, "0.5")
    assert memory_budget_bytes(None) == 500_000_000
    assert memory_budget_bytes(2) == 2_000_000_000
    monkeypatch.setenv(BUDGET_ENV, "lots")
    with pytest.raises(ValueError, match=f"{BUDGET_ENV}='lots' is not a number; give gigabytes"):
        memory_budget_bytes(None)


def test_the_budget_is_not_part_of_the_identity():
    from sparsetune.config import TrialConfig
    from sparsetune.identity import trial_hash

    def config(budget: float | None) -> TrialConfig:
        data = DataConfig(name="synthetic", memory_budget_gb=budget)
        return TrialConfig(model="lenet300", data=data)

    assert trial_hash(config(TINY)) == trial_hash(config(None))


@pytest.mark.slow
def test_prune_streams_an_image_folder_through_the_cli(tmp_path):
    write_fashion_mnist_folder(tmp_path / "images", classes=2, train_per_class=150)
    result = run_cli(
        "prune",
        *("--model", "lenet300", "--val-size", "40", "--dataset", "imagefolder:images"),
        *("--method", "magnitude", "--epochs", "1", "--json"),
        *("--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")),
        cwd=tmp_path,
        env={BUDGET_ENV: "0.0001"},  # the folder is 0.27 MB as float32
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "data imagefolder:" in result.stderr and "streaming through a DataLoader" in result.stderr
    )
    summary = json.loads(result.stdout)
    assert summary["method"] == "magnitude" and summary["compression"] > 1
    assert summary["test_acc"] > 0.8  # T-shirts against trousers
    assert {layer["name"]: layer for layer in summary["layers"]}["fc3"]["shape"] == "2x100"
    assert (tmp_path / "run" / "result.json").is_file()
    assert Path(tmp_path / "run").is_dir()


@pytest.mark.slow
def test_a_sweep_streams_an_image_folder_in_its_ray_workers(tmp_path):
    """The trials, in Ray workers, stream the folder themselves (DataLoader workers inside)."""
    write_fashion_mnist_folder(tmp_path / "images", classes=2, train_per_class=150)
    (tmp_path / "space.yaml").write_text(MAGNITUDE_GLOBAL_SPACE)
    result = run_cli(
        "search",
        *("--model", "lenet300", "--val-size", "40", "--dataset", "imagefolder:images"),
        *("--trials", "2", "--max-concurrent", "2", "--seed", "0"),
        *("--space", str(tmp_path / "space.yaml"), "--experiment", "streamed"),
        *("--out", str(tmp_path / "sweep"), "--cache-dir", str(tmp_path / "cache")),
        cwd=tmp_path,
        env={BUDGET_ENV: "0.0001"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Pareto front" in result.stdout
    assert "2 done, 0 running, 0 failed of 2" in result.stderr
