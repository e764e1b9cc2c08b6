"""Your own data: `npz:FILE`, `imagefolder:FOLDER` and `package.module:factory`, as RawData.

Each form is decoded once into tensors, like the built-in sets (an image folder or a factory's two
Datasets larger than the memory budget stream instead: `streaming.py`), and then split by
`load_splits` the same way (a seeded validation set out of the train part; `subset`). Classes and
input shape come from the data: labels are integers 0..K-1 and K is the largest label plus one.

An `IterableDataset` cannot stream: it has no length and no index, so no seeded validation split
can be held out of it and no epoch can be shuffled. Data with one is decoded in memory while the
decoded size (float32) is counted; passing the memory budget stops the reading with a one-line
error (so an endless iterable ends there too) asking for a map-style Dataset or a larger budget.

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
from sparsetune.data.streaming import describe_path, survey
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
    return from_train_and_test(name, returned, config.memory_budget_gb)


def from_train_and_test(
    name: str, returned: Any, memory_budget_gb: float | None = None, *, given: bool = False
) -> RawData:
    """RawData from `(train, test)`, each a pair of tensors (x, y) or a Dataset of (x, y), as a
    factory returns them (or, `given`, as Python code passes them); `name` is for the messages.
    Two map-style Datasets larger than the memory budget stream (`streaming.py`)."""
    if not isinstance(returned, tuple | list) or len(returned) != 2:
        got, fix = ("got", "give") if given else ("returned", "it must return")
        raise ValueError(
            f"dataset {name!r} {got} {_kind(returned)}; {fix} (train, test), "
            "each a pair of tensors (x, y) or a torch Dataset of (x, y)"
        )
    if all(_is_sized_dataset(part) for part in returned):
        size = sum(len(part) for part in returned) * _first_input(name, returned[0]).numel() * 4
        if _streams(size, memory_budget_gb):
            return _streamed_datasets(name, size, memory_budget_gb, *returned)
    # An IterableDataset's size is known only once it is read: count while decoding.
    budget = _Budget(name, memory_budget_gb) if any(map(_is_iterable, returned)) else None
    train, test = (
        _as_pair(name, part, which, budget)
        for part, which in zip(returned, ("train", "test"), strict=True)
    )
    return raw_data(name, train, test, standardise=train[0].dtype == torch.uint8)


def load_imagefolder(config: DataConfig) -> RawData:
    """`imagefolder:FOLDER`: torchvision's ImageFolder layout, FOLDER/train and FOLDER/test or
    one tree of class folders from which a seeded test part is held out; decoded into memory,
    or streamed when larger than the memory budget."""
    name = config.name
    root = Path(name.removeprefix(IMAGEFOLDER_PREFIX))
    if not root.is_dir():
        raise ValueError(f"dataset {name!r}: no folder {root}; pass a folder of class folders")
    split = (root / "train").is_dir() and (root / "test").is_dir()
    folders = [_folder(name, root / "train"), _folder(name, root / "test")] if split else None
    folders = folders or [_folder(name, root)]
    samples = [path for folder in folders for path, _ in folder.samples]
    # The decoded size, estimated from the first image (its size and channels) and the count.
    first = _header(name, samples[0])
    size = len(samples) * first[0][0] * first[0][1] * (1 if first[1] == "L" else 3) * 4
    if _streams(size, config.memory_budget_gb):
        return _streamed_folder(name, folders, describe_path(name, size, config.memory_budget_gb))
    if split:
        train_set = _image_folder(name, folders[0])
        test_set = _image_folder(name, folders[1])
        if test_set.classes != train_set.classes:
            raise ValueError(
                f"dataset {name!r}: test/ has classes {test_set.classes} but train/ has "
                f"{train_set.classes}; give both the same class folders"
            )
        form = _common_form([*train_set.images, *test_set.images])
        train = (_stack(train_set.images, form), train_set.labels)
        test = (_stack(test_set.images, form), test_set.labels)
    else:
        whole = _image_folder(name, folders[0])
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
    num_classes = _classes(name, torch.cat([train[1], test[1]]))
    train_x, test_x = (_as_float(x) for x in (train[0], test[0]))
    if standardise:
        mean, std = _statistics(train_x)
        train_x, test_x = (x.sub(mean).div_(std) for x in (train_x, test_x))
    return RawData(
        train=TensorSet(train_x.contiguous(), train[1].to(torch.int64)),
        test=TensorSet(test_x.contiguous(), test[1].to(torch.int64)),
        num_classes=num_classes,
    )


def _classes(name: str, labels: Tensor) -> int:
    """K, the largest label plus one, after checking the labels are 0..K-1 with K >= 2."""
    if int(labels.min()) < 0:
        raise ValueError(
            f"dataset {name!r}: label {int(labels.min())} is out of range; labels must be 0..K-1"
        )
    num_classes = int(labels.max()) + 1
    if num_classes < 2:
        raise ValueError(f"dataset {name!r}: every label is 0; a classifier needs two classes")
    return num_classes


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
    kind = type(value).__name__
    article = "an" if kind[0].lower() in "aeiou" else "a"
    if isinstance(value, tuple | list):
        return f"{article} {kind} of {len(value)}"
    return f"{article} {kind}"


def _as_pair(name: str, part: Any, which: str, budget: _Budget | None) -> tuple[Tensor, Tensor]:
    """A factory's train or test part as (x, y) tensors, counted against `budget` if given."""
    from torch.utils.data import Dataset

    if isinstance(part, Dataset):
        return _decoded(name, part, which, budget)
    if isinstance(part, tuple | list) and len(part) == 2:
        try:
            pair = torch.as_tensor(part[0]), torch.as_tensor(part[1])
        except Exception as error:
            raise ValueError(
                f"dataset {name!r}: the {which} pair is not tensors "
                f"({type(error).__name__}: {error}); return (x, y) tensors"
            ) from None
        if budget is not None:
            budget.add(pair[0], which)
        return pair
    raise ValueError(
        f"dataset {name!r}: the {which} part is {_kind(part)}; give a pair of tensors (x, y) or a "
        "torch Dataset of (x, y)"
    )


def _decoded(name: str, dataset: Any, which: str, budget: _Budget | None) -> tuple[Tensor, Tensor]:
    """Every (x, y) of `dataset`, read once in order and stacked into two tensors; each batch
    is counted against `budget`, if given, which stops the reading once it is passed."""
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
            if budget is not None:
                budget.add(x, which)
    except _OverBudget:
        raise
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


_GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def _read_image(path: str) -> Image:
    """Grayscale images stay one channel; everything else becomes RGB."""
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("L" if image.mode in _GREY_MODES else "RGB")


def _header(name: str, path: str) -> tuple[tuple[int, int], str]:
    """An image's size and mode ("L" or "RGB", as `_read_image` makes it), from its header only."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size, "L" if image.mode in _GREY_MODES else "RGB"
    except Exception as error:
        raise ValueError(
            f"dataset {name!r}: cannot read image {path} ({type(error).__name__}: {error}); "
            "replace or remove it"
        ) from None


def _folder(name: str, root: Path) -> Any:
    """torchvision's ImageFolder over `root` (nothing decoded yet), or a one-line ValueError."""
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
    return folder


def _image_folder(name: str, folder: Any) -> _Images:
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
    return _common_of([(image.size, image.mode) for image in images])


def _common_of(forms: list[tuple[tuple[int, int], str]]) -> tuple[tuple[int, int], str]:
    size = Counter(size for size, _ in forms).most_common(1)[0][0]
    return size, "RGB" if any(mode == "RGB" for _, mode in forms) else "L"


def _conform(image: Image, form: tuple[tuple[int, int], str]) -> Image:
    from PIL import Image as PILImage

    size, mode = form
    image = image if image.mode == mode else image.convert(mode)
    return image if image.size == size else image.resize(size, PILImage.Resampling.BILINEAR)


def _stack(images: list[Image], form: tuple[tuple[int, int], str]) -> Tensor:
    """uint8 N x C x H x W from PIL images, resized (bilinear) and converted to `form`."""
    from torchvision.transforms.functional import pil_to_tensor

    return torch.stack([pil_to_tensor(_conform(image, form)) for image in images])


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


# The streaming path (streaming.py): what does not fit the memory budget.


def _streams(decoded_bytes: int, memory_budget_gb: float | None) -> bool:
    """Whether data of this decoded size streams (is larger than the memory budget)."""
    from sparsetune.data.streaming import memory_budget_bytes

    return decoded_bytes > memory_budget_bytes(memory_budget_gb)


class _OverBudget(ValueError):
    """Decoding data that cannot stream passed the memory budget (a one-line ValueError)."""


class _Budget:
    """The decoded size (float32 inputs) of data read so far, against the memory budget: for
    data with an IterableDataset, whose size is known only by reading it."""

    def __init__(self, name: str, memory_budget_gb: float | None):
        from sparsetune.data.streaming import memory_budget_bytes

        self.name, self.limit = name, memory_budget_bytes(memory_budget_gb)
        self.used = 0
        self.examples: Counter[str] = Counter()  # read so far, per part

    def add(self, inputs: Tensor, which: str) -> None:
        """Count a batch of inputs of the `which` part; past the budget, raise `_OverBudget`."""
        self.used += inputs.numel() * 4
        self.examples[which] += len(inputs)
        if self.used > self.limit:
            raise _OverBudget(
                f"dataset {self.name!r}: decoding it passed the memory budget of "
                f"{self.limit / 1e9:.3g} GB at {which} example {self.examples[which]} "
                f"({self.used / 1e9:.3g} GB as float32), and an IterableDataset cannot stream "
                "(no length or index, so no held-out validation split); return map-style "
                "Datasets (__len__ and __getitem__), or raise the budget (--memory-budget-gb, "
                "memory_budget_gb=, $SPARSETUNE_MEMORY_BUDGET_GB)"
            )


def _is_iterable(part: Any) -> bool:
    from torch.utils.data import IterableDataset

    return isinstance(part, IterableDataset)


def _is_sized_dataset(part: Any) -> bool:
    from torch.utils.data import Dataset, IterableDataset

    return (
        isinstance(part, Dataset)
        and not isinstance(part, IterableDataset)
        and hasattr(part, "__len__")
    )


def _first_input(name: str, dataset: Any) -> Tensor:
    """The first example's input, to estimate the decoded size (an empty tensor if there is none
    or it is not a tensor: the in-memory path then reads it and names the problem)."""
    try:
        x, _ = dataset[0]
        return torch.as_tensor(x)
    except Exception:
        return torch.empty(0)


class _ImageSource:
    """A Dataset of (uint8 C x H x W image, label) from image files, each read and brought to
    the folder's common `form` exactly as the in-memory path does (picklable: workers get it)."""

    def __init__(self, samples: list[tuple[str, int]], form: tuple[tuple[int, int], str]):
        self.samples, self.form = samples, form

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        from torchvision.transforms.functional import pil_to_tensor

        path, label = self.samples[index]
        return pil_to_tensor(_conform(_read_image(path), self.form)), label


def _streamed_folder(name: str, folders: list[Any], note: str) -> RawData:
    """An image folder as StreamSets: image headers are read now (sizes and modes, for the
    common form), pixels only when a batch needs them."""
    from sparsetune.data.streaming import StreamSet

    if len(folders) == 2 and folders[1].classes != folders[0].classes:
        raise ValueError(
            f"dataset {name!r}: test/ has classes {folders[1].classes} but train/ has "
            f"{folders[0].classes}; give both the same class folders"
        )
    samples = [sample for folder in folders for sample in folder.samples]
    form = _common_of([_header(name, path) for path, _ in samples])
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    if len(folders) == 2:
        train_index = torch.arange(len(folders[0].samples))
        test_index = torch.arange(len(folders[0].samples), len(samples))
    else:
        test_index = _held_out(labels)
        keep = torch.ones(len(labels), dtype=torch.bool)
        keep[test_index] = False
        train_index = keep.nonzero().flatten()
    (width, height), mode = form
    shape = (1 if mode == "L" else 3, height, width)
    source = _ImageSource(samples, form)
    train = StreamSet(source, train_index, shape)
    _, mean, std = survey(name, "train", train)
    return RawData(
        train=StreamSet(source, train_index, shape, mean, std, note=note),
        test=StreamSet(source, test_index, shape, mean, std, note=note),
        num_classes=_classes(name, labels),
    )


def _streamed_datasets(
    name: str, size: int, memory_budget_gb: float | None, train_set: Any, test_set: Any
) -> RawData:
    """A factory's two Datasets as StreamSets, after one pass over each (labels, statistics)."""
    from sparsetune.data.streaming import StreamSet

    parts = []
    for dataset, which in ((train_set, "train"), (test_set, "test")):
        x = _first_input(name, dataset)
        if x.ndim < 1 or (x.dtype != torch.uint8 and not x.dtype.is_floating_point):
            raise ValueError(
                f"dataset {name!r}: a {which} input is {x.dtype} of shape {tuple(x.shape)}; give "
                "uint8 or float tensors, C x H x W images or D features"
            )
        parts.append(StreamSet(dataset, torch.arange(len(dataset)), tuple(x.shape)))
    train, test = parts
    if train.input_shape != test.input_shape:
        raise ValueError(
            f"dataset {name!r}: train inputs are {train.input_shape} but test inputs are "
            f"{test.input_shape}; give both the same shape"
        )
    train_labels, mean, std = survey(name, "train", train)
    test_labels, _, _ = survey(name, "test", test)
    num_classes = _classes(name, torch.cat([train_labels, test_labels]))
    if _first_input(name, train_set).dtype != torch.uint8:  # float inputs are used as they are
        mean = std = None
    note = describe_path(name, size, memory_budget_gb)
    return RawData(
        train=StreamSet(train_set, train.indices, train.input_shape, mean, std, note=note),
        test=StreamSet(test_set, test.indices, test.input_shape, mean, std, note=note),
        num_classes=num_classes,
    )
