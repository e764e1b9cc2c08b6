"""CIFAR-10/100 through torchvision's own classes, on tiny files written in torchvision's on-disk
format, and the crop-and-flip augmentation on tensors.

torchvision checks each CIFAR file's md5 against the published ones; its own tests fake CIFAR by
patching the checks away. Here the expected md5s are set to those of the tiny files instead, so
torchvision's real check and reading code run.
"""

from __future__ import annotations

import hashlib
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torchvision import datasets

from sparsetune.config import DataConfig, TrainConfig
from sparsetune.data import DATASETS, load_splits
from sparsetune.data.augment import CropAndFlip
from sparsetune.data.cifar import _CIFAR10
from sparsetune.data.tensors import InMemoryLoader, TensorSet
from sparsetune.train.loop import fit

CIFAR10_MEAN, CIFAR10_STD = _CIFAR10.mean, _CIFAR10.std


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def images(count: int, offset: int) -> np.ndarray:
    """count x 3072 uint8 rows in CIFAR's layout: the red plane, then green, then blue, each 32x32
    row-major. Pixel (c, r, k) of image i is (i + offset + 7c + r + 2k) % 256."""
    i = np.arange(count)[:, None, None, None] + offset
    c = np.arange(3)[None, :, None, None]
    r = np.arange(32)[None, None, :, None]
    k = np.arange(32)[None, None, None, :]
    return ((i + 7 * c + r + 2 * k) % 256).astype(np.uint8).reshape(count, 3072)


def write_pickle(path: Path, obj: dict) -> None:
    path.write_bytes(pickle.dumps(obj))


def write_tiny_cifar10(root: Path, per_batch: int, test: int, monkeypatch) -> Path:
    """Five train batches, a test batch and batches.meta; torchvision told their md5s."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_list = []
    for batch in range(1, 6):
        name = f"data_batch_{batch}"
        labels = [(batch + i) % 10 for i in range(per_batch)]
        write_pickle(folder / name, {"data": images(per_batch, batch * 100), "labels": labels})
        train_list.append([name, md5(folder / name)])
    write_pickle(
        folder / "test_batch",
        {"data": images(test, 0), "labels": [i % 10 for i in range(test)]},
    )
    names = ["airplane", "automobile", "bird", "cat", "deer"]
    names += ["dog", "frog", "horse", "ship", "truck"]
    write_pickle(folder / "batches.meta", {"label_names": names})
    monkeypatch.setattr(datasets.CIFAR10, "train_list", train_list)
    monkeypatch.setattr(datasets.CIFAR10, "test_list", [["test_batch", md5(folder / "test_batch")]])
    meta = {"filename": "batches.meta", "key": "label_names", "md5": md5(folder / "batches.meta")}
    monkeypatch.setattr(datasets.CIFAR10, "meta", meta)
    return folder


def normalised(value: np.ndarray | int, channel: int) -> float:
    return (value / 255 - CIFAR10_MEAN[channel]) / CIFAR10_STD[channel]


# --- reading ------------------------------------------------------------------------------------


def test_cifar10_files_are_read_with_torchvision_and_normalised_per_channel(
    tmp_path, offline, monkeypatch
):
    write_tiny_cifar10(tmp_path, per_batch=4, test=6, monkeypatch=monkeypatch)
    raw = DATASETS["cifar10"](DataConfig(name="cifar10", data_dir=tmp_path))
    assert raw.num_classes == 10
    assert raw.train.x.shape == (20, 3, 32, 32) and raw.test.x.shape == (6, 3, 32, 32)
    assert raw.train.x.dtype == torch.float32 and raw.train.y.dtype == torch.int64
    assert raw.train.y.tolist()[:8] == [1, 2, 3, 4, 2, 3, 4, 5]  # batch 1, then batch 2
    assert raw.test.y.tolist() == [0, 1, 2, 3, 4, 5]
    # Channel-first, rows and columns where they were: test image 5, channel c, row r, column k.
    for c, r, k in [(0, 0, 0), (1, 3, 10), (2, 31, 30)]:
        expected = normalised((5 + 7 * c + r + 2 * k) % 256, c)
        assert raw.test.x[5, c, r, k].item() == pytest.approx(expected, abs=1e-5)
    # The second train batch's first image has offset 200.
    assert raw.train.x[4, 0, 0, 0].item() == pytest.approx(normalised(200, 0), abs=1e-5)
    assert isinstance(raw.train.augment, CropAndFlip) and raw.test.augment is None


def test_splits_augment_train_only(tmp_path, offline, monkeypatch):
    write_tiny_cifar10(tmp_path, per_batch=4, test=6, monkeypatch=monkeypatch)
    splits = load_splits(DataConfig(name="cifar10", data_dir=tmp_path, val_size=5))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (15, 5, 6)
    assert splits.input_shape == (3, 32, 32) and splits.num_classes == 10
    assert isinstance(splits.train.augment, CropAndFlip)
    assert splits.val.augment is None and splits.test.augment is None
    assert splits.to("meta").train.augment is splits.train.augment
    # The padding is black, in normalised units.
    expected_fill = tuple(-m / s for m, s in zip(CIFAR10_MEAN, CIFAR10_STD, strict=True))
    assert splits.train.augment.fill == pytest.approx(expected_fill)
    assert splits.train.augment.padding == 4


def test_cifar100_fine_labels(tmp_path, offline, monkeypatch):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    write_pickle(folder / "train", {"data": images(12, 0), "fine_labels": list(range(90, 102))})
    write_pickle(folder / "test", {"data": images(3, 50), "fine_labels": [99, 0, 42]})
    write_pickle(folder / "meta", {"fine_label_names": [f"class{i}" for i in range(100)]})
    monkeypatch.setattr(datasets.CIFAR100, "train_list", [["train", md5(folder / "train")]])
    monkeypatch.setattr(datasets.CIFAR100, "test_list", [["test", md5(folder / "test")]])
    meta = {"filename": "meta", "key": "fine_label_names", "md5": md5(folder / "meta")}
    monkeypatch.setattr(datasets.CIFAR100, "meta", meta)
    splits = load_splits(DataConfig(name="cifar100", data_dir=tmp_path, val_size=2))
    assert splits.num_classes == 100 and splits.test.y.tolist() == [99, 0, 42]
    # CIFAR-100's own statistics: channel 1 mean 0.4865, std 0.2564.
    expected = ((50 + 7) / 255 - 0.4865) / 0.2564
    assert splits.test.x[0, 1, 0, 0].item() == pytest.approx(expected, abs=1e-5)


def test_a_copied_archive_is_unpacked_without_the_network(tmp_path, offline, monkeypatch):
    source = tmp_path / "made"
    write_tiny_cifar10(source, per_batch=2, test=3, monkeypatch=monkeypatch)
    root = tmp_path / "data"
    root.mkdir()
    archive = root / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setattr(datasets.CIFAR10, "tgz_md5", md5(archive))
    splits = load_splits(DataConfig(name="cifar10", data_dir=root, val_size=2))
    assert len(splits.train) == 8 and len(splits.test) == 3
    assert (root / "cifar-10-batches-py" / "data_batch_5").is_file()
    # No staging folders left behind, and the archive is the user's: it stays.
    assert sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock")) == [
        "cifar-10-batches-py",
        "cifar-10-python.tar.gz",
    ]


def test_missing_cifar_offline_is_one_line_naming_the_fix(tmp_path, offline):
    data_dir = tmp_path / "no-data"
    with pytest.raises(ValueError) as error:
        load_splits(DataConfig(name="cifar10", data_dir=data_dir))
    message = str(error.value)
    assert "\n" not in message
    folder = data_dir / "cifar-10-batches-py"
    assert message.startswith(f"dataset 'cifar10': no files under {folder}")
    assert "SPARSETUNE_OFFLINE" in message and "--data-dir" in message
    assert "cifar-10-python.tar.gz" in message
    assert not data_dir.exists()  # a failed fetch leaves no folders behind


def test_corrupt_files_are_reported_with_the_fix(tmp_path, offline, monkeypatch):
    folder = write_tiny_cifar10(tmp_path, per_batch=2, test=2, monkeypatch=monkeypatch)
    (folder / "test_batch").write_bytes(b"truncated")
    with pytest.raises(ValueError, match="do not match torchvision's checksums.*delete the folder"):
        load_splits(DataConfig(name="cifar10", data_dir=tmp_path, val_size=2))


def test_an_incomplete_folder_lists_what_is_missing(tmp_path, offline, monkeypatch):
    folder = write_tiny_cifar10(tmp_path, per_batch=2, test=2, monkeypatch=monkeypatch)
    (folder / "data_batch_5").unlink()
    with pytest.raises(ValueError, match=r"lacks data_batch_5; copy the whole folder again"):
        load_splits(DataConfig(name="cifar10", data_dir=tmp_path, val_size=2))


# --- augmentation -------------------------------------------------------------------------------


def candidates(image: torch.Tensor, padding: int, fill: torch.Tensor) -> list[torch.Tensor]:
    """Every crop-and-flip of one C x H x W image, built the slow, obvious way."""
    channels, height, width = image.shape
    padded = fill.view(-1, 1, 1).expand(channels, height + 2 * padding, width + 2 * padding)
    padded = padded.clone()
    padded[:, padding : padding + height, padding : padding + width] = image
    crops = []
    for top in range(2 * padding + 1):
        for left in range(2 * padding + 1):
            crop = padded[:, top : top + height, left : left + width]
            crops += [crop, crop.flip(-1)]
    return crops


def test_each_output_is_one_crop_and_flip_and_all_of_them_occur():
    torch.manual_seed(0)
    x = torch.randn(400, 3, 6, 6)
    augment = CropAndFlip(padding=2, fill=(-1.0, -2.0, -3.0))
    out = augment(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    seen = []
    for image, result in zip(x, out, strict=True):
        matches = [
            i
            for i, crop in enumerate(candidates(image, 2, torch.tensor([-1.0, -2.0, -3.0])))
            if torch.equal(crop, result)
        ]
        assert len(matches) == 1  # random images: exactly one (offset, flip) explains it
        seen.append(matches[0])
    # 25 offsets x 2 flips, uniform: 400 draws see every one (a fair draw misses one with
    # probability about 0.015; the seed fixes this draw), and about half are flipped.
    assert len(set(seen)) == 50
    assert 150 < sum(index % 2 for index in seen) < 250
    assert not torch.equal(out, x)


def test_padding_is_filled_per_channel():
    x = torch.zeros(64, 3, 4, 4)
    out = CropAndFlip(padding=4, fill=(1.0, 2.0, 3.0))(x, torch.Generator().manual_seed(0))
    # With padding 4 on a 4x4 image, the window is all padding unless the offset lines up.
    for channel, value in enumerate((1.0, 2.0, 3.0)):
        assert set(out[:, channel].unique().tolist()) <= {0.0, value}
        assert (out[:, channel] == value).any()


def test_augmentation_is_deterministic_under_a_seed():
    x = torch.randn(16, 3, 8, 8)
    augment = CropAndFlip(padding=4, fill=(0.5, 0.5, 0.5))
    first = augment(x, torch.Generator().manual_seed(3))
    assert torch.equal(first, augment(x, torch.Generator().manual_seed(3)))
    assert not torch.equal(first, augment(x, torch.Generator().manual_seed(4)))


def test_without_padding_only_flips_happen():
    x = torch.randn(32, 3, 5, 5)
    out = CropAndFlip(padding=0)(x, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x, strict=True)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, x, strict=True)])
    assert (flipped ^ kept).all() and flipped.any() and kept.any()


def test_the_loader_augments_seeded_batches_and_leaves_plain_sets_alone():
    x, y = torch.randn(10, 3, 8, 8), torch.arange(10)
    augmented = TensorSet(x, y, CropAndFlip(padding=2))

    def batches(dataset: TensorSet, seed: int) -> list[torch.Tensor]:
        return [b for b, _ in InMemoryLoader(dataset, batch_size=4, shuffle=True, seed=seed)]

    first = batches(augmented, seed=0)
    assert [b.shape for b in first] == [(4, 3, 8, 8), (4, 3, 8, 8), (2, 3, 8, 8)]
    assert all(torch.equal(a, b) for a, b in zip(first, batches(augmented, 0), strict=True))
    plain = batches(TensorSet(x, y), seed=0)
    # Same order (the permutation is drawn first), but the augmented batches differ.
    assert not all(torch.equal(a, b) for a, b in zip(first, plain, strict=True))
    assert {row.numpy().tobytes() for b in plain for row in b} == {
        row.numpy().tobytes() for row in x
    }


def test_fit_trains_on_augmented_batches_without_knowing_the_dataset():
    calls = []

    def spy(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        calls.append(len(batch))
        return batch

    data_set = TensorSet(torch.randn(10, 2), torch.arange(10) % 2, spy)
    fit(nn.Linear(2, 2), data_set, TrainConfig(epochs=2, batch_size=4), seed=0)
    assert calls == [4, 4, 2, 4, 4, 2]


def test_crop_and_flip_rejects_negative_padding():
    with pytest.raises(ValueError, match="padding must be a non-negative integer"):
        CropAndFlip(padding=-1)
