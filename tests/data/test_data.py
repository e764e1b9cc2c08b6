"""Datasets, splits and the in-memory loader, on synthetic data, hand-written idx files and the
Fashion-MNIST files of Debian's `dataset-fashion-mnist` package."""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import sparsetune.data as data
from sparsetune.config import DataConfig, SyntheticOptions
from sparsetune.data import DATASETS, load_splits
from sparsetune.data.mnist_like import IDX_FILES
from sparsetune.data.synthetic import load_synthetic
from sparsetune.data.tensors import InMemoryLoader, TensorSet

SMALL = SyntheticOptions(
    input_shape=(1, 6, 6), num_classes=4, train_size=200, test_size=40, noise=1.0
)


def synthetic(**fields) -> DataConfig:
    return DataConfig(name="synthetic", synthetic=SMALL, **({"val_size": 40} | fields))


def rows(tensor: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in tensor.flatten(1)}


# --- synthetic ----------------------------------------------------------------------------------


def test_synthetic_is_deterministic_balanced_and_independent_of_split_seed():
    first = load_synthetic(synthetic())
    again = load_synthetic(synthetic(split_seed=7))
    assert torch.equal(first.train.x, again.train.x) and torch.equal(first.test.y, again.test.y)
    assert first.train.x.shape == (200, 1, 6, 6) and first.test.x.shape == (40, 1, 6, 6)
    assert first.train.x.dtype == torch.float32 and first.train.y.dtype == torch.int64
    assert first.num_classes == 4
    assert torch.bincount(first.train.y).tolist() == [50, 50, 50, 50]
    assert torch.bincount(first.test.y).tolist() == [10, 10, 10, 10]
    assert first.train.y[:8].tolist() != [0, 1, 2, 3, 0, 1, 2, 3]  # shuffled, not cyclic


def test_synthetic_classes_are_separable_by_their_prototypes():
    # Nearest class mean, fitted on train, classifies test far above chance (25 %).
    raw = load_synthetic(synthetic())
    means = torch.stack([raw.train.x[raw.train.y == c].mean(0) for c in range(4)]).flatten(1)
    predicted = torch.cdist(raw.test.x.flatten(1), means).argmin(1)
    assert (predicted == raw.test.y).float().mean() > 0.9


# --- splits -------------------------------------------------------------------------------------


def test_split_sizes_with_val_size_and_subset():
    splits = load_splits(synthetic())
    assert (len(splits.train), len(splits.val), len(splits.test)) == (160, 40, 40)
    assert splits.input_shape == (1, 6, 6) and splits.num_classes == 4
    assert splits.name == "synthetic"

    subset = load_splits(synthetic(subset=100))
    assert (len(subset.train), len(subset.val), len(subset.test)) == (100, 40, 40)
    # subset trims train only, and takes the front of the same seeded order.
    assert torch.equal(subset.val.x, splits.val.x) and torch.equal(subset.test.x, splits.test.x)
    assert torch.equal(subset.train.x, splits.train.x[:100])


def test_validation_is_disjoint_from_train_and_together_they_are_the_published_train_set():
    splits = load_splits(synthetic())
    train_rows, val_rows = rows(splits.train.x), rows(splits.val.x)
    assert len(train_rows) == 160 and len(val_rows) == 40
    assert not train_rows & val_rows
    assert train_rows | val_rows == rows(load_synthetic(synthetic()).train.x)


def test_validation_depends_on_split_seed_only():
    first = load_splits(synthetic(split_seed=3))
    data._cached_splits.clear()
    again = load_splits(synthetic(split_seed=3))
    other = load_splits(synthetic(split_seed=4))
    assert first is not again
    assert torch.equal(first.val.x, again.val.x) and torch.equal(first.train.y, again.train.y)
    assert rows(first.val.x) != rows(other.val.x)


def test_splits_are_memoised_per_config_in_a_bounded_cache():
    config = synthetic()
    assert load_splits(config) is load_splits(synthetic())
    for seed in range(1, 5):
        load_splits(synthetic(split_seed=seed))
    assert len(data._cached_splits) == data._MAX_CACHED_SPLITS
    assert config not in data._cached_splits


def test_splits_move_to_a_device():
    moved = load_splits(synthetic()).to("meta")
    assert {moved.train.x.device.type, moved.val.y.device.type, moved.test.x.device.type} == {
        "meta"
    }
    assert moved.input_shape == (1, 6, 6)


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown dataset 'cifar7'; choose one of: cifar10, "):
        DataConfig(name="cifar7")
    with pytest.raises(ValueError, match="cifar100, fashion-mnist, mnist, synthetic"):
        DATASETS.check("cifar7")


def test_val_size_as_large_as_train_is_rejected():
    with pytest.raises(ValueError, match=r"val_size=200 .* 200 training examples"):
        load_splits(synthetic(val_size=200))


def test_subset_larger_than_what_is_left_is_rejected():
    with pytest.raises(ValueError, match=r"subset=161 exceeds the 160 training examples"):
        load_splits(synthetic(subset=161))


def test_importing_the_data_package_and_validating_a_name_does_not_import_torch():
    code = (
        "import sys; from sparsetune.config import DataConfig; DataConfig(name='mnist'); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- loader -------------------------------------------------------------------------------------


def numbered(count: int) -> TensorSet:
    return TensorSet(torch.arange(count, dtype=torch.float32).unsqueeze(1), torch.arange(count))


def epoch_order(loader: InMemoryLoader) -> list[int]:
    order = []
    for x, y in loader:
        assert torch.equal(x.squeeze(1).long(), y)  # inputs and labels stay paired
        order += y.tolist()
    return order


def test_loader_covers_every_example_once_per_epoch_in_a_seeded_order():
    loader = InMemoryLoader(numbered(10), batch_size=3, shuffle=True, seed=5)
    first, second = epoch_order(loader), epoch_order(loader)
    assert len(loader) == 4
    assert [len(y) for _, y in loader] == [3, 3, 3, 1]  # no drop_last
    assert sorted(first) == sorted(second) == list(range(10))
    assert first != second

    same_seed = InMemoryLoader(numbered(10), batch_size=3, shuffle=True, seed=5)
    assert [epoch_order(same_seed), epoch_order(same_seed)] == [first, second]
    other_seed = InMemoryLoader(numbered(10), batch_size=3, shuffle=True, seed=6)
    assert epoch_order(other_seed) != first


def test_loader_without_shuffle_keeps_the_order():
    loader = InMemoryLoader(numbered(7), batch_size=4)
    assert len(loader) == 2
    assert epoch_order(loader) == epoch_order(loader) == list(range(7))


def test_loader_rejects_a_non_positive_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        InMemoryLoader(numbered(4), batch_size=0)


# --- MNIST-like files ---------------------------------------------------------------------------


def write_idx(path: Path, array: torch.Tensor) -> None:
    # idx format: magic 0x00000800 | rank (3 for images, 1 for labels), big-endian dims, uint8 data.
    header = struct.pack(">I", 0x0800 | array.dim()) + struct.pack(f">{array.dim()}I", *array.shape)
    path.write_bytes(header + array.to(torch.uint8).numpy().tobytes())


def write_tiny_mnist(raw: Path, train: int, test: int) -> None:
    raw.mkdir(parents=True)
    for prefix, count in (("train", train), ("t10k", test)):
        pixels = (torch.arange(count) * 8 % 256).view(count, 1, 1).expand(count, 28, 28)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", pixels)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", torch.arange(count) % 10)


def test_mnist_files_in_torchvisions_layout_are_read_and_normalised(tmp_path, offline):
    write_tiny_mnist(tmp_path / "MNIST" / "raw", train=30, test=12)
    splits = load_splits(DataConfig(name="mnist", data_dir=tmp_path, val_size=5))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (25, 5, 12)
    assert splits.input_shape == (1, 28, 28) and splits.num_classes == 10
    assert splits.test.y.tolist() == [i % 10 for i in range(12)]
    expected = (torch.arange(12) * 8 / 255 - 0.1307) / 0.3081
    assert torch.allclose(splits.test.x[:, 0, 13, 13], expected.float(), atol=1e-6)
    assert splits.test.x.shape == (12, 1, 28, 28) and splits.test.x.dtype == torch.float32


def test_missing_mnist_offline_is_one_line_naming_the_fix(tmp_path, offline):
    with pytest.raises(ValueError) as error:
        load_splits(DataConfig(name="mnist", data_dir=tmp_path))
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"dataset 'mnist': no files under {tmp_path / 'MNIST' / 'raw'}")
    assert "SPARSETUNE_OFFLINE" in message and "--data-dir" in message


def test_missing_fashion_mnist_suggests_the_debian_package(tmp_path, offline, monkeypatch):
    monkeypatch.setenv("SPARSETUNE_DEBIAN_FASHION_MNIST", str(tmp_path / "not-installed"))
    with pytest.raises(ValueError, match="apt-get install dataset-fashion-mnist") as error:
        load_splits(DataConfig(name="fashion-mnist", data_dir=tmp_path / "data"))
    assert "\n" not in str(error.value)


def test_corrupt_debian_files_are_rejected_and_leave_nothing_behind(tmp_path, offline, monkeypatch):
    fake = tmp_path / "debian"
    fake.mkdir()
    for name in IDX_FILES:
        (fake / f"{name}.gz").write_bytes(gzip.compress(b"not fashion-mnist"))
    monkeypatch.setenv("SPARSETUNE_DEBIAN_FASHION_MNIST", str(fake))
    with pytest.raises(ValueError, match="does not match the published checksum"):
        load_splits(DataConfig(name="fashion-mnist", data_dir=tmp_path / "data"))
    assert not (tmp_path / "data").exists()  # checked before anything is written


def test_fashion_mnist_from_debians_package(tmp_path, offline, monkeypatch):
    # Needs the real files: apt-get install dataset-fashion-mnist.
    splits = load_splits(DataConfig(name="fashion-mnist", data_dir=tmp_path))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (55000, 5000, 10000)
    assert splits.input_shape == (1, 28, 28) and splits.num_classes == 10
    assert splits.train.x.dtype == torch.float32 and splits.train.y.dtype == torch.int64
    assert abs(splits.train.x.mean().item()) < 0.05 and abs(splits.train.x.std().item() - 1) < 0.05
    assert torch.bincount(splits.test.y).tolist() == [1000] * 10
    raw = tmp_path / "FashionMNIST" / "raw"
    assert all((raw / name).is_file() for name in IDX_FILES)

    # The second load needs neither the package nor the network: the files are in data_dir now.
    monkeypatch.setenv("SPARSETUNE_DEBIAN_FASHION_MNIST", str(tmp_path / "not-installed"))
    again = load_splits(DataConfig(name="fashion-mnist", data_dir=tmp_path, val_size=1000))
    assert len(again.train) == 59000 and torch.equal(again.test.y, splits.test.y)
