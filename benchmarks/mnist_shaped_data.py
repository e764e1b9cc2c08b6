#!/usr/bin/env python
"""MNIST-shaped data for timing on a machine that cannot download MNIST (a lent GPU machine).

    python benchmarks/mnist_shaped_data.py DIR      # then: --dataset mnist --data-dir DIR

Writes DIR/MNIST/raw/ as torchvision's MNIST reads it: 60,000 training and 10,000 test 28x28
uint8 images in the idx format, 10 classes. Each image is its class's fixed random picture plus
noise, so LeNet-5 learns it (about 99% after one epoch). For throughput only: a trial's time
depends on the shapes, not on what the pictures show; its accuracy says nothing about MNIST.
"""

from __future__ import annotations

import argparse
import struct
from pathlib import Path

import numpy as np

SPLITS = (("train", 60_000), ("t10k", 10_000))


def write(root: Path, seed: int = 0) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pictures = rng.integers(0, 256, size=(10, 28, 28)).astype(np.float32)
    for prefix, count in SPLITS:
        labels = rng.integers(0, 10, size=count).astype(np.uint8)
        noise = rng.normal(0, 60, size=(count, 28, 28)).astype(np.float32)
        images = np.clip(0.6 * pictures[labels] + noise + 40, 0, 255).astype(np.uint8)
        header = struct.pack(">IIII", 2051, count, 28, 28)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 2049, count) + labels.tobytes()
        )
    return raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, help="the --data-dir the sweeps will read")
    args = parser.parse_args()
    print(f"MNIST-shaped data in {write(args.data_dir)}")


if __name__ == "__main__":
    main()
