"""Your own data: `npz:FILE`, `imagefolder:FOLDER` and `package.module:factory`, as RawData.

Each form is decoded once into tensors, like the built-in sets, and then split by `load_splits`
the same way (a seeded validation set out of the train part; `subset`). Classes and input shape
come from the data: labels are integers 0..K-1 and K is the largest label plus one.

Normalisation: raw pixels (uint8) are scaled to [0, 1]; then inputs of an `.npz` file or an image
folder, and uint8 inputs of a factory, are standardised with the mean and standard deviation of
the train part (per channel for N x C x ... inputs, over everything for N x D). A factory's float
inputs are used as they are: its own transforms decide.

Any problem with the data is a one-line ValueError naming the dataset and the fix.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from sparsetune.catalog import (
    DATASETS,
    IMAGEFOLDER_PREFIX,
    NPZ_PREFIX,
    dataset_factory,
    is_import_path,
)
from sparsetune.data.tensors import RawData, TensorSet

if TYPE_CHECKING:
    from PIL.Image import Image

    from sparsetune.config import DataConfig

Loader = Callable[["DataConfig"], RawData]

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
# An image folder without train/ and test/: this fraction of each class is the test set, drawn
# with a fixed seed (so the test set never moves; `split_seed` chooses only the validation set).
IMAGEFOLDER_TEST_FRACTION = 0.2
_IMAGEFOLDER_TEST_SEED = 0
# Decoding a Dataset into tensors: examples per batch read.
_DECODE_BATCH = 256


def dataset_loader(name: str) -> Loader:
    """The loader behind a dataset name: a registered one, or one of the user-data forms."""
    if name.startswith(NPZ_PREFIX):
        return load_npz
    if name.startswith(IMAGEFOLDER_PREFIX):
        return load_imagefolder
    if is_import_path(name):
        return load_factory
    return DATASETS[name]


def load_npz(config: DataConfig) -> RawData:
    """`npz:FILE`: arrays x_train, y_train, x_test, y_test (inputs N x ..., uint8 or float)."""
    import numpy as np

    name = config.name
    path = Path(name.removeprefix(NPZ_PREFIX))
    if not path.is_file():
        raise ValueError(f"dataset {name!r}: no file {path}; pass the path of an .npz file")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            found = list(arrays.files)
            parts = {
                key: torch.from_numpy(np.array(arrays[key])) for key in NPZ_KEYS if key in found
            }
    except Exception as error:  # not a zip, truncated, object arrays
        raise ValueError(
            f"dataset {name!r}: cannot read {path} as .npz ({type(error).__name__}: {error}); "
            "write it with numpy.savez"
        ) from None
    missing = [key for key in NPZ_KEYS if key not in parts]
    if missing:
        raise ValueError(
            f"dataset {name!r}: no array {', '.join(missing)} in {path} (it has "
            f"{', '.join(found) or 'none'}); save it with "
            "np.savez(FILE, x_train=..., y_train=..., x_test=..., y_test=...)"
        )
    return raw_data(
        name,
        (parts["x_train"], parts["y_train"]),
        (parts["x_test"], parts["y_test"]),
        standardise=True,
    )


def load_factory(config: DataConfig) -> RawData:
    """`package.module:factory`: `factory()` returns (train, test), each a pair of tensors (x, y)
    or a `torch.utils.data.Dataset` of (x, y) examples, decoded once into tensors."""
    name = config.name
    factory = dataset_factory(name)
    try:
        returned = factory()
    except Exception as error:
        raise ValueError(
            f"dataset {name!r}: calling it raised {type(error).__name__}: {error}; fix the factory"
        ) from None
    return from_train_and_test(name, returned)


def from_train_and_test(name: str, returned: Any) -> RawData:
    """RawData from `(train, test)`, each a pair of tensors (x, y) or a Dataset of (x, y), as a
    factory returns them (and as Python code may pass them); `name` is for the messages."""
    if not isinstance(returned, tuple | list) or len(returned) != 2:
        raise ValueError(
            f"dataset {name!r} returned {_kind(returned)}; it must return (train, test), "
            "each a pair of tensors (x, y) or a torch Dataset of (x, y)"
        )
    train, test = (
        _as_pair(name, part, which) for part, which in zip(returned, ("train", "test"), strict=True)
    )
    return raw_data(name, train, test, standardise=train[0].dtype == torch.uint8)


def load_imagefolder(config: DataConfig) -> RawData:
    """`imagefolder:FOLDER`: torchvision's ImageFolder layout, FOLDER/train and FOLDER/test or
    one tree of class folders from which a seeded test part is held out; decoded into memory."""
    name = config.name
    root = Path(name.removeprefix(IMAGEFOLDER_PREFIX))
    if not root.is_dir():
        raise ValueError(f"dataset {name!r}: no folder {root}; pass a folder of class folders")
    if (root / "train").is_dir() and (root / "test").is_dir():
        train_set = _image_folder(name, root / "train")
        test_set = _image_folder(name, root / "test")
        if test_set.classes != train_set.classes:
            raise ValueError(
                f"dataset {name!r}: test/ has classes {test_set.classes} but train/ has "
                f"{train_set.classes}; give both the same class folders"
            )
        form = _common_form([*train_set.images, *test_set.images])
        train = (_stack(train_set.images, form), train_set.labels)
        test = (_stack(test_set.images, form), test_set.labels)
    else:
        whole = _image_folder(name, root)
        x, y = _stack(whole.images, _common_form(whole.images)), whole.labels
        test_index = _held_out(y)
        keep = torch.ones(len(y), dtype=torch.bool)
        keep[test_index] = False
        train = (x[keep], y[keep])
        test = (x[test_index], y[test_index])
    return raw_data(name, train, test, standardise=True)


def raw_data(
    name: str, train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor], *, standardise: bool
) -> RawData:
    """Checked, float32 RawData from (x, y) tensor pairs; see the module's normalisation."""
    for which, (x, y) in (("train", train), ("test", test)):
        _check_pair(name, which, x, y)
    if train[0].shape[1:] != test[0].shape[1:]:
        raise ValueError(
            f"dataset {name!r}: train inputs are {tuple(train[0].shape[1:])} but test inputs are "
            f"{tuple(test[0].shape[1:])}; give both the same shape"
        )
    labels = torch.cat([train[1], test[1]])
    if int(labels.min()) < 0:
        raise ValueError(
            f"dataset {name!r}: label {int(labels.min())} is out of range; labels must be 0..K-1"
        )
    num_classes = int(labels.max()) + 1
    if num_classes < 2:
        raise ValueError(f"dataset {name!r}: every label is 0; a classifier needs two classes")
    train_x, test_x = (_as_float(x) for x in (train[0], test[0]))
    if standardise:
        mean, std = _statistics(train_x)
        train_x, test_x = (x.sub(mean).div_(std) for x in (train_x, test_x))
    return RawData(
        train=TensorSet(train_x.contiguous(), train[1].to(torch.int64)),
        test=TensorSet(test_x.contiguous(), test[1].to(torch.int64)),
        num_classes=num_classes,
    )


def _check_pair(name: str, which: str, x: Tensor, y: Tensor) -> None:
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(
            f"dataset {name!r}: {which} inputs have shape {tuple(x.shape)}; give N x C x H x W "
            "images or N x D features, N >= 1"
        )
    if x.dtype != torch.uint8 and not x.dtype.is_floating_point:
        raise ValueError(f"dataset {name!r}: {which} inputs are {x.dtype}; give uint8 or floats")
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(
            f"dataset {name!r}: {which} labels have shape {tuple(y.shape)} for {len(x)} inputs; "
            "give one integer label per input"
        )
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise ValueError(f"dataset {name!r}: {which} labels are {y.dtype}; give integers 0..K-1")


def _as_float(x: Tensor) -> Tensor:
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255)
    return x.to(torch.float32)


def _statistics(x: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and std of `x`, per channel (dim 1) for N x C x ... inputs, else over everything;
    shaped to broadcast over a batch. A constant channel keeps std 1."""
    if x.ndim >= 3:
        flat = x.transpose(0, 1).reshape(x.shape[1], -1)
        mean, std = flat.mean(dim=1), flat.std(dim=1)
        shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        mean, std = mean.reshape(shape), std.reshape(shape)
    else:
        mean, std = x.mean(), x.std()
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def _kind(value: Any) -> str:
    if isinstance(value, tuple | list):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def _as_pair(name: str, part: Any, which: str) -> tuple[Tensor, Tensor]:
    """A factory's train or test part as (x, y) tensors."""
    from torch.utils.data import Dataset

    if isinstance(part, Dataset):
        return _decoded(name, part, which)
    if isinstance(part, tuple | list) and len(part) == 2:
        try:
            return torch.as_tensor(part[0]), torch.as_tensor(part[1])
        except Exception as error:
            raise ValueError(
                f"dataset {name!r}: the {which} pair is not tensors "
                f"({type(error).__name__}: {error}); return (x, y) tensors"
            ) from None
    raise ValueError(
        f"dataset {name!r}: the {which} part is {_kind(part)}; give a pair of tensors (x, y) or a "
        "torch Dataset of (x, y)"
    )


def _decoded(name: str, dataset: Any, which: str) -> tuple[Tensor, Tensor]:
    """Every (x, y) of `dataset`, read once in order and stacked into two tensors."""
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=_DECODE_BATCH, shuffle=False)
    inputs: list[Tensor] = []
    labels: list[Tensor] = []
    try:
        for batch in loader:
            if not isinstance(batch, list | tuple) or len(batch) != 2:
                raise TypeError(f"an example is {_kind(batch)}, not (x, y)")
            x, y = batch
            if not isinstance(x, Tensor) or not isinstance(y, Tensor):
                raise TypeError(
                    f"an example is ({type(x).__name__}, {type(y).__name__}); make x a tensor "
                    "(e.g. transforms.ToTensor()) and y an integer"
                )
            inputs.append(x)
            labels.append(y)
    except Exception as error:
        raise ValueError(
            f"dataset {name!r}: reading the {which} Dataset raised {type(error).__name__}: {error}"
        ) from None
    if not inputs:
        raise ValueError(f"dataset {name!r}: the {which} Dataset is empty; give it examples")
    return torch.cat(inputs), torch.cat(labels)


class _Images:
    """An image folder's decoded images (PIL) and labels, in ImageFolder's order."""

    def __init__(self, classes: list[str], images: list[Image], labels: Tensor):
        self.classes = classes
        self.images = images
        self.labels = labels


def _read_image(path: str) -> Image:
    """Grayscale images stay one channel; everything else becomes RGB."""
    from PIL import Image

    with Image.open(path) as image:
        grey = image.mode in ("1", "L", "LA", "I", "I;16", "F")
        return image.convert("L" if grey else "RGB")


def _image_folder(name: str, root: Path) -> _Images:
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS

    try:
        folder = ImageFolder(str(root), loader=_read_image)
    except FileNotFoundError:
        # torchvision's message lists every class folder; say which ones are empty, briefly.
        classes = sorted(entry.name for entry in root.iterdir() if entry.is_dir())
        if not classes:
            raise ValueError(
                f"dataset {name!r}: no class folders in {root}; put the images in one folder "
                f"per class, {root}/CLASS/IMAGE.png"
            ) from None
        empty = [c for c in classes if not any(_is_image(p) for p in (root / c).rglob("*"))]
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise ValueError(
            f"dataset {name!r}: class folder {shown} under {root} holds no images "
            f"({', '.join(IMG_EXTENSIONS)}); add images or remove the folder"
        ) from None
    images: list[Image] = []
    for path, _ in folder.samples:
        try:
            images.append(folder.loader(path))
        except Exception as error:
            raise ValueError(
                f"dataset {name!r}: cannot read image {path} ({type(error).__name__}: {error}); "
                "replace or remove it"
            ) from None
    return _Images(folder.classes, images, torch.tensor(folder.targets, dtype=torch.int64))


def _is_image(path: Path) -> bool:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return path.is_file() and path.suffix.lower() in IMG_EXTENSIONS


def _common_form(images: list[Image]) -> tuple[tuple[int, int], str]:
    """The most common (width, height), and RGB if any image is, else grayscale: every image of
    the set is brought to these."""
    size = Counter(image.size for image in images).most_common(1)[0][0]
    return size, "RGB" if any(image.mode == "RGB" for image in images) else "L"


def _stack(images: list[Image], form: tuple[tuple[int, int], str]) -> Tensor:
    """uint8 N x C x H x W from PIL images, resized (bilinear) and converted to `form`."""
    from PIL import Image as PILImage
    from torchvision.transforms.functional import pil_to_tensor

    size, mode = form

    def conform(image: Image) -> Image:
        image = image if image.mode == mode else image.convert(mode)
        return image if image.size == size else image.resize(size, PILImage.Resampling.BILINEAR)

    return torch.stack([pil_to_tensor(conform(image)) for image in images])


def _held_out(labels: Tensor) -> Tensor:
    """Indices of the test part of a single tree: IMAGEFOLDER_TEST_FRACTION of each class (at
    least one example of a class with two or more), seeded."""
    generator = torch.Generator().manual_seed(_IMAGEFOLDER_TEST_SEED)
    chosen = []
    for label in labels.unique():
        members = (labels == label).nonzero().flatten()
        count = round(len(members) * IMAGEFOLDER_TEST_FRACTION)
        count = max(count, 1) if len(members) > 1 else 0
        chosen.append(members[torch.randperm(len(members), generator=generator)[:count]])
    return torch.cat(chosen).sort().values
