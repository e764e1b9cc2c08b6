"""CIFAR-10 and CIFAR-100, read with torchvision's own classes and normalised once, as tensors.

Files live in torchvision's layout: `<data_dir>/cifar-10-batches-py/data_batch_1` .. `test_batch`,
`batches.meta` (CIFAR-100: `<data_dir>/cifar-100-python/train`, `test`, `meta`). Each is checked
against the md5 torchvision publishes for it (`train_list`, `test_list`, `meta`) before it is
read (they are pickles), and a damaged one is named. Where they come from, in order:
  1. already there (copied by hand or by an earlier run): read them;
  2. torchvision's archive (`cifar-10-python.tar.gz`) copied into `data_dir`: checked against
     its published md5 (`tgz_md5`) before anything is written, and unpacked, no network needed;
  3. torchvision's download, with a short socket timeout (`sparsetune.data.downloads`);
     `SPARSETUNE_OFFLINE=1` skips it.
Otherwise a one-line ValueError says where the files should go.

The dataset folder appears whole: it is unpacked under a temporary name in `data_dir`, then
renamed, by one process at a time, so trials starting together never read half a dataset.

The training part carries the standard augmentation (`CropAndFlip`: 4-pixel padding, random 32x32
crop, horizontal flip), which `InMemoryLoader` applies to each training batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from filelock import FileLock

from sparsetune.data.augment import CropAndFlip
from sparsetune.data.downloads import (
    DamagedFile,
    download_into,
    file_md5,
    make_data_folder,
    offline_reason,
    remove_created,
)
from sparsetune.data.tensors import RawData, TensorSet

if TYPE_CHECKING:
    from torchvision.datasets import CIFAR10

    from sparsetune.config import DataConfig

CROP_PADDING = 4


@dataclass(frozen=True)
class _Source:
    name: str  # the registry name, for messages
    torchvision_class: str
    # Per channel (R, G, B), of the training pixels scaled to [0, 1].
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


# Statistics of the 50,000 training images. Departure from GraSP's CIFAR-10 script, which
# divides by (0.2023, 0.1994, 0.2010), a widely copied figure smaller than the pixels' std; its
# CIFAR-100 constants agree with these to 3 decimals. With BatchNorm after the first convolution
# the scale makes little difference.
_CIFAR10 = _Source("cifar10", "CIFAR10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
_CIFAR100 = _Source("cifar100", "CIFAR100", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))


def _load(config: DataConfig, source: _Source) -> RawData:
    from torchvision import datasets

    dataset_class: type[CIFAR10] = getattr(datasets, source.torchvision_class)
    root = Path(config.data_dir)
    folder = root / dataset_class.base_folder
    missing = _missing_files(dataset_class, folder)
    if missing and folder.exists():
        raise ValueError(
            f"dataset {source.name!r}: {folder} lacks {', '.join(missing)}; copy the whole "
            "folder again, or delete it to have it downloaded"
        )
    if missing:
        _fetch(source, dataset_class, root)
    damaged = _first_damaged_file(dataset_class, folder)
    if damaged is not None:
        raise ValueError(
            f"dataset {source.name!r}: the files under {folder} do not match torchvision's "
            f"checksums ({damaged}); delete the folder to have it downloaded, or copy it again"
        )
    train = dataset_class(root, train=True, download=False)
    test = dataset_class(root, train=False, download=False)
    # Black in normalised units: what torchvision's RandomCrop pads PIL images with.
    fill = tuple(-mean / std for mean, std in zip(source.mean, source.std, strict=True))
    return RawData(
        train=_normalised(train, source, augment=CropAndFlip(CROP_PADDING, fill)),
        test=_normalised(test, source, augment=None),
        num_classes=len(train.classes),
    )


# The registered loaders (sparsetune.catalog): `(DataConfig) -> RawData`.
load_cifar10 = partial(_load, source=_CIFAR10)
load_cifar100 = partial(_load, source=_CIFAR100)


def _normalised(dataset: CIFAR10, source: _Source, augment: CropAndFlip | None) -> TensorSet:
    # Once for the whole set: uint8 N x 32 x 32 x 3 (HWC) -> float32 N x 3 x 32 x 32, then
    # (x - mean) / std per channel. 50,000 images take about 600 MB as float32.
    pixels = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    mean = torch.tensor(source.mean).view(1, 3, 1, 1)
    std = torch.tensor(source.std).view(1, 3, 1, 1)
    x = pixels.to(torch.float32).div_(255).sub_(mean).div_(std)
    return TensorSet(x, torch.tensor(dataset.targets, dtype=torch.int64), augment)


def _published_md5s(dataset_class: type[CIFAR10]) -> dict[str, str]:
    """Each file of the dataset folder, and the md5 torchvision publishes for it."""
    md5s = dict(dataset_class.train_list + dataset_class.test_list)
    return md5s | {dataset_class.meta["filename"]: dataset_class.meta["md5"]}


def _first_damaged_file(dataset_class: type[CIFAR10], folder: Path) -> str | None:
    """What is wrong with the first file that does not match its published md5 (it would be
    unpickled next), in a few words naming it; None when all of them match."""
    for name, md5 in _published_md5s(dataset_class).items():
        path = folder / name
        try:
            if file_md5(path) != md5:
                return f"{path} is cut short, damaged or another version"
        except DamagedFile as error:
            return str(error)
    return None


def _missing_files(dataset_class: type[CIFAR10], folder: Path) -> list[str]:
    return [name for name in _published_md5s(dataset_class) if not (folder / name).is_file()]


def _fetch(source: _Source, dataset_class: type[CIFAR10], root: Path) -> None:
    folder = root / dataset_class.base_folder
    archive = root / dataset_class.filename
    have_archive = archive.is_file()
    if have_archive:  # checked before anything is written
        _check_archive(source, dataset_class, archive)
    created = make_data_folder(source.name, root)
    try:
        # One process fetches; the others wait here and then find the files.
        with FileLock(root / f".{dataset_class.base_folder}.fetch.lock"):
            if not _missing_files(dataset_class, folder):
                return
            reason = _unpack_or_download(dataset_class, root, archive, have_archive)
    except BaseException:
        remove_created(created)  # leave no folders (or a lock file) behind a failure
        raise
    if reason is not None:
        remove_created(created)
        raise ValueError(
            f"dataset {source.name!r}: no files under {folder} and {reason}; put torchvision's "
            f"{dataset_class.base_folder} folder or {dataset_class.filename} in {root}, "
            "pass --data-dir, or connect to the network"
        )


def _check_archive(source: _Source, dataset_class: type[CIFAR10], archive: Path) -> None:
    fix = "delete it to have it downloaded, or copy it again"
    try:
        matches = file_md5(archive) == dataset_class.tgz_md5
    except DamagedFile as error:
        raise ValueError(f"dataset {source.name!r}: {error}; {fix}") from None
    if not matches:
        raise ValueError(
            f"dataset {source.name!r}: {archive} does not match the md5 torchvision publishes "
            f"for it (cut short, damaged or another version); {fix}"
        )


def _unpack_or_download(
    dataset_class: type[CIFAR10], root: Path, archive: Path, have_archive: bool
) -> str | None:
    """Unpack a copied archive (its md5 checked), else download; return None on success, else
    why it failed."""
    if not have_archive:
        skipped = offline_reason()
        if skipped is not None:
            return skipped

    def fetch(staging: Path) -> None:
        if have_archive:
            # torchvision's download skips a file whose md5 matches, then unpacks it.
            os.symlink(archive.resolve(), staging / dataset_class.filename)
        dataset_class(str(staging), train=False, download=True)
        os.replace(staging / dataset_class.base_folder, root / dataset_class.base_folder)

    return download_into(root, fetch)
