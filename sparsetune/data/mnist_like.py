"""MNIST and Fashion-MNIST: torchvision's files, checked, then normalised once, as tensors.

Files live in torchvision's layout, `<data_dir>/MNIST/raw/train-images-idx3-ubyte` etc. Where they
come from, in order:
  1. already there (copied by hand or by an earlier run): read them;
  2. the gzipped files torchvision downloads (`MNIST/raw/train-images-idx3-ubyte.gz` ...), lying
     there without their unpacked twins (copied from another machine, or a download cut off
     before unpacking): checked against torchvision's published md5s and unpacked, no network;
  3. Fashion-MNIST only: Debian's `dataset-fashion-mnist` package, whose gzipped idx files are
     checked and unpacked into the layout above (no network needed);
  4. torchvision's download, with a short socket timeout so that a machine without network fails
     in seconds instead of hanging; `SPARSETUNE_OFFLINE=1` skips it.
Otherwise a one-line ValueError says where the files should go.

Every source is checked before anything is written: a `.gz` against its md5 and as a whole gzip
stream, an idx file's header (magic number, counts, dims) against its size before it is decoded,
its labels against the number of classes after. A damaged file gets one line naming it and the
fix, never a traceback. New files appear atomically (written under a temporary name in the same
folder, then renamed), and one process at a time fetches them, so trials starting together never
read a torn file; a failed fetch removes the folders it created.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from filelock import FileLock

from sparsetune.data.downloads import (
    DamagedFile,
    download_into,
    file_md5,
    gunzip,
    make_data_folder,
    offline_reason,
    remove_created,
)
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

# md5s of the *unpacked* Fashion-MNIST idx files: the contents of upstream's .gz files, whose own
# md5s torchvision publishes (`FashionMNIST.resources`, checked for a .gz in `raw/`). Departure
# from checking only those: Debian re-gzips the files (its .gz headers differ, so their md5s do
# too) while the contents are byte-identical to upstream's.
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


NUM_CLASSES = 10  # of MNIST and Fashion-MNIST alike

_MNIST = _Source("mnist", "MNIST", mean=0.1307, std=0.3081)
_FASHION_MNIST = _Source(
    "fashion-mnist",
    "FashionMNIST",
    mean=0.2860,
    std=0.3530,
    install_hint="apt-get install dataset-fashion-mnist",
)


def _load(config: DataConfig, source: _Source) -> RawData:
    raw = Path(config.data_dir) / source.torchvision_class / "raw"
    if not _has_idx_files(raw):
        # torchvision only to fetch: importing it costs a sweep's start about 3 s on 2 cores.
        from torchvision import datasets

        dataset_class: type[MNIST] = getattr(datasets, source.torchvision_class)
        _fetch(source, dataset_class, raw)
    num_classes = NUM_CLASSES  # both datasets: 10 (torchvision's `classes`)
    return RawData(
        train=_read_part(source, raw, "train", num_classes),
        test=_read_part(source, raw, "t10k", num_classes),
        num_classes=num_classes,
    )


# The registered loaders (sparsetune.catalog): `(DataConfig) -> RawData`.
load_mnist = partial(_load, source=_MNIST)
load_fashion_mnist = partial(_load, source=_FASHION_MNIST)


def _has_idx_files(raw: Path) -> bool:
    return all((raw / name).is_file() for name in IDX_FILES)


# --- reading, after checking ---------------------------------------------------------------------

_IMAGES_RANK, _LABELS_RANK = 3, 1
_UINT8 = 0x08  # the idx type code of unsigned bytes, the only one these datasets use


def _read_part(source: _Source, raw: Path, prefix: str, num_classes: int) -> TensorSet:
    """The part `prefix` ("train", "t10k"): images and labels checked and read (idx files, as
    torchvision's reader reads them), then normalised (uint8 N x 28 x 28 -> float32 N x 1 x 28 x
    28, (x - mean) / std)."""
    images_path = raw / f"{prefix}-images-idx3-ubyte"
    labels_path = raw / f"{prefix}-labels-idx1-ubyte"
    image_dims = _checked_idx_dims(source, images_path, _IMAGES_RANK)
    label_dims = _checked_idx_dims(source, labels_path, _LABELS_RANK)
    if image_dims[0] != label_dims[0]:
        raise _damaged(
            source,
            labels_path,
            f"holds {label_dims[0]} labels but {images_path.name} holds {image_dims[0]} images",
        )
    labels = _read_idx(labels_path, label_dims)
    out_of_range = (labels >= num_classes).nonzero()
    if len(out_of_range):
        index = int(out_of_range[0, 0])
        raise _damaged(
            source,
            labels_path,
            f"holds label {int(labels[index])} at index {index}, outside 0..{num_classes - 1} "
            f"({source.name} has {num_classes} classes)",
        )
    pixels = _read_idx(images_path, image_dims)
    x = pixels.unsqueeze(1).to(torch.float32).div_(255).sub_(source.mean).div_(source.std)
    return TensorSet(x, labels.to(torch.int64))


def _read_idx(path: Path, dims: tuple[int, ...]) -> torch.Tensor:
    """The uint8 data of an idx file whose header `_checked_idx_dims` has checked."""
    data = bytearray(path.read_bytes())  # writable: torch.frombuffer warns on bytes
    return torch.frombuffer(data, dtype=torch.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def _checked_idx_dims(source: _Source, path: Path, rank: int) -> tuple[int, ...]:
    """The dims an idx file's header gives (magic 0x000008RR: uint8 data of rank RR, then RR
    big-endian uint32 dims, then the bytes), once the header is checked against the file's size;
    a one-line ValueError naming the file and the fix otherwise."""
    what = "images" if rank == _IMAGES_RANK else "labels"
    header_size = 4 + 4 * rank
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            header = handle.read(header_size)
    except OSError as error:
        raise _damaged(source, path, f"cannot be read ({error.strerror})") from None
    magic = bytes((0, 0, _UINT8, rank))
    if size == 0:
        problem = "is empty (0 bytes)"
    elif header[:4] != magic[: len(header[:4])]:
        problem = (
            f"has magic number 0x{header[:4].hex()}, not 0x{magic.hex()} (idx {what}): another "
            "file, or damaged"
        )
    elif len(header) < header_size:
        problem = f"is cut short: {size} bytes, less than an idx header"
    else:
        dims = struct.unpack(f">{rank}I", header[4:])
        expected = header_size + math.prod(dims)
        if size == expected and min(dims) > 0:
            return dims
        shape = " x ".join(str(dim) for dim in dims)
        problem = (
            f"holds no {what} (header: {shape})"
            if min(dims) == 0
            else f"is {size} bytes but its header ({shape} {what}) makes it {expected}: "
            + ("cut short" if size < expected else "bytes follow the data")
        )
    raise _damaged(source, path, problem)


def _damaged(source: _Source, path: Path, problem: str) -> ValueError:
    """The one-line error for a damaged idx file in `raw`, with the fix that will work."""
    packed = path.with_name(f"{path.name}.gz")
    if packed.is_file():
        fix = f"delete it to have it unpacked again from {packed.name}"
    elif source is _FASHION_MNIST and _debian_fashion_mnist_dir() is not None:
        fix = "delete it to have it unpacked again from Debian's dataset-fashion-mnist"
    else:
        fix = "delete it to have it downloaded again, or copy it again"
    return ValueError(f"dataset {source.name!r}: {path} {problem}; {fix}")


# --- fetching: unpack what is on disk, else download ---------------------------------------------


def _fetch(source: _Source, dataset_class: type[MNIST], raw: Path) -> None:
    missing = [name for name in IDX_FILES if not (raw / name).is_file()]
    # Checked before anything is written, so a damaged source leaves nothing behind.
    packed = _checked_gz_in_raw(source, dataset_class, raw, missing)
    if packed is None and source is _FASHION_MNIST:
        packed = _checked_debian_gz(missing)
    created = make_data_folder(source.name, raw)
    reason = None
    try:
        # One process fetches; the others wait here and then find the files.
        with FileLock(raw / ".fetch.lock"):
            if _has_idx_files(raw):
                return
            if packed is not None:
                _unpack(source, packed, raw)
            else:
                reason = _download(source, dataset_class, raw)
    except BaseException:
        remove_created(created)  # leave no folders (or a lock file) behind a failure
        raise
    if reason is not None:
        remove_created(created)
        fixes = ["put the idx files there", "pass --data-dir"]
        fixes += [source.install_hint] if source.install_hint else []
        fixes += ["or connect to the network"]
        raise ValueError(
            f"dataset {source.name!r}: no files under {raw} and {reason}; " + ", ".join(fixes)
        )


@dataclass(frozen=True)
class _Packed:
    """A checked `.gz` to unpack as the idx file `name`, whose contents have md5 `content_md5`
    (checked again while unpacking: the file may change between the check and the unpacking)."""

    name: str
    path: Path
    content_md5: str
    fix: str  # what to do if it turns out damaged after all


def _checked_gz_in_raw(
    source: _Source, dataset_class: type[MNIST], raw: Path, missing: list[str]
) -> list[_Packed] | None:
    """torchvision's own `.gz` files for every missing idx file, checked; None if any is absent.
    A `.gz` matches the md5 torchvision publishes for it (`dataset_class.resources`); a
    Fashion-MNIST one may instead be re-gzipped (Debian's are), and then its contents must match
    the idx files' md5s."""
    if not missing or not all((raw / f"{name}.gz").is_file() for name in missing):
        return None
    published = dict(dataset_class.resources)
    fix = "delete it to have it downloaded again, or copy it again"
    checked = []
    for name in missing:
        path = raw / f"{name}.gz"
        content_md5 = _gunzipped_md5(source, path, fix)
        if file_md5(path) != published[path.name] and (
            source is not _FASHION_MNIST or content_md5 != FASHION_MNIST_IDX_MD5[name]
        ):
            raise ValueError(
                f"dataset {source.name!r}: {path} does not match the md5 torchvision publishes "
                f"for it (another version, or damaged); {fix}, or unpack it there yourself"
            )
        checked.append(_Packed(name, path, content_md5, fix))
    return checked


def _checked_debian_gz(missing: list[str]) -> list[_Packed] | None:
    """Debian's Fashion-MNIST `.gz` files for the missing idx files, checked against the
    published idx files' md5s; None if the package is not installed."""
    folder = _debian_fashion_mnist_dir()
    if folder is None:
        return None
    fix = "reinstall the package: apt-get install --reinstall dataset-fashion-mnist"
    checked = []
    for name in missing:
        path = folder / f"{name}.gz"
        content_md5 = _gunzipped_md5(_FASHION_MNIST, path, fix)
        if content_md5 != FASHION_MNIST_IDX_MD5[name]:
            raise ValueError(
                f"dataset 'fashion-mnist': {path} does not match the published checksum; {fix}"
            )
        checked.append(_Packed(name, path, content_md5, fix))
    return checked


def _gunzipped_md5(source: _Source, path: Path, fix: str, into: Path | None = None) -> str:
    try:
        return gunzip(path, into)
    except DamagedFile as error:
        raise ValueError(f"dataset {source.name!r}: {error}; {fix}") from None


def _debian_fashion_mnist_dir() -> Path | None:
    folder = Path(os.environ.get("SPARSETUNE_DEBIAN_FASHION_MNIST", DEBIAN_FASHION_MNIST_DIR))
    return folder if all((folder / f"{name}.gz").is_file() for name in IDX_FILES) else None


def _unpack(source: _Source, packed: list[_Packed], raw: Path) -> None:
    # torchvision 0.29 cannot read .gz idx files itself, so unpack them into its layout. Each
    # file appears whole or not at all; a set cut off part-way is completed by the next run.
    for item in packed:
        target = raw / item.name
        if _gunzipped_md5(source, item.path, item.fix, into=target) != item.content_md5:
            target.unlink(missing_ok=True)
            raise ValueError(
                f"dataset {source.name!r}: {item.path} changed while it was unpacked; run again"
            )


def _download(source: _Source, dataset_class: type[MNIST], raw: Path) -> str | None:
    """Download into `raw`; return None on success, else why it failed, in a few words."""
    skipped = offline_reason()
    if skipped is not None:
        return skipped

    def fetch(staging: Path) -> None:
        # torchvision checks each .gz against its published md5 before unpacking it.
        dataset_class(str(staging), train=True, download=True)
        downloaded = staging / source.torchvision_class / "raw"
        for name in IDX_FILES:
            os.replace(downloaded / name, raw / name)

    return download_into(raw, fetch)
