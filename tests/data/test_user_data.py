"""Your own data through the dataset name: `npz:FILE`, `package.module:factory` and
`imagefolder:FOLDER`, loaded, normalised and split like the built-in sets."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from image_folders import write_fashion_mnist_folder

from sparsetune.config import DataConfig
from sparsetune.data import load_splits
from sparsetune.data.sources import IMAGEFOLDER_TEST_FRACTION


def arrays(train: int = 120, test: int = 30, classes: int = 3, seed: int = 0) -> dict:
    """uint8 1 x 8 x 8 images whose label is their brightness band: learnable, reproducible."""
    generator = np.random.default_rng(seed)

    def part(count: int) -> tuple[np.ndarray, np.ndarray]:
        y = generator.integers(0, classes, count)
        x = generator.integers(0, 60, (count, 1, 8, 8)) + (y * 80)[:, None, None, None]
        return x.astype(np.uint8), y.astype(np.int64)

    x_train, y_train = part(train)
    x_test, y_test = part(test)
    # Every class in train, so that K is the same whatever the draw.
    y_train[:classes] = np.arange(classes)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def save_npz(path: Path, **overrides) -> Path:
    np.savez(path, **(arrays() | overrides))
    return path


def factory_module(tmp_path: Path, monkeypatch, body: str) -> str:
    """Write `body` as module `userdata_<test>` under tmp_path, importable; return its name."""
    module = f"userdata_{abs(hash(str(tmp_path))) % 10**8}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    return module


# --- names --------------------------------------------------------------------------------------


def test_file_and_folder_names_become_absolute_and_are_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert DataConfig(name="npz:data.npz").name == f"npz:{tmp_path / 'data.npz'}"
    assert DataConfig(name="imagefolder:images").name == f"imagefolder:{tmp_path / 'images'}"
    # Validating again (a worker reading a dumped config) changes nothing.
    config = DataConfig(name="npz:data.npz")
    assert DataConfig.model_validate(config.model_dump()).name == config.name


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("npz:", ["'npz:'", "names no path", "npz:PATH"]),
        ("imagefolder: ", ["names no path", "imagefolder:PATH"]),
        ("cifar7", ["unknown dataset 'cifar7'", "fashion-mnist", "npz:FILE", "imagefolder:"]),
        ("nowhere_pkg.data:make", ["cannot import 'nowhere_pkg.data'", "PYTHONPATH"]),
    ],
)
def test_bad_names_are_one_line(name, words):
    with pytest.raises(ValueError) as raised:
        DataConfig(name=name)
    message = str(raised.value)
    assert all(word in message for word in words), message


def test_a_factory_name_must_be_callable(tmp_path, monkeypatch):
    module = factory_module(tmp_path, monkeypatch, "DATA = 3\n")
    with pytest.raises(ValueError, match="is not callable .int.; point it at a zero-argument"):
        DataConfig(name=f"{module}:DATA")


def test_built_in_names_validate_without_torch():
    code = (
        "import sys; from sparsetune.config import DataConfig; DataConfig(name='fashion-mnist'); "
        "DataConfig(name='npz:/nowhere.npz'); DataConfig(name='imagefolder:/nowhere'); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- npz ----------------------------------------------------------------------------------------


def test_npz_is_read_scaled_standardised_and_split(tmp_path):
    path = save_npz(tmp_path / "bands.npz")
    splits = load_splits(DataConfig(name=f"npz:{path}", val_size=20, subset=50))
    assert splits.num_classes == 3
    assert splits.input_shape == (1, 8, 8)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (50, 20, 30)
    assert splits.train.x.dtype == torch.float32 and splits.train.y.dtype == torch.int64
    # Standardised with the published train part's statistics: the train part of a full load
    # has mean 0 and std 1; the test part is scaled with the same numbers.
    whole = load_splits(DataConfig(name=f"npz:{path}", val_size=1))
    full_train = torch.cat([whole.train.x, whole.val.x])
    assert abs(float(full_train.mean())) < 1e-5
    assert abs(float(full_train.std()) - 1) < 1e-3
    raw = arrays()
    train_pixels = raw["x_train"].astype(np.float64) / 255
    expected = (raw["x_test"] / 255 - train_pixels.mean()) / train_pixels.std(ddof=1)
    assert torch.allclose(whole.test.x, torch.from_numpy(expected).float(), atol=1e-4)
    assert torch.equal(whole.test.y, torch.from_numpy(raw["y_test"]))


def test_npz_validation_split_follows_split_seed_as_for_built_ins(tmp_path):
    path = save_npz(tmp_path / "bands.npz")
    first = load_splits(DataConfig(name=f"npz:{path}", val_size=20))
    again = load_splits(DataConfig(name=f"npz:{path}", val_size=20, split_seed=0))
    other = load_splits(DataConfig(name=f"npz:{path}", val_size=20, split_seed=1))
    assert torch.equal(first.val.x, again.val.x)
    assert not torch.equal(first.val.x, other.val.x)
    assert torch.equal(first.test.x, other.test.x)


def test_npz_float_features_are_standardised_over_everything(tmp_path):
    generator = np.random.default_rng(1)
    x_train = generator.normal(5.0, 3.0, (60, 12)).astype(np.float32)
    path = save_npz(
        tmp_path / "features.npz",
        x_train=x_train,
        y_train=np.arange(60) % 2,
        x_test=generator.normal(5.0, 3.0, (10, 12)).astype(np.float32),
        y_test=np.arange(10) % 2,
    )
    splits = load_splits(DataConfig(name=f"npz:{path}", val_size=10))
    assert splits.input_shape == (12,) and splits.num_classes == 2
    full_train = torch.cat([splits.train.x, splits.val.x])
    assert abs(float(full_train.mean())) < 1e-5


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"y_test": np.array([0, 1, -1] * 10)}, ["label -1 is out of range", "0..K-1"]),
        (
            {"y_train": np.zeros(120, np.int64), "y_test": np.zeros(30, np.int64)},
            ["needs two classes"],
        ),
        ({"y_train": np.zeros(120) + 0.5}, ["train labels are torch.float64", "integers"]),
        ({"y_train": np.zeros(100, np.int64)}, ["train labels have shape (100,) for 120 inputs"]),
        ({"x_test": np.zeros((30, 1, 9, 9), np.uint8)}, ["(1, 8, 8)", "(1, 9, 9)", "same shape"]),
        ({"x_train": np.array(["a"] * 120)}, ["cannot read", "numpy.savez"]),
    ],
)
def test_bad_npz_contents_are_one_line(tmp_path, overrides, words):
    path = save_npz(tmp_path / "bad.npz", **overrides)
    with pytest.raises(ValueError) as raised:
        load_splits(DataConfig(name=f"npz:{path}", val_size=10))
    message = str(raised.value)
    assert "\n" not in message and f"npz:{path}" in message
    assert all(word in message for word in words), message


def test_npz_missing_file_or_keys_say_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="no file .*; pass the path of an .npz file"):
        load_splits(DataConfig(name=f"npz:{tmp_path / 'absent.npz'}"))
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((3, 2)), labels=np.zeros(3))
    with pytest.raises(ValueError, match="no array y_train, x_test, y_test .* has x_train, labels"):
        load_splits(DataConfig(name=f"npz:{tmp_path / 'partial.npz'}"))
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="cannot read .* as .npz"):
        load_splits(DataConfig(name=f"npz:{tmp_path / 'text.npz'}"))


# --- factories ----------------------------------------------------------------------------------

FACTORIES = """
import torch
from torch.utils.data import Dataset, TensorDataset

def _part(count, seed):
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(count) % 4
    x = torch.randn(count, 3, 5, 5, generator=generator) + y.view(-1, 1, 1, 1).float()
    return x, y

def tensors():
    return _part(80, 1), _part(20, 2)

def pixels():
    x, y = _part(80, 1)
    xt, yt = _part(20, 2)
    as_bytes = lambda x: (x.clamp(-2, 6) * 30 + 60).to(torch.uint8)
    return (as_bytes(x), y), (as_bytes(xt), yt)

class Examples(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y
    def __len__(self):
        return len(self.y)
    def __getitem__(self, index):
        return self.x[index], int(self.y[index])

def datasets():
    return Examples(*_part(80, 1)), TensorDataset(*_part(20, 2))

def raises():
    raise RuntimeError("the bucket is gone")

def one_part():
    return _part(80, 1)[0]

def three_parts():
    return _part(80, 1), _part(20, 2), _part(20, 3)

def out_of_range():
    x, y = _part(20, 2)
    return _part(80, 1), (x, y - 1)

class Strings(Dataset):
    def __len__(self):
        return 4
    def __getitem__(self, index):
        return "an image", 0

def strings():
    return Strings(), Strings()

def empty():
    return TensorDataset(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)), _part(20, 2)
"""


def test_a_factory_of_tensors_is_used_as_returned(tmp_path, monkeypatch):
    module = factory_module(tmp_path, monkeypatch, FACTORIES)
    splits = load_splits(DataConfig(name=f"{module}:tensors", val_size=16))
    assert splits.num_classes == 4 and splits.input_shape == (3, 5, 5)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (64, 16, 20)
    # Float inputs from a factory are not rescaled: its own transforms decide.
    generator = torch.Generator().manual_seed(2)
    expected = torch.randn(20, 3, 5, 5, generator=generator) + (torch.arange(20) % 4).view(
        -1, 1, 1, 1
    )
    assert torch.equal(splits.test.x, expected)


def test_a_factory_of_uint8_pixels_is_scaled_and_standardised_per_channel(tmp_path, monkeypatch):
    module = factory_module(tmp_path, monkeypatch, FACTORIES)
    splits = load_splits(DataConfig(name=f"{module}:pixels", val_size=1))
    train = torch.cat([splits.train.x, splits.val.x])
    per_channel_mean = train.transpose(0, 1).reshape(3, -1).mean(dim=1)
    assert torch.allclose(per_channel_mean, torch.zeros(3), atol=1e-5)


def test_a_factory_of_datasets_is_decoded_once_into_tensors(tmp_path, monkeypatch):
    module = factory_module(tmp_path, monkeypatch, FACTORIES)
    from_datasets = load_splits(DataConfig(name=f"{module}:datasets", val_size=16))
    from_tensors = load_splits(DataConfig(name=f"{module}:tensors", val_size=16))
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(from_datasets, part).x, getattr(from_tensors, part).x)
        assert torch.equal(getattr(from_datasets, part).y, getattr(from_tensors, part).y)
    assert from_datasets.num_classes == 4


@pytest.mark.parametrize(
    ("factory", "words"),
    [
        ("raises", ["calling it raised RuntimeError: the bucket is gone", "fix the factory"]),
        ("one_part", ["returned a Tensor", "must return (train, test)"]),
        ("three_parts", ["returned a tuple of 3", "must return (train, test)"]),
        ("out_of_range", ["label -1 is out of range"]),
        ("strings", ["reading the train Dataset raised", "transforms.ToTensor()"]),
        ("empty", ["the train Dataset is empty", "give it examples"]),
    ],
)
def test_bad_factories_are_one_line(tmp_path, monkeypatch, factory, words):
    module = factory_module(tmp_path, monkeypatch, FACTORIES)
    with pytest.raises(ValueError) as raised:
        load_splits(DataConfig(name=f"{module}:{factory}", val_size=4))
    message = str(raised.value)
    assert "\n" not in message and f"{module}:{factory}" in message
    assert all(word in message for word in words), message


# --- image folders ------------------------------------------------------------------------------


def test_an_image_folder_with_train_and_test_reads_the_real_png_files(tmp_path):
    written = write_fashion_mnist_folder(tmp_path / "images", classes=3, train_per_class=40)
    splits = load_splits(DataConfig(name=f"imagefolder:{tmp_path / 'images'}", val_size=20))
    assert splits.num_classes == 3
    assert splits.input_shape == (1, 28, 28)  # grayscale PNGs stay one channel
    assert (len(splits.train), len(splits.val), len(splits.test)) == (100, 20, 60)
    # ImageFolder orders classes alphabetically: pullover 0, t-shirt 1, trouser 2. The test part
    # keeps its file order; un-standardised, it gives back the written pixels.
    assert splits.test.y.tolist() == [0] * 20 + [1] * 20 + [2] * 20
    train_pixels = np.concatenate([np.stack(written[c][:40]) for c in written]) / 255
    pixels = splits.test.x * train_pixels.std(ddof=1) + train_pixels.mean()
    expected = np.stack(
        written["pullover"][40:] + written["t-shirt"][40:] + written["trouser"][40:]
    )
    assert torch.allclose(pixels[:, 0], torch.from_numpy(expected / 255).float(), atol=1e-4)


def test_a_single_image_tree_holds_out_a_seeded_test_part_of_each_class(tmp_path):
    write_fashion_mnist_folder(tmp_path / "tree", classes=2, train_per_class=50, split=False)
    name = f"imagefolder:{tmp_path / 'tree'}"
    splits = load_splits(DataConfig(name=name, val_size=10))
    held_out = round(50 * IMAGEFOLDER_TEST_FRACTION)
    assert len(splits.test) == 2 * held_out
    assert splits.test.y.bincount().tolist() == [held_out, held_out]
    assert len(splits.train) + len(splits.val) == 100 - 2 * held_out
    # The test part does not move with split_seed (which picks the validation set only).
    other = load_splits(DataConfig(name=name, val_size=10, split_seed=3))
    assert torch.equal(splits.test.x, other.test.x)
    assert not torch.equal(splits.val.x, other.val.x)


def test_images_of_another_size_are_resized_to_the_most_common_one_and_rgb_wins(tmp_path):
    from PIL import Image

    root = tmp_path / "mixed"
    write_fashion_mnist_folder(root, classes=2, train_per_class=10, test_per_class=3)
    Image.new("RGB", (40, 30), (255, 0, 0)).save(root / "train" / "trouser" / "big.png")
    splits = load_splits(DataConfig(name=f"imagefolder:{root}", val_size=2))
    assert splits.input_shape == (3, 28, 28)
    assert len(splits.train) + len(splits.val) == 21


def test_bad_image_folders_are_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        ValueError, match="no class folders in .*; put the images in one folder per class"
    ):
        load_splits(DataConfig(name=f"imagefolder:{tmp_path / 'empty'}"))
    with pytest.raises(ValueError, match="no folder .*; pass a folder of class folders"):
        load_splits(DataConfig(name=f"imagefolder:{tmp_path / 'absent'}"))
    root = tmp_path / "broken"
    write_fashion_mnist_folder(root, classes=2, train_per_class=5, test_per_class=2)
    (root / "train" / "trouser" / "0003.png").write_bytes(b"not a png")
    with pytest.raises(ValueError) as raised:
        load_splits(DataConfig(name=f"imagefolder:{root}", val_size=2))
    message = str(raised.value)
    assert "\n" not in message
    assert f"cannot read image {root / 'train' / 'trouser' / '0003.png'}" in message
    assert "replace or remove it" in message
    (root / "train" / "trouser" / "0003.png").unlink()
    (root / "test" / "coat").mkdir()
    from PIL import Image

    Image.new("L", (28, 28)).save(root / "test" / "coat" / "0.png")
    with pytest.raises(ValueError, match="test/ has classes .*coat.* same class folders"):
        load_splits(DataConfig(name=f"imagefolder:{root}", val_size=2))


def test_a_validation_split_or_subset_too_large_for_small_data_names_the_option(tmp_path):
    path = save_npz(tmp_path / "bands.npz")
    with pytest.raises(ValueError, match="val_size=5000 leaves no .* 120 .* smaller --val-size"):
        load_splits(DataConfig(name=f"npz:{path}"))
    with pytest.raises(ValueError, match="subset=200 exceeds the 100 .* smaller --subset"):
        load_splits(DataConfig(name=f"npz:{path}", val_size=20, subset=200))
