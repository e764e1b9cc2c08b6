"""Image folders written at test time from the real Fashion-MNIST files, as PNG images."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

FASHION_MNIST_GZ = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat")


def read_idx(name: str) -> np.ndarray:
    """One gzipped idx file of Debian's dataset-fashion-mnist as an array."""
    raw = gzip.decompress((FASHION_MNIST_GZ / f"{name}.gz").read_bytes())
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def write_fashion_mnist_folder(
    root: Path,
    classes: int = 2,
    train_per_class: int = 100,
    test_per_class: int = 20,
    split: bool = True,
) -> dict[str, list[np.ndarray]]:
    """The first examples of the first `classes` Fashion-MNIST classes as PNGs, in ImageFolder's
    layout: root/train/<class>/*.png and root/test/<class>/*.png, or, without `split`, one tree
    root/<class>/*.png of the train examples. Returns the written images by class name."""
    from PIL import Image

    written: dict[str, list[np.ndarray]] = {}
    parts = [("train", "train", train_per_class)]
    if split:
        parts.append(("test", "t10k", test_per_class))
    for part, prefix, count in parts:
        images = read_idx(f"{prefix}-images-idx3-ubyte")
        labels = read_idx(f"{prefix}-labels-idx1-ubyte")
        for label in range(classes):
            folder = root / part if split else root
            folder = folder / CLASS_NAMES[label]
            folder.mkdir(parents=True, exist_ok=True)
            chosen = images[labels == label][:count]
            for index, image in enumerate(chosen):
                Image.fromarray(image, mode="L").save(folder / f"{index:04d}.png")
            written.setdefault(CLASS_NAMES[label], []).extend(chosen)
    return written
