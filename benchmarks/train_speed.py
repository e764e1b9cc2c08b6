"""How fast sparsetune trains, as ratios against plain PyTorch, measured in one process.

- trainer_vs_raw: an epoch of LeNet-5 with an all-ones mask on every weight, trained through
  sparsetune's `fit`, divided by the same epoch in the plain PyTorch loop below (the same
  architecture built fresh without masks, the same tensors and recipe). Target <= 1.10.
  `trainer_vs_raw_sparse` does the same with a realistic ticket (about 90% of each layer pruned):
  the masked forward is dense either way, so it should cost the same.
- loader_speedup: an epoch of LeNet-300-100 fed by torchvision's DataLoader over
  `datasets.FashionMNIST` with ToTensor + Normalize (per-sample PIL, num_workers=0: what a typical
  user writes), divided by the same epoch through `fit` over `load_splits(...).train`. Target >= 3.

Fairness: both arms of a comparison train the same number of real Fashion-MNIST examples with the
same batch size and SGD settings, each timed pass starts from a freshly built model with the same
initial weights, every arm gets an untimed warm-up, the arms take turns (in a rotating order) and
each arm's median over the repetitions is compared. torch uses one thread per available core.

Noise: on a small shared machine one busy neighbour process can make a pass 10x slower, so each
round of passes also measures how much CPU other processes used, rounds that others disturbed do
not count while there are enough clean ones, and a NOISY line flags arms whose passes still vary.
Medians of within-round ratios (`*_paired` in the JSON) are reported too: they cancel slow drift.
Minor page faults per pass are reported because glibc's malloc returning freed memory to the
kernel is what most of the mask parametrization's cost is made of (see benchmarks/README.md).

    .venv/bin/python benchmarks/train_speed.py [--json] [--epochs-fraction F] [--repeats N]
        [--max-rounds N] [--quiet-wait SECONDS] [--data-dir DIR]

With --json, stdout carries exactly one JSON object; everything else goes to stderr. The exit code
is 0 even when a target is missed; a MISSED line on stderr says which.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from sparsetune.config import DEFAULT_DATA_DIR, DataConfig, TrainConfig
from sparsetune.data import load_splits
from sparsetune.data.tensors import Splits, TensorSet
from sparsetune.models import build_model
from sparsetune.pruning.masking import attach_masks
from sparsetune.train.allocator import keep_freed_memory
from sparsetune.train.loop import fit

BATCH_SIZE = 128
WARMUP_BATCHES = 10
# The package's default SGD recipe, one epoch at a constant rate (no scheduler step to time).
RECIPE = TrainConfig(schedule="constant", epochs=1, batch_size=BATCH_SIZE)
# Fashion-MNIST's training-pixel mean and std, as sparsetune.data.mnist_like normalises them.
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530
TRAINER_TARGET = 1.10
LOADER_TARGET = 3.0
# An arm whose slowest pass took this much longer than its fastest was disturbed (on 2 cores, one
# busy neighbour process stalls torch's two threads at every op); the median may still be fine.
NOISY_SPREAD = 1.25
# Other processes' CPU use (in cores) below which the machine counts as quiet. Even a short burst
# matters: while a neighbour holds a core, every op of ours waits for its descheduled thread.
BUSY_CORES = 0.05
QUIET_CORES = 0.05
QUIET_SAMPLE_S = 1.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
SEED = 0


def log(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def available_cores() -> int:
    # The cores this process may run on (a container or taskset can allow fewer than the host has).
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def make_sgd(model: nn.Module) -> torch.optim.SGD:
    return torch.optim.SGD(
        model.parameters(),
        lr=RECIPE.lr,
        momentum=RECIPE.momentum,
        weight_decay=RECIPE.weight_decay,
    )


def raw_epoch(model: nn.Module, data: TensorSet, seed: int) -> None:
    """The plain loop a PyTorch user writes over in-memory tensors."""
    optimizer = make_sgd(model)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    model.train()
    for start in range(0, len(data), BATCH_SIZE):
        index = order[start : start + BATCH_SIZE]
        loss = F.cross_entropy(model(data.x[index]), data.y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def dataloader_epoch(model: nn.Module, loader: DataLoader, max_batches: int | None = None) -> None:
    """The same loop fed by a torchvision DataLoader (per-sample PIL -> ToTensor -> Normalize)."""
    optimizer = make_sgd(model)
    model.train()
    for batch, (inputs, targets) in enumerate(loader):
        if max_batches is not None and batch >= max_batches:
            break
        loss = F.cross_entropy(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def busy_cpu_seconds() -> float | None:
    """CPU seconds all processes on this machine have used since boot (None off Linux).

    Steal time counts too: a hypervisor that runs another guest on our cores slows us the same way.
    """
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def minor_page_faults() -> int:
    """This process's minor page faults so far (0 where `resource` is missing).

    Reported per pass because glibc's malloc hands large freed blocks back to the kernel, so a
    loop that allocates more large temporaries per step (as the mask parametrization does) pays
    for fresh, faulting pages in every kernel that touches them.
    """
    try:
        import resource
    except ImportError:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


class OtherLoad:
    """How many cores other processes kept busy between `__init__` and `cores()`."""

    def __init__(self) -> None:
        self.start = (time.perf_counter(), busy_cpu_seconds(), own_cpu_seconds())

    def cores(self) -> float:
        wall_start, busy_start, own_start = self.start
        busy = busy_cpu_seconds()
        if busy is None or busy_start is None:
            return 0.0  # cannot tell: treat as quiet
        others = (busy - busy_start) - (own_cpu_seconds() - own_start)
        return max(others, 0.0) / max(time.perf_counter() - wall_start, 1e-9)


def wait_for_quiet(limit_s: float) -> float:
    """Wait (at most `limit_s`) until other processes use under QUIET_CORES; return their load."""
    deadline = time.perf_counter() + limit_s
    while True:
        sample = OtherLoad()
        time.sleep(QUIET_SAMPLE_S)
        load = sample.cores()
        if load < QUIET_CORES or time.perf_counter() >= deadline:
            return load


class Arm:
    """One way of training: `make()` builds a fresh model (untimed), `run(model)` is timed."""

    def __init__(
        self,
        label: str,
        make: Callable[[], nn.Module],
        run: Callable[[nn.Module], object],
        warmup: Callable[[nn.Module], object],
    ):
        self.label = label
        self.make = make
        self.run = run
        self.warmup = warmup
        self.repeats = 5  # how many clean passes are enough; set by `measure`
        # One entry per round: (seconds, cores other processes used meanwhile, round was clean).
        self.passes: list[tuple[float, float, bool]] = []
        self.page_faults: list[int] = []

    @property
    def counted(self) -> list[int]:
        """Rounds that count: the clean ones when there are enough, else all of them."""
        clean = [i for i, (*_, ok) in enumerate(self.passes) if ok]
        return clean if len(clean) >= self.repeats else list(range(len(self.passes)))

    @property
    def seconds(self) -> list[float]:
        return [self.passes[i][0] for i in self.counted]

    @property
    def disturbed(self) -> int:
        return sum(not ok for *_, ok in self.passes)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def noisy(self) -> bool:
        counted_disturbed = self.disturbed > 0 and len(self.counted) == len(self.passes)
        return counted_disturbed or max(self.seconds) > NOISY_SPREAD * min(self.seconds)


def measure(arms: list[Arm], repeats: int, max_rounds: int, quiet_wait_s: float) -> None:
    """Warm every arm up, then time rounds of one pass per arm until `repeats` rounds were clean.

    The arms take turns, in an order that rotates each round, so that neither arm always runs
    first (after the other arm left its caches) or last, and drift hits every arm alike. A round
    is clean when other processes used less than BUSY_CORES of CPU during it: on 2 cores one busy
    neighbour stalls torch's two threads at every op and a pass can take 10x longer. Without
    `repeats` clean rounds after `max_rounds`, every round counts and the arm is reported noisy.
    """
    for arm in arms:
        arm.repeats = repeats
        arm.warmup(arm.make())
    clean_rounds = 0
    for round_ in range(max_rounds):
        if clean_rounds >= repeats:
            break
        waited = wait_for_quiet(quiet_wait_s)
        timings = {}
        round_load = OtherLoad()
        for offset in range(len(arms)):
            arm = arms[(round_ + offset) % len(arms)]
            model = arm.make()
            gc.collect()  # so that no arm pays for garbage another arm left behind
            load = OtherLoad()
            faults = minor_page_faults()
            start = time.perf_counter()
            arm.run(model)
            timings[arm] = (time.perf_counter() - start, load.cores())
            arm.page_faults.append(minor_page_faults() - faults)
        # Judged over the whole round: CPU accounting comes in clock ticks (10 ms), too coarse
        # for a pass of a fraction of a second.
        others = round_load.cores()
        clean = others < BUSY_CORES
        clean_rounds += clean
        for arm, (seconds, pass_others) in timings.items():
            arm.passes.append((seconds, pass_others, clean))
        log(
            f"  round {round_ + 1} ({'clean' if clean else 'DISTURBED'}: other processes used "
            f"{others:.2f} cores, {waited:.2f} just before): "
            + ", ".join(f"{arm.label} {timings[arm][0]:.2f}s" for arm in arms)
        )


def paired_ratio(numerator: Arm, denominator: Arm) -> float:
    """Median over the counted rounds of numerator / denominator within each round.

    Arms timed by one `measure` call share their rounds; a ratio taken within a round cancels
    drift slower than a round, which a ratio of medians only averages out.
    """
    rounds = numerator.counted
    return statistics.median(numerator.passes[i][0] / denominator.passes[i][0] for i in rounds)


def fresh_model(name: str, splits: Splits, mask: str | None = None) -> nn.Module:
    """`name` with the same initial weights every time; masks: None, "ones" or "sparse"."""
    torch.manual_seed(SEED)
    model = build_model(name, splits.input_shape, splits.num_classes)
    if mask is not None:
        masks = attach_masks(model)
        if mask == "sparse":
            # A realistic ticket: keep about 10% of each layer (committing zeroes the rest).
            generator = torch.Generator().manual_seed(SEED)
            masks.update(
                {
                    name: torch.rand(tensor.shape, generator=generator) < 0.1
                    for name, tensor in masks.items()
                }
            )
    return model


def trainer_arms(splits: Splits, data: TensorSet, warm: TensorSet) -> list[Arm]:
    def through_fit(mask: str) -> Arm:
        return Arm(
            f"lenet5 fit, {mask} mask",
            lambda: fresh_model("lenet5", splits, mask),
            lambda model: fit(model, data, RECIPE, seed=SEED),
            lambda model: fit(model, warm, RECIPE, seed=SEED),
        )

    return [
        Arm(
            "lenet5 raw loop",
            lambda: fresh_model("lenet5", splits),
            lambda model: raw_epoch(model, data, seed=SEED),
            lambda model: raw_epoch(model, warm, seed=SEED),
        ),
        through_fit("ones"),
        through_fit("sparse"),
    ]


def loader_arms(splits: Splits, data: TensorSet, warm: TensorSet, data_dir: Path) -> list[Arm]:
    torchvision_set = datasets.FashionMNIST(
        str(data_dir),
        train=True,
        download=False,
        transform=transforms.Compose(
            [
                transforms.ToTensor(),
                transforms.Normalize((FASHION_MNIST_MEAN,), (FASHION_MNIST_STD,)),
            ]
        ),
    )
    # The first len(data) published training images: other images than sparsetune's split holds,
    # but every image costs the same (28x28), and the count is equal.
    loader = DataLoader(
        Subset(torchvision_set, range(len(data))),
        batch_size=BATCH_SIZE,
        shuffle=True,
        generator=torch.Generator().manual_seed(SEED),
    )
    return [
        Arm(
            "lenet300 torchvision DataLoader",
            lambda: fresh_model("lenet300", splits),
            lambda model: dataloader_epoch(model, loader),
            lambda model: dataloader_epoch(model, loader, max_batches=WARMUP_BATCHES),
        ),
        Arm(
            "lenet300 sparsetune loader (fit)",
            lambda: fresh_model("lenet300", splits),
            lambda model: fit(model, data, RECIPE, seed=SEED),
            lambda model: fit(model, warm, RECIPE, seed=SEED),
        ),
    ]


def table(arms: list[Arm], ratios: list[tuple[str, float, str, bool]]) -> str:
    width = max(len(arm.label) for arm in arms)
    lines = [
        f"{'arm':<{width}}  {'median s':>8}  {'min s':>7}  {'max s':>7}  {'faults':>7}  "
        "passes (s; * = disturbed round, not counted when enough clean ones)"
    ]
    for arm in arms:
        each = " ".join(f"{s:.2f}{'' if ok else '*'}" for s, _, ok in arm.passes)
        lines.append(
            f"{arm.label:<{width}}  {arm.median:8.3f}  {min(arm.seconds):7.3f}  "
            f"{max(arm.seconds):7.3f}  {statistics.median(arm.page_faults):7.0f}  {each}"
        )
    lines.append(f"{'':<{width}}  (faults: median minor page faults per pass)")
    lines.append("")
    for name, value, target, met in ratios:
        lines.append(f"{name:<22} {value:6.3f}   target {target:<7} {'ok' if met else 'MISSED'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument(
        "--epochs-fraction",
        type=float,
        default=1.0,
        help="fraction of a training epoch to time in each pass (default 1; the ratio is what "
        "matters: 0.25 finishes in about two minutes)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="clean timed passes per arm to collect (default 5, at least 3): single passes vary "
        "by about 10%% on a shared virtual machine",
    )
    parser.add_argument(
        "--max-rounds",
        type=int,
        default=None,
        help="give up collecting clean rounds after this many (default: twice --repeats)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="seconds to wait, before each round, for other processes to leave the CPU alone",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"where Fashion-MNIST lives (default {DEFAULT_DATA_DIR})",
    )
    args = parser.parse_args()
    if not 0 < args.epochs_fraction <= 1:
        parser.error(f"--epochs-fraction must be in (0, 1] (got {args.epochs_fraction})")
    if args.repeats < 3:
        parser.error(f"--repeats must be at least 3 (got {args.repeats})")
    if args.max_rounds is None:
        args.max_rounds = 2 * args.repeats
    if args.max_rounds < args.repeats:
        parser.error(f"--max-rounds must be at least --repeats (got {args.max_rounds})")
    if args.quiet_wait < 0:
        parser.error(f"--quiet-wait must be >= 0 (got {args.quiet_wait})")

    # Whatever a library prints goes to stderr, so that with --json stdout holds only the result.
    real_stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        result, ratios, report = run(args)
    print(json.dumps(result, indent=2) if args.json else report, file=real_stdout, flush=True)
    if args.json:
        log(report)
    for label in result["noisy_arms"]:
        log(
            f"NOISY: {label}: its counted passes include rounds that other processes disturbed, "
            f"or vary by more than {NOISY_SPREAD:g}x; rerun when the machine is quiet"
        )
    for name, value, target, met in ratios:
        if not met:
            log(f"MISSED: {name} = {value:.3f}, target {target}")


def run(args: argparse.Namespace) -> tuple[dict, list[tuple[str, float, str, bool]], str]:
    threads = available_cores()
    torch.set_num_threads(threads)
    # What every sparsetune training process does (its entry point calls it): set before any
    # arm runs, so the plain loop gets the same allocator as the trainer.
    allocator_tuned = keep_freed_memory()
    config = DataConfig(name="fashion-mnist", data_dir=args.data_dir or DEFAULT_DATA_DIR)
    splits = load_splits(config)
    examples = max(BATCH_SIZE, math.floor(len(splits.train) * args.epochs_fraction))
    # Views of load_splits(...).train: the first `examples` of an already shuffled split.
    data = TensorSet(splits.train.x[:examples], splits.train.y[:examples])
    warm = TensorSet(data.x[: WARMUP_BATCHES * BATCH_SIZE], data.y[: WARMUP_BATCHES * BATCH_SIZE])
    log(
        f"torch {torch.__version__} on CPU, torch.set_num_threads({threads}) "
        f"({threads} cores available); {examples} Fashion-MNIST training examples per timed pass "
        f"({args.epochs_fraction:g} of an epoch), batch {BATCH_SIZE}, {args.repeats} clean "
        f"rounds wanted (at most {args.max_rounds}), SGD lr={RECIPE.lr} "
        f"momentum={RECIPE.momentum} weight_decay={RECIPE.weight_decay}; glibc allocator "
        f"{'tuned to keep freed memory' if allocator_tuned else 'left at its defaults'}"
    )

    log("trainer_vs_raw (LeNet-5):")
    raw, ones, sparse = trainer_arms(splits, data, warm)
    measure([raw, ones, sparse], args.repeats, args.max_rounds, args.quiet_wait)
    log("loader_speedup (LeNet-300-100):")
    torchvision_arm, ours = loader_arms(splits, data, warm, config.data_dir)
    measure([torchvision_arm, ours], args.repeats, args.max_rounds, args.quiet_wait)

    trainer_vs_raw = ones.median / raw.median
    trainer_vs_raw_sparse = sparse.median / raw.median
    loader_speedup = torchvision_arm.median / ours.median
    ratios = [
        (
            "trainer_vs_raw",
            trainer_vs_raw,
            f"<= {TRAINER_TARGET}",
            trainer_vs_raw <= TRAINER_TARGET,
        ),
        (
            "trainer_vs_raw_sparse",
            trainer_vs_raw_sparse,
            f"<= {TRAINER_TARGET}",
            trainer_vs_raw_sparse <= TRAINER_TARGET,
        ),
        (
            "loader_speedup",
            loader_speedup,
            f">= {LOADER_TARGET:g}",
            loader_speedup >= LOADER_TARGET,
        ),
    ]
    keys = {
        raw: "lenet5_raw_loop",
        ones: "lenet5_fit_ones_mask",
        sparse: "lenet5_fit_sparse_mask",
        torchvision_arm: "lenet300_torchvision_dataloader",
        ours: "lenet300_sparsetune_loader",
    }
    result = {
        "trainer_vs_raw": trainer_vs_raw,
        "trainer_vs_raw_sparse": trainer_vs_raw_sparse,
        "loader_speedup": loader_speedup,
        "targets_met": all(met for *_, met in ratios),
        # The same ratios as medians of within-round ratios: less sensitive to slow drift.
        "trainer_vs_raw_paired": paired_ratio(ones, raw),
        "trainer_vs_raw_sparse_paired": paired_ratio(sparse, raw),
        "loader_speedup_paired": paired_ratio(torchvision_arm, ours),
        "noisy_arms": [arm.label for arm in keys if arm.noisy],
        # Median seconds per arm over the counted passes (the clean ones when there were enough).
        "seconds": {key: arm.median for arm, key in keys.items()},
        "seconds_counted": {key: arm.seconds for arm, key in keys.items()},
        "minor_page_faults": {key: statistics.median(arm.page_faults) for arm, key in keys.items()},
        "passes": {
            key: [
                {"seconds": seconds, "other_cores": round(others, 3), "clean_round": clean}
                for seconds, others, clean in arm.passes
            ]
            for arm, key in keys.items()
        },
        "threads": threads,
        "allocator_tuned": allocator_tuned,
        "examples": examples,
        "epochs_fraction": args.epochs_fraction,
        "repeats": args.repeats,
        "max_rounds": args.max_rounds,
        "batch_size": BATCH_SIZE,
        "torch": torch.__version__,
    }
    return result, ratios, table(list(keys), ratios)


if __name__ == "__main__":
    main()
