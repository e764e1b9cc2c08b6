"""MNIST and Fashion-MNIST, read with torchvision's own classes and normalised once, as tensors.

Files live in torchvision's layout, `<data_dir>/MNIST/raw/train-images-idx3-ubyte` etc. Where they
come from, in order:
  1. already there (copied by hand or by an earlier run): read them;
  2. Fashion-MNIST only: Debian's `dataset-fashion-mnist` package, whose gzipped idx files are
     checked and unpacked into the layout above (no network needed);
  3. torchvision's download, with a short socket timeout so that a machine without network fails
     in seconds instead of hanging; `SPARSETUNE_OFFLINE=1` skips it.
Otherwise a one-line ValueError says where the files should go.

New files appear atomically (written under a temporary name in the same folder, then renamed),
and one process at a time fetches them, so trials starting together never read a torn file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from filelock import FileLock

from sparsetune.data.downloads import download_into, make_data_folder, offline_reason
from sparsetune.data.tensors import RawData, TensorSet

if TYPE_CHECKING:
    from torchvision.datasets import MNIST

    from sparsetune.config import DataConfig

DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# Checksums of the *unpacked* Fashion-MNIST idx files, as published with the dataset. Departure
# from checking the .gz files against `FashionMNIST.resources`: Debian re-gzips them (its .gz
# headers differ, so their md5s do too) while the contents are byte-identical to upstream's.
FASHION_MNIST_IDX_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}


@dataclass(frozen=True)
class _Source:
    name: str  # the registry name, for messages
    torchvision_class: str  # also the folder name under data_dir, as torchvision lays it out
    mean: float  # of the training pixels scaled to [0, 1]
    std: float
    install_hint: str = ""


_MNIST = _Source("mnist", "MNIST", mean=0.1307, std=0.3081)
_FASHION_MNIST = _Source(
    "fashion-mnist",
    "FashionMNIST",
    mean=0.2860,
    std=0.3530,
    install_hint="apt-get install dataset-fashion-mnist",
)


def _load(config: DataConfig, source: _Source) -> RawData:
    from torchvision import datasets

    dataset_class: type[MNIST] = getattr(datasets, source.torchvision_class)
    root = Path(config.data_dir)
    raw = root / source.torchvision_class / "raw"
    if not _has_idx_files(raw):
        _fetch(source, dataset_class, raw)
    train = dataset_class(root, train=True, download=False)
    test = dataset_class(root, train=False, download=False)
    return RawData(
        train=_normalised(train, source),
        test=_normalised(test, source),
        num_classes=len(dataset_class.classes),
    )


# The registered loaders (sparsetune.catalog): `(DataConfig) -> RawData`.
load_mnist = partial(_load, source=_MNIST)
load_fashion_mnist = partial(_load, source=_FASHION_MNIST)


def _normalised(dataset: MNIST, source: _Source) -> TensorSet:
    # Once for the whole set: uint8 N x 28 x 28 -> float32 N x 1 x 28 x 28, then (x - mean) / std.
    x = dataset.data.unsqueeze(1).to(torch.float32).div_(255).sub_(source.mean).div_(source.std)
    return TensorSet(x, dataset.targets.to(torch.int64))


def _has_idx_files(raw: Path) -> bool:
    return all((raw / name).is_file() for name in IDX_FILES)


def _fetch(source: _Source, dataset_class: type[MNIST], raw: Path) -> None:
    created = make_data_folder(source.name, raw)
    # One process fetches; the others wait here and then find the files.
    with FileLock(raw / ".fetch.lock"):
        if _has_idx_files(raw):
            return
        debian_folder = _debian_fashion_mnist_dir() if source is _FASHION_MNIST else None
        if debian_folder is not None:
            _unpack_debian_fashion_mnist(debian_folder, raw)
            return
        reason = _download(source, dataset_class, raw)
    if reason is not None:
        if created is not None:  # leave no empty folders (or a lock file) behind a failure
            shutil.rmtree(created, ignore_errors=True)
        fixes = ["put the idx files there", "pass --data-dir"]
        fixes += [source.install_hint] if source.install_hint else []
        fixes += ["or connect to the network"]
        raise ValueError(
            f"dataset {source.name!r}: no files under {raw} and {reason}; " + ", ".join(fixes)
        )


def _debian_fashion_mnist_dir() -> Path | None:
    folder = Path(os.environ.get("SPARSETUNE_DEBIAN_FASHION_MNIST", DEBIAN_FASHION_MNIST_DIR))
    return folder if all((folder / f"{name}.gz").is_file() for name in IDX_FILES) else None


def _unpack_debian_fashion_mnist(folder: Path, raw: Path) -> None:
    # torchvision 0.29 cannot read .gz idx files itself, so unpack them into its layout.
    from torchvision.datasets.utils import check_integrity, extract_archive

    with tempfile.TemporaryDirectory(dir=raw, prefix=".unpacking-") as staging:
        for name in IDX_FILES:
            # A lone .gz is not an archive, so this returns the unpacked file's path.
            unpacked = extract_archive(str(folder / f"{name}.gz"), staging)
            if not check_integrity(unpacked, FASHION_MNIST_IDX_MD5[name]):
                raise ValueError(
                    f"dataset 'fashion-mnist': {folder / name}.gz does not match the published "
                    "checksum; reinstall dataset-fashion-mnist"
                )
            os.replace(unpacked, raw / name)


def _download(source: _Source, dataset_class: type[MNIST], raw: Path) -> str | None:
    """Download into `raw`; return None on success, else why it failed, in a few words."""
    skipped = offline_reason()
    if skipped is not None:
        return skipped

    def fetch(staging: Path) -> None:
        dataset_class(str(staging), train=True, download=True)
        downloaded = staging / source.torchvision_class / "raw"
        for name in IDX_FILES:
            os.replace(downloaded / name, raw / name)

    return download_into(raw, fetch)
