"""Data files that are wrong or damaged: one line naming the file and the fix, nothing written.

Every damaged file here is derived from the real Fashion-MNIST files of Debian's
`dataset-fashion-mnist` package (apt-get install dataset-fashion-mnist): cut short, emptied,
given another magic number, labels beyond the ten classes under a correct header, a gzip stream
with bytes changed or cut off. The loader is driven as a trial drives it (`load_splits`), and
through the real `sparsetune prune` command, which must exit 2 with one line, never 130
("interrupted": click's reading of the EOFError a cut-off gzip stream raises).
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_one_error_line, run_cli
from test_cifar import write_tiny_cifar10
from test_data import write_tiny_mnist
from torchvision import datasets

from sparsetune.config import DataConfig
from sparsetune.data import load_splits
from sparsetune.data.mnist_like import IDX_FILES

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="module")
def fashion_bytes() -> dict[str, bytes]:
    """The real Fashion-MNIST files, gzipped as Debian ships them: idx name -> .gz bytes."""
    return {name: (DEBIAN / f"{name}.gz").read_bytes() for name in IDX_FILES}


@pytest.fixture
def no_debian(monkeypatch, tmp_path):
    """Offline, and Debian's package out of reach: files come from the data folder or nowhere.
    SPARSETUNE_OFFLINE makes any download attempt fail the test with "no files under"."""
    monkeypatch.setenv("SPARSETUNE_OFFLINE", "1")
    monkeypatch.setenv("SPARSETUNE_DEBIAN_FASHION_MNIST", str(tmp_path / "not-installed"))


def fashion_raw(root: Path, fashion_bytes: dict[str, bytes], packed: bool = False) -> Path:
    """The real files in torchvision's layout under `root`: unpacked idx files, or (`packed`)
    the .gz files as torchvision's download leaves them."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name, data in fashion_bytes.items():
        if packed:
            (raw / f"{name}.gz").write_bytes(data)
        else:
            (raw / name).write_bytes(gzip.decompress(data))
    return raw


def listing(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def load_error(data_dir: Path, name: str = "fashion-mnist") -> str:
    with pytest.raises(ValueError) as error:
        load_splits(DataConfig(name=name, data_dir=data_dir, val_size=10))
    message = str(error.value)
    assert "\n" not in message and len(message) < 400, message
    return message


def rewrite(path: Path, change) -> None:
    path.write_bytes(change(path.read_bytes()))


def labels_with(data: bytes, index: int, value: int) -> bytes:
    """A labels file whose label at `index` is `value`, its header left as it was (correct)."""
    body = bytearray(data)
    body[8 + index] = value
    return bytes(body)


# --- idx files in the data folder ----------------------------------------------------------------

IDX_DAMAGE = {
    "cut short": (
        "train-images-idx3-ubyte",
        lambda data: data[: len(data) // 2],
        "is 23520008 bytes but its header (60000 x 28 x 28 images) makes it 47040016: cut short",
    ),
    "zero bytes": ("train-labels-idx1-ubyte", lambda data: b"", "is empty (0 bytes)"),
    "another magic number": (
        "train-images-idx3-ubyte",
        lambda data: struct.pack(">I", 0x0801) + data[4:],  # a labels file's magic
        "has magic number 0x00000801, not 0x00000803 (idx images): another file, or damaged",
    ),
    "not an idx file": (
        "train-labels-idx1-ubyte",
        lambda data: b"<html>404 Not Found</html>" + data,
        "has magic number 0x3c68746d, not 0x00000801 (idx labels): another file, or damaged",
    ),
    "bytes after the data": (
        "train-labels-idx1-ubyte",
        lambda data: data + b"\0" * 3,
        "is 60011 bytes but its header (60000 labels) makes it 60008: bytes follow the data",
    ),
    "fewer labels than images": (
        "train-labels-idx1-ubyte",
        lambda data: struct.pack(">II", 0x0801, 59999) + data[8:-1],
        "holds 59999 labels but train-images-idx3-ubyte holds 60000 images",
    ),
    "a label beyond the classes": (
        "train-labels-idx1-ubyte",
        lambda data: labels_with(data, 4321, 12),
        "holds label 12 at index 4321, outside 0..9 (fashion-mnist has 10 classes)",
    ),
    "test labels beyond the classes": (
        "t10k-labels-idx1-ubyte",
        lambda data: labels_with(data, 0, 255),
        "holds label 255 at index 0, outside 0..9 (fashion-mnist has 10 classes)",
    ),
}


@pytest.mark.parametrize("damage", IDX_DAMAGE, ids=list(IDX_DAMAGE))
def test_a_damaged_idx_file_is_named_with_the_fix(tmp_path, fashion_bytes, no_debian, damage):
    name, change, problem = IDX_DAMAGE[damage]
    raw = fashion_raw(tmp_path, fashion_bytes)
    rewrite(raw / name, change)
    before = listing(tmp_path)
    message = load_error(tmp_path)
    assert message == (
        f"dataset 'fashion-mnist': {raw / name} {problem}; delete it to have it downloaded "
        "again, or copy it again"
    )
    assert listing(tmp_path) == before  # nothing written, no lock taken


def test_the_fix_names_the_source_the_file_will_come_back_from(
    tmp_path, fashion_bytes, monkeypatch
):
    monkeypatch.setenv("SPARSETUNE_OFFLINE", "1")
    monkeypatch.setenv("SPARSETUNE_DEBIAN_FASHION_MNIST", str(DEBIAN))
    raw = fashion_raw(tmp_path, fashion_bytes)
    (raw / "train-images-idx3-ubyte").write_bytes(b"")
    assert load_error(tmp_path).endswith(
        "delete it to have it unpacked again from Debian's dataset-fashion-mnist"
    )
    # The fix works: deleted, the file comes back from the package and the set loads.
    (raw / "train-images-idx3-ubyte").unlink()
    splits = load_splits(DataConfig(name="fashion-mnist", data_dir=tmp_path, val_size=10))
    assert len(splits.train) == 59990 and len(splits.test) == 10000


def test_a_damaged_idx_file_beside_its_gz_is_unpacked_again_once_deleted(
    tmp_path, fashion_bytes, no_debian
):
    raw = fashion_raw(tmp_path, fashion_bytes)
    name = "t10k-images-idx3-ubyte"
    (raw / f"{name}.gz").write_bytes(fashion_bytes[name])
    rewrite(raw / name, lambda data: data[:-1])
    assert load_error(tmp_path).endswith(f"delete it to have it unpacked again from {name}.gz")
    (raw / name).unlink()
    splits = load_splits(DataConfig(name="fashion-mnist", data_dir=tmp_path, val_size=10))
    assert torch.bincount(splits.test.y).tolist() == [1000] * 10
    assert (raw / name).read_bytes() == gzip.decompress(fashion_bytes[name])


# --- .gz files: torchvision's in MNIST/raw, Debian's ----------------------------------------------


def test_torchvisions_gz_files_in_raw_are_read_without_the_network(
    tmp_path, fashion_bytes, no_debian
):
    # No idx file, no Debian package, downloads refused: only the .gz files can serve.
    raw = fashion_raw(tmp_path, fashion_bytes, packed=True)
    splits = load_splits(DataConfig(name="fashion-mnist", data_dir=tmp_path, val_size=5000))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (55000, 5000, 10000)
    assert torch.bincount(splits.test.y).tolist() == [1000] * 10
    for name in IDX_FILES:
        assert (raw / name).read_bytes() == gzip.decompress(fashion_bytes[name])
    # The .gz files stay (they are the user's); no staging file is left.
    assert sorted(path.name for path in raw.iterdir() if path.name != ".fetch.lock") == sorted(
        [*IDX_FILES, *(f"{name}.gz" for name in IDX_FILES)]
    )


GZ_DAMAGE = {
    # bytes changed in the middle of the deflate stream, the size kept
    "bytes changed": (
        lambda data: data[:5000] + bytes(b ^ 0xFF for b in data[5000:5100]) + data[5100:],
        "is not a valid gzip file",
    ),
    "cut short": (lambda data: data[: len(data) // 3], "is cut short (the gzip stream ends early)"),
    "zero bytes": (lambda data: b"", "is empty (0 bytes)"),
    "not gzip": (lambda data: b"PK\x03\x04" + data[4:], "is not a valid gzip file"),
}


@pytest.mark.parametrize("damage", GZ_DAMAGE, ids=list(GZ_DAMAGE))
def test_a_damaged_gz_in_raw_is_named_and_nothing_is_unpacked(
    tmp_path, fashion_bytes, no_debian, damage
):
    change, problem = GZ_DAMAGE[damage]
    raw = fashion_raw(tmp_path, fashion_bytes, packed=True)
    damaged = raw / "t10k-images-idx3-ubyte.gz"
    rewrite(damaged, change)
    before = listing(tmp_path)
    message = load_error(tmp_path)
    assert message.startswith(f"dataset 'fashion-mnist': {damaged} {problem}"), message
    assert message.endswith("delete it to have it downloaded again, or copy it again")
    assert listing(tmp_path) == before  # not one idx file unpacked, no lock, no staging file


def test_a_whole_gz_that_is_another_file_does_not_match_the_published_md5(tmp_path, no_debian):
    # MNIST's .gz files are checked against `MNIST.resources`: a gzip of other bytes is refused.
    raw = tmp_path / "MNIST" / "raw"
    write_tiny_mnist(raw, train=30, test=12)
    for name in IDX_FILES:
        (raw / name).with_name(f"{name}.gz").write_bytes(gzip.compress((raw / name).read_bytes()))
        (raw / name).unlink()
    before = listing(tmp_path)
    message = load_error(tmp_path, "mnist")
    first = raw / "train-images-idx3-ubyte.gz"
    assert message == (
        f"dataset 'mnist': {first} does not match the md5 torchvision publishes for it (another "
        "version, or damaged); delete it to have it downloaded again, or copy it again, or "
        "unpack it there yourself"
    )
    assert listing(tmp_path) == before


def test_gz_files_matching_torchvisions_md5s_are_unpacked(tmp_path, no_debian, monkeypatch):
    # Real MNIST is not on this machine: tiny files, and torchvision told their md5s (the way
    # tests/data/test_cifar.py fakes CIFAR), so the check that runs is the real one.
    raw = tmp_path / "MNIST" / "raw"
    write_tiny_mnist(raw, train=30, test=12)
    resources = []
    for name in IDX_FILES:
        packed = raw / f"{name}.gz"
        packed.write_bytes(gzip.compress((raw / name).read_bytes()))
        (raw / name).unlink()
        resources.append((packed.name, hashlib.md5(packed.read_bytes()).hexdigest()))
    monkeypatch.setattr(datasets.MNIST, "resources", resources)
    splits = load_splits(DataConfig(name="mnist", data_dir=tmp_path, val_size=5))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (25, 5, 12)
    assert splits.test.y.tolist() == [i % 10 for i in range(12)]


def test_a_damaged_debian_gz_names_the_package_and_leaves_nothing(
    tmp_path, fashion_bytes, monkeypatch
):
    debian = tmp_path / "debian"
    debian.mkdir()
    for name, data in fashion_bytes.items():
        (debian / f"{name}.gz").write_bytes(data)
    damaged = debian / "train-images-idx3-ubyte.gz"
    rewrite(damaged, lambda data: data[:1_000_000])
    monkeypatch.setenv("SPARSETUNE_OFFLINE", "1")
    monkeypatch.setenv("SPARSETUNE_DEBIAN_FASHION_MNIST", str(debian))
    message = load_error(tmp_path / "data")
    assert message == (
        f"dataset 'fashion-mnist': {damaged} is cut short (the gzip stream ends early); "
        "reinstall the package: apt-get install --reinstall dataset-fashion-mnist"
    )
    assert not (tmp_path / "data").exists()  # no folder, no lock, no partial set


# --- CIFAR: torchvision's md5s --------------------------------------------------------------------


def test_a_cifar_file_with_bytes_overwritten_is_named(tmp_path, monkeypatch, no_debian):
    folder = write_tiny_cifar10(tmp_path, per_batch=2, test=2, monkeypatch=monkeypatch)
    rewrite(folder / "data_batch_3", lambda data: data[:-10] + b"\0" * 10)  # the size kept
    message = load_error(tmp_path, "cifar10")
    assert f"({folder / 'data_batch_3'} is cut short, damaged or another version)" in message
    assert message.endswith("delete the folder to have it downloaded, or copy it again")


def test_a_damaged_cifar_archive_is_refused_before_anything_is_written(
    tmp_path, monkeypatch, no_debian
):
    root = tmp_path / "data"
    root.mkdir()
    archive = root / "cifar-10-python.tar.gz"
    # torchvision's published md5 (the real tgz_md5, not patched): a cut-off copy never matches.
    archive.write_bytes(gzip.compress(b"the first megabyte of a copy that failed"))
    message = load_error(root, "cifar10")
    assert message == (
        f"dataset 'cifar10': {archive} does not match the md5 torchvision publishes for it (cut "
        "short, damaged or another version); delete it to have it downloaded, or copy it again"
    )
    assert listing(root) == ["cifar-10-python.tar.gz"]


# --- through the command ------------------------------------------------------------------------


def prune(tmp_path: Path, data_dir: Path, env: dict[str, str]):
    arguments = ["--model", "lenet300", "--dataset", "fashion-mnist", "--epochs", "1"]
    arguments += ["--data-dir", str(data_dir), "--out", str(tmp_path / "out")]
    arguments += ["--cache-dir", str(tmp_path / "cache")]
    return run_cli("prune", *arguments, cwd=tmp_path, env=env)


def test_cli_a_cut_off_idx_file_is_one_line_and_exit_2(tmp_path, fashion_bytes):
    data_dir = tmp_path / "data"
    raw = fashion_raw(data_dir, fashion_bytes)
    damaged = raw / "train-images-idx3-ubyte"
    rewrite(damaged, lambda data: data[:-784])
    before = listing(tmp_path)
    result = prune(tmp_path, data_dir, {"SPARSETUNE_DEBIAN_FASHION_MNIST": str(tmp_path / "no")})
    assert_one_error_line(result, [str(damaged), "cut short", "delete it"])
    assert listing(tmp_path) == before  # no --out, no cache, nothing in the data folder


def test_cli_a_cut_off_debian_gz_is_bad_input_not_an_interruption(tmp_path, fashion_bytes):
    debian = tmp_path / "debian"
    debian.mkdir()
    for name, data in fashion_bytes.items():
        (debian / f"{name}.gz").write_bytes(data[: len(data) // 2])
    before = listing(tmp_path)
    result = prune(tmp_path, tmp_path / "data", {"SPARSETUNE_DEBIAN_FASHION_MNIST": str(debian)})
    assert_one_error_line(
        result, [str(debian / "train-images-idx3-ubyte.gz"), "cut short", "--reinstall"]
    )
    assert listing(tmp_path) == before


def test_cli_a_damaged_gz_in_raw_is_one_line_and_exit_2(tmp_path, fashion_bytes):
    data_dir = tmp_path / "data"
    raw = fashion_raw(data_dir, fashion_bytes, packed=True)
    damaged = raw / "train-labels-idx1-ubyte.gz"
    rewrite(damaged, lambda data: data[:100] + b"\xff" * 50 + data[150:])
    before = listing(tmp_path)
    result = prune(tmp_path, data_dir, {"SPARSETUNE_DEBIAN_FASHION_MNIST": str(tmp_path / "no")})
    assert_one_error_line(result, [str(damaged), "not a valid gzip file", "delete it"])
    assert listing(tmp_path) == before
