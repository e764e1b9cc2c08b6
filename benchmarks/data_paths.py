"""What streaming costs: an epoch of the in-memory path against the streaming path on the same
image folder, and the streaming path against a plain PyTorch DataLoader loop, in one process.

The data is a Fashion-MNIST ImageFolder (PNG files, one folder per class) written from the real
idx files under /usr/share/datasets/fashion-mnist by tests/image_folders.py.

- streaming_vs_in_memory: an epoch of LeNet-300-100 through `fit` over the folder streamed
  (`DataConfig(memory_budget_gb=...)` below its size: a `StreamSet`, read through a DataLoader with
  workers) / the same epoch through `fit` over the folder decoded into memory (`TensorSet`). No
  target: it is what streaming costs, so that the docs can say it.
- streaming_vs_dataloader (target <= 1.10): the streamed epoch through `fit` / the plain loop a
  PyTorch user writes over the same images and split: torchvision's `ImageFolder` with ToTensor +
  Normalize (the same mean and std), a `Subset` of the same training examples, a shuffling
  `DataLoader` with the same workers and batch size (pinned memory on a GPU), the same SGD step.

Each pass trains a freshly built model (the same initial weights) for one epoch; the arms take
turns, rounds that other processes disturbed do not count (train_speed.py's `measure`), and each
arm's median is compared. Loading the folder (and the streaming path's statistics pass) is not
timed: it happens once per process, and the README says what it costs.

    .venv/bin/python benchmarks/data_paths.py [--json] [--per-class N] [--repeats N]
        [--max-rounds N] [--quiet-wait SECONDS] [--folder DIR]

With --json, stdout carries exactly one JSON object; everything else goes to stderr. The exit code
is 0 even when a target is missed; a MISSED line on stderr says which.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import train_speed  # noqa: E402
from image_folders import write_fashion_mnist_folder  # noqa: E402
from train_speed import (  # noqa: E402
    BATCH_SIZE,
    RECIPE,
    SEED,
    Arm,
    available_cores,
    log,
    make_sgd,
    measure,
    paired_ratio,
    table,
)

from sparsetune.config import DataConfig  # noqa: E402
from sparsetune.data import load_splits  # noqa: E402
from sparsetune.data.streaming import StreamSet, worker_count  # noqa: E402
from sparsetune.data.tensors import Splits  # noqa: E402
from sparsetune.models import build_model  # noqa: E402
from sparsetune.train.allocator import keep_freed_memory  # noqa: E402
from sparsetune.train.loop import fit  # noqa: E402

MODEL = "lenet300"
CLASSES = 5  # tests/image_folders.py names the first five Fashion-MNIST classes
STREAMING_TARGET = 1.10
WARMUP_RECIPE = RECIPE  # one epoch: the warm-up pass starts the workers and fills the caches


def own_and_workers_cpu_seconds() -> float:
    """This process's CPU time and its finished children's: the DataLoader workers are ours, and
    each arm's workers have exited by the end of its pass."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


# train_speed's `measure` judges a round by the CPU other processes used: not our workers.
train_speed.own_cpu_seconds = own_and_workers_cpu_seconds


def grey(path: str):
    """ImageFolder's loader for grayscale PNGs (its default converts to RGB)."""
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("L")


def plain_loader(root: Path, streamed: StreamSet) -> DataLoader:
    """What a PyTorch user writes: ImageFolder + ToTensor + Normalize, the same training examples,
    a shuffling DataLoader with the same workers (pinned memory on a GPU)."""
    mean, std = streamed.mean.flatten().tolist(), streamed.std.flatten().tolist()
    folder = datasets.ImageFolder(
        str(root / "train"),
        loader=grey,
        transform=transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)]),
    )
    return DataLoader(
        Subset(folder, streamed.indices.tolist()),
        batch_size=BATCH_SIZE,
        shuffle=True,
        generator=torch.Generator().manual_seed(SEED),
        num_workers=worker_count(),
        pin_memory=torch.cuda.is_available(),
    )


def plain_epoch(model: nn.Module, loader: DataLoader) -> None:
    """The plain loop: batches to the model's device, one SGD step each."""
    device = next(model.parameters()).device
    optimizer = make_sgd(model)
    model.train()
    for inputs, targets in loader:
        inputs, targets = (
            inputs.to(device, non_blocking=True),
            targets.to(device, non_blocking=True),
        )
        loss = F.cross_entropy(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def arms(root: Path, held: Splits, streamed: Splits, device: torch.device) -> list[Arm]:
    def fresh() -> nn.Module:
        torch.manual_seed(SEED)
        return build_model(MODEL, held.input_shape, held.num_classes).to(device)

    held_train, streamed_train = held.train.to(device), streamed.train.to(device)
    loader = plain_loader(root, streamed.train)
    return [
        Arm(
            "in memory (fit)",
            fresh,
            lambda model: fit(model, held_train, RECIPE, seed=SEED),
            lambda model: fit(model, held_train, WARMUP_RECIPE, seed=SEED),
        ),
        Arm(
            "streaming (fit)",
            fresh,
            lambda model: fit(model, streamed_train, RECIPE, seed=SEED),
            lambda model: fit(model, streamed_train, WARMUP_RECIPE, seed=SEED),
        ),
        Arm(
            "plain DataLoader loop",
            fresh,
            lambda model: plain_epoch(model, loader),
            lambda model: plain_epoch(model, loader),
        ),
    ]


def len_val(args: argparse.Namespace) -> int:
    """Validation examples held out of train: a tenth (they are not timed)."""
    return max(1, CLASSES * args.per_class // 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument(
        "--per-class",
        type=int,
        default=1200,
        help=f"training images per class ({CLASSES} classes; default 1200, at most 6000)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="clean timed passes per arm")
    parser.add_argument("--max-rounds", type=int, default=None, help="default: twice --repeats")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=10.0,
        help="seconds to wait, before each round, for other processes to leave the CPU alone",
    )
    parser.add_argument(
        "--folder",
        type=Path,
        default=None,
        help="an existing folder this script wrote before (default: a fresh temporary one)",
    )
    args = parser.parse_args()
    if not 1 <= args.per_class <= 6000:
        parser.error(f"--per-class must be in 1..6000 (got {args.per_class})")
    if args.repeats < 3:
        parser.error(f"--repeats must be at least 3 (got {args.repeats})")
    args.max_rounds = args.max_rounds or 2 * args.repeats
    if args.max_rounds < args.repeats:
        parser.error(f"--max-rounds must be at least --repeats (got {args.max_rounds})")

    real_stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr), tempfile.TemporaryDirectory() as scratch:
        root = args.folder or Path(scratch) / "fashion-mnist"
        result, ratios, report = run(args, root)
    print(json.dumps(result, indent=2) if args.json else report, file=real_stdout, flush=True)
    if args.json:
        log(report)
    for label in result["noisy_arms"]:
        log(f"NOISY: {label}: rerun when the machine is quiet")
    for name, value, target, met in ratios:
        if not met:
            log(f"MISSED: {name} = {value:.3f}, target {target}")


def run(args: argparse.Namespace, root: Path) -> tuple[dict, list, str]:
    torch.set_num_threads(available_cores())
    allocator_tuned = keep_freed_memory()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not (root / "train").is_dir():
        started = time.perf_counter()
        write_fashion_mnist_folder(
            root, classes=CLASSES, train_per_class=args.per_class, test_per_class=200
        )
        log(f"wrote {root} in {time.perf_counter() - started:.1f} s")
    name = f"imagefolder:{root}"
    timings = {}
    splits = {}
    for path, budget in (("in_memory", None), ("streaming", 1e-9)):
        started = time.perf_counter()
        splits[path] = load_splits(
            DataConfig(name=name, val_size=len_val(args), memory_budget_gb=budget)
        )
        timings[path] = time.perf_counter() - started
    held, streamed = splits["in_memory"], splits["streaming"]
    log(
        f"torch {torch.__version__} on {device}, {available_cores()} cores, {worker_count()} "
        f"DataLoader workers; {len(held.train)} training images of {held.input_shape}, batch "
        f"{BATCH_SIZE}, {MODEL}; loading took {timings['in_memory']:.1f} s in memory, "
        f"{timings['streaming']:.1f} s streaming (the statistics pass)"
    )
    memory, streaming, plain = arms(root, held, streamed, device)
    measure([memory, streaming, plain], args.repeats, args.max_rounds, args.quiet_wait)
    ratios = [
        ("streaming_vs_in_memory", streaming.median / memory.median, "none", True),
        (
            "streaming_vs_dataloader",
            streaming.median / plain.median,
            f"<= {STREAMING_TARGET}",
            streaming.median / plain.median <= STREAMING_TARGET,
        ),
    ]
    keys = {memory: "in_memory_fit", streaming: "streaming_fit", plain: "plain_dataloader"}
    result = {
        "streaming_vs_in_memory": ratios[0][1],
        "streaming_vs_dataloader": ratios[1][1],
        "targets_met": all(met for *_, met in ratios),
        "streaming_vs_in_memory_paired": paired_ratio(streaming, memory),
        "streaming_vs_dataloader_paired": paired_ratio(streaming, plain),
        "noisy_arms": [arm.label for arm in keys if arm.noisy],
        "seconds": {key: arm.median for arm, key in keys.items()},
        "seconds_counted": {key: arm.seconds for arm, key in keys.items()},
        "load_seconds": timings,
        "examples": len(held.train),
        "workers": worker_count(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "allocator_tuned": allocator_tuned,
        "batch_size": BATCH_SIZE,
        "torch": torch.__version__,
    }
    return result, ratios, table(list(keys), ratios)


if __name__ == "__main__":
    main()
