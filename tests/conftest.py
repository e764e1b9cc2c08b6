"""Shared fixtures: one small synthetic dataset, so that every fast test trains on the same data
and the process-wide split cache (`sparsetune.data.load_splits`) builds it once. And the order in
which the test files run: the end-to-end ones first."""

from __future__ import annotations

import os

import pytest

from sparsetune.config import DataConfig, SyntheticOptions
from sparsetune.data import load_splits


def pytest_configure(config):
    """Under xdist, each worker's own torch gets its share of the cores. With torch's default of
    one thread per core, every op of a test that trains in this process waits for a thread that
    the other worker's busy process has descheduled: on 2 cores, tests/pruning/test_lottery.py
    took 17 s instead of 5 s beside one busy process. Only this process: the sparsetune commands
    and Ray workers a test starts keep the threads a user's would have."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(config, items):
    """Files holding a `slow` test first, the rest after, each file's tests kept together and in
    their order. `scripts/test` hands files to two workers in this order as each becomes free
    (`--dist loadfile --no-loadscope-reorder`): a file of minutes given out last would leave the
    other worker idle."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


@pytest.fixture(scope="session")
def small_data() -> DataConfig:
    """MNIST-shaped, learnable in one epoch of LeNet-300-100: 1,000 train, 200 val, 300 test."""
    return DataConfig(
        name="synthetic",
        val_size=200,
        synthetic=SyntheticOptions(
            input_shape=(1, 28, 28), num_classes=10, train_size=1200, test_size=300, noise=2.0
        ),
    )


@pytest.fixture(scope="session")
def small_splits(small_data):
    return load_splits(small_data)
