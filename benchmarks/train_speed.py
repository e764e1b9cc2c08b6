"""How fast sparsetune trains, as ratios against plain PyTorch in the same process.

- trainer_vs_raw: an epoch of LeNet-5 with masks attached, through sparsetune's `fit`, divided by
  the same epoch in a plain PyTorch loop over the same tensors (target <= 1.10);
- loader_speedup: an epoch of LeNet-300-100 fed by torchvision's DataLoader with per-sample PIL
  decoding and ToTensor + Normalize, divided by the same epoch with sparsetune's in-memory loader
  (target >= 3).

Both arms of a comparison see the same number of examples, the same model, optimiser and batch
size; each arm is warmed up, the arms alternate, and the median of the repetitions is compared.

    python benchmarks/train_speed.py [--json] [--fraction 0.25] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from sparsetune.config import DataConfig, TrainConfig
from sparsetune.data import load_splits
from sparsetune.data.tensors import TensorSet
from sparsetune.models import build_model
from sparsetune.pruning.masking import attach_masks
from sparsetune.train.loop import fit

BATCH = 128
RECIPE = TrainConfig(
    optimizer="sgd",
    lr=0.01,
    momentum=0.9,
    weight_decay=5e-4,
    schedule="constant",
    epochs=1,
    batch_size=BATCH,
)


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def raw_epoch(model: torch.nn.Module, data: TensorSet, seed: int) -> None:
    """The plain loop a PyTorch user writes over in-memory tensors."""
    optimizer = torch.optim.SGD(
        model.parameters(), lr=RECIPE.lr, momentum=RECIPE.momentum, weight_decay=RECIPE.weight_decay
    )
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    model.train()
    for start in range(0, len(data), BATCH):
        index = order[start : start + BATCH]
        loss = F.cross_entropy(model(data.x[index]), data.y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def dataloader_epoch(model: torch.nn.Module, loader: DataLoader) -> None:
    optimizer = torch.optim.SGD(
        model.parameters(), lr=RECIPE.lr, momentum=RECIPE.momentum, weight_decay=RECIPE.weight_decay
    )
    model.train()
    for inputs, targets in loader:
        loss = F.cross_entropy(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def compare(arms: dict, repeats: int) -> dict[str, float]:
    """Median seconds per arm; arms alternate so that drift hits both alike."""
    seconds: dict[str, list[float]] = {name: [] for name in arms}
    for _, warmup in arms.values():
        warmup()
    for _ in range(repeats):
        for name, (run, _) in arms.items():
            seconds[name].append(timed(run))
    return {name: statistics.median(values) for name, values in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument(
        "--fraction",
        type=float,
        default=0.25,
        help="fraction of an epoch to time (the ratio is what matters)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    config = DataConfig(
        name="fashion-mnist", **({"data_dir": args.data_dir} if args.data_dir else {})
    )
    splits = load_splits(config)
    count = int(len(splits.train) * args.fraction)
    data = TensorSet(splits.train.x[:count], splits.train.y[:count])
    warm = TensorSet(data.x[: 20 * BATCH], data.y[: 20 * BATCH])
    log(f"{count} Fashion-MNIST examples per timed pass, {threads} threads, batch {BATCH}")

    def lenet5(masked: bool) -> torch.nn.Module:
        torch.manual_seed(0)
        model = build_model("lenet5", splits.input_shape, splits.num_classes)
        if masked:
            masks = attach_masks(model)
            # A realistic ticket: 90% of each layer pruned. The masked forward costs the same
            # as an all-ones mask, but this keeps the benchmark honest about it.
            generator = torch.Generator().manual_seed(0)
            masks.update(
                {n: torch.rand(m.shape, generator=generator) > 0.9 for n, m in masks.items()}
            )
        return model

    trainer_model, raw_model = lenet5(masked=True), lenet5(masked=False)
    trainer = compare(
        {
            "sparsetune_fit": (
                lambda: fit(trainer_model, data, RECIPE, seed=1),
                lambda: fit(trainer_model, warm, RECIPE, seed=1),
            ),
            "raw_loop": (
                lambda: raw_epoch(raw_model, data, seed=1),
                lambda: raw_epoch(raw_model, warm, seed=1),
            ),
        },
        args.repeats,
    )

    normalize = transforms.Normalize((0.2860,), (0.3530,))
    torchvision_set = datasets.FashionMNIST(
        str(config.data_dir),
        train=True,
        download=False,
        transform=transforms.Compose([transforms.ToTensor(), normalize]),
    )
    generator = torch.Generator().manual_seed(0)
    loader = DataLoader(
        Subset(torchvision_set, range(count)), batch_size=BATCH, shuffle=True, generator=generator
    )
    warm_loader = DataLoader(Subset(torchvision_set, range(20 * BATCH)), batch_size=BATCH)

    def lenet300() -> torch.nn.Module:
        torch.manual_seed(0)
        return build_model("lenet300", splits.input_shape, splits.num_classes)

    ours, theirs = lenet300(), lenet300()
    loaders = compare(
        {
            "sparsetune_loader": (
                lambda: fit(ours, data, RECIPE, seed=1),
                lambda: fit(ours, warm, RECIPE, seed=1),
            ),
            "torchvision_dataloader": (
                lambda: dataloader_epoch(theirs, loader),
                lambda: dataloader_epoch(theirs, warm_loader),
            ),
        },
        args.repeats,
    )

    result = {
        "trainer_vs_raw": trainer["sparsetune_fit"] / trainer["raw_loop"],
        "loader_speedup": loaders["torchvision_dataloader"] / loaders["sparsetune_loader"],
        "seconds": {**trainer, **loaders},
        "examples": count,
        "threads": threads,
        "repeats": args.repeats,
        "torch": torch.__version__,
    }
    log(f"LeNet-5 masked, sparsetune fit     {trainer['sparsetune_fit']:8.2f} s")
    log(f"LeNet-5 plain PyTorch loop         {trainer['raw_loop']:8.2f} s")
    log(f"  trainer_vs_raw = {result['trainer_vs_raw']:.3f} (target <= 1.10)")
    log(f"LeNet-300-100 torchvision DataLoader {loaders['torchvision_dataloader']:6.2f} s")
    log(f"LeNet-300-100 sparsetune loader      {loaders['sparsetune_loader']:6.2f} s")
    log(f"  loader_speedup = {result['loader_speedup']:.2f} (target >= 3)")
    if result["trainer_vs_raw"] > 1.10:
        log("MISSED: trainer_vs_raw above 1.10")
    if result["loader_speedup"] < 3:
        log("MISSED: loader_speedup below 3")
    if args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
