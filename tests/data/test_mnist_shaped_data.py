"""benchmarks/mnist_shaped_data.py (the timing data of a machine that cannot download MNIST) is
read as MNIST by torchvision's own code, with MNIST's sizes and ten classes that a model can tell
apart."""

from __future__ import annotations

import torch
from sweep_helpers import load_benchmark

from sparsetune.config import DataConfig
from sparsetune.data import load_splits


def test_mnist_shaped_data_loads_as_mnist_with_learnable_classes(tmp_path):
    load_benchmark("mnist_shaped_data").write(tmp_path)
    splits = load_splits(DataConfig(name="mnist", data_dir=tmp_path))
    assert (len(splits.train) + len(splits.val), len(splits.test)) == (60_000, 10_000)
    assert splits.num_classes == 10
    images, labels = splits.train.x[:2000], splits.train.y[:2000]
    assert images.shape[1:] == (1, 28, 28)
    assert set(labels.tolist()) == set(range(10))
    # Nearest class mean on one half classifies the other half: the classes are learnable.
    flat = images.flatten(1)
    means = torch.stack([flat[:1000][labels[:1000] == k].mean(0) for k in range(10)])
    guessed = torch.cdist(flat[1000:], means).argmin(1)
    assert (guessed == labels[1000:]).float().mean() > 0.9
