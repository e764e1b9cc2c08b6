"""How many trials an hour a sweep runs on this machine, and what the shared dense stage saves.

- trials per hour with 1 and with 2 trials at a time, and their ratio (`concurrency_speedup`):
  two real sweeps (`run_sweep`: Ray Tune, Optuna, MLflow, as `sparsetune search` runs them) over
  the same small fixed space, in one process on one Ray started once, the dense stage already in
  the cache. Each arm uses every core: one trial with all of them (`--cpus-per-trial` = cores,
  so torch trains with that many threads), or two trials with half each.
- the dense cache (`dense_cache_speedup`): one trial's configuration run in this process (no Ray)
  with an empty cache, so that it trains its dense stage first, as a sweep without the shared
  stage would do for every trial, against the same trial with the dense stage in the cache. The
  two alternate, `--repeats` times each; medians. `dense_seconds_saved_per_trial` is the
  difference, and `sweep_seconds_saved` that difference times the trials of a sweep, less the one
  dense training that the sweep does.

Real Fashion-MNIST (a `--subset` of the training set; `--dataset mnist` for MNIST), LeNet-5, one
dense epoch, then one-shot global magnitude pruning with one retraining epoch: every trial costs
about the same. `gpu_packing.py` times the same sweep on a GPU.

    .venv/bin/python benchmarks/sweep_throughput.py [--json] [--trials N] [--subset N]
        [--repeats N] [--dataset NAME] [--data-dir DIR]

With --json, stdout carries exactly one JSON object; everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

SPACE = """
train: {optimizer: sgd, lr: 0.05, epochs: 1, batch_size: 128}
methods:
  magnitude:
    criterion: global
    sparsity: {low: 0.5, high: 0.95}
    rounds: 1
    retrain_epochs: 1
"""
MODEL = "lenet5"
SEED = 0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def sweep_config(args, scratch: Path, name: str, concurrent: int, **overrides):
    """The benchmark's sweep: `args.trials` trials of the fixed space, `concurrent` at a time,
    every core shared among them; `overrides` set other `SweepConfig` fields (device, GPUs)."""
    from sparsetune.config import DEFAULT_DATA_DIR
    from sparsetune.search.options import SweepConfig

    fields = {
        "model": MODEL,
        "dataset": args.dataset,
        "data_dir": args.data_dir or DEFAULT_DATA_DIR,
        "subset": args.subset or None,
        "trials": args.trials,
        "max_concurrent": concurrent,
        "cpus_per_trial": max(1, available_cores() // concurrent),
        "space": scratch / "space.yaml",
        "out": scratch / name,
        "cache_dir": scratch / "cache",
        "experiment": name,
        "seed": SEED,
        "device": "cpu",
    }
    return SweepConfig(**(fields | overrides))


def prepare(args, scratch: Path, console, device: str = "cpu"):
    """The space, the data and the dense stage (trained once, here, into the benchmark's cache),
    shared by every timed sweep."""
    import torch

    from sparsetune.data import load_splits
    from sparsetune.search.space import load_space
    from sparsetune.search.sweep import prepare_dense

    (scratch / "space.yaml").write_text(SPACE)
    base = sweep_config(args, scratch, "warm-up", 1, device=device)
    space = load_space(base.space)
    splits = load_splits(base.data_config())
    log(
        f"torch {torch.__version__}, {available_cores()} cores; {MODEL} on {len(splits.train)} "
        f"{args.dataset} training examples, {args.trials} trials per sweep"
    )
    torch.set_num_threads(available_cores())
    return base, space, splits, prepare_dense(base, space, splits, console)


def timed_sweep(sweep, space, dense, splits, console) -> dict:
    """One real sweep (`run_sweep`, as `sparsetune search` runs it) on the Ray already up, timed
    from the driver's side: finished trials, failures and trials per hour."""
    from sparsetune.search.sweep import run_sweep

    start = time.perf_counter()
    outcome = run_sweep(sweep, space, dense, console, num_classes=splits.num_classes)
    seconds = time.perf_counter() - start
    done = len({row["trial_id"] for row in outcome.rows if row["status"] == "ok"})
    log(f"  {done} trials in {seconds:.1f} s: {3600 * done / seconds:.0f} trials/hour")
    return {
        "seconds": seconds,
        "trials_done": done,
        "trials_failed": len(outcome.failures),
        "trials_per_hour": 3600 * done / seconds,
        "cpus_per_trial": sweep.cpus_per_trial,
    }


def run(args: argparse.Namespace, scratch: Path) -> dict:
    import ray
    import torch
    from rich.console import Console

    from sparsetune.config import TrialConfig
    from sparsetune.search.sweep import dense_recipe
    from sparsetune.trial import run_trial

    cores = available_cores()
    console = Console(stderr=True, width=160)
    base, space, splits, dense = prepare(args, scratch, console)
    cache = base.cache_dir

    # One Ray for both sweeps (run_sweep joins a Ray that is already up): its start-up is paid
    # once, outside the timings.
    ray.init(
        num_cpus=cores,
        num_gpus=0,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
    )
    sweeps: dict[int, dict] = {}
    try:
        for concurrent in (1, 2):
            sweep = sweep_config(args, scratch, f"concurrent-{concurrent}", concurrent)
            log(f"sweep: {concurrent} at a time, {sweep.cpus_per_trial:g} CPUs a trial")
            sweeps[concurrent] = timed_sweep(sweep, space, dense, splits, console)
    finally:
        ray.shutdown()

    # The dense cache: one trial, in this process, with and without its dense stage cached.
    config = TrialConfig(
        model=MODEL,
        data=base.data_config(),
        train=dense_recipe(base, space),
        method="magnitude",
        params={"criterion": "global", "sparsity": 0.8, "rounds": 1, "retrain_epochs": 1},
        seed=SEED,
        device="cpu",
    )
    cold, warm = [], []
    for repeat in range(args.repeats):
        for kind in ("cold", "warm") if repeat % 2 == 0 else ("warm", "cold"):
            cache_dir = cache if kind == "warm" else scratch / f"cold-cache-{repeat}"
            start = time.perf_counter()
            run_trial(config, cache_dir=cache_dir)
            seconds = time.perf_counter() - start
            (cold if kind == "cold" else warm).append(seconds)
            log(f"  trial with {kind} dense cache: {seconds:.1f} s")
    cold_s, warm_s = statistics.median(cold), statistics.median(warm)
    saved = cold_s - warm_s
    one, two = sweeps[1], sweeps[2]
    return {
        "trials_per_hour_1": one["trials_per_hour"],
        "trials_per_hour_2": two["trials_per_hour"],
        "concurrency_speedup": two["trials_per_hour"] / one["trials_per_hour"],
        "dense_cache_speedup": cold_s / warm_s,
        "trial_seconds_cold_cache": cold_s,
        "trial_seconds_warm_cache": warm_s,
        "dense_seconds_saved_per_trial": saved,
        "sweep_seconds_saved": saved * (args.trials - 1),
        "sweeps": {str(k): v for k, v in sweeps.items()},
        "trial_seconds": {"cold": cold, "warm": warm},
        "cores": cores,
        "trials": args.trials,
        "train_examples": len(splits.train),
        "model": MODEL,
        "torch": torch.__version__,
        "ray": ray.__version__,
    }


def report(result: dict) -> str:
    one, two = result["sweeps"]["1"], result["sweeps"]["2"]
    return "\n".join(
        [
            f"1 trial at a time:  {one['trials_done']} trials in {one['seconds']:.1f} s = "
            f"{result['trials_per_hour_1']:.0f} trials/hour ({one['cpus_per_trial']:g} CPUs each)",
            f"2 trials at a time: {two['trials_done']} trials in {two['seconds']:.1f} s = "
            f"{result['trials_per_hour_2']:.0f} trials/hour ({two['cpus_per_trial']:g} CPUs each)",
            f"concurrency_speedup   {result['concurrency_speedup']:.2f}x",
            f"trial, dense stage trained first: {result['trial_seconds_cold_cache']:.1f} s; "
            f"dense stage from the cache: {result['trial_seconds_warm_cache']:.1f} s",
            f"dense_cache_speedup   {result['dense_cache_speedup']:.2f}x per trial, "
            f"{result['dense_seconds_saved_per_trial']:.1f} s saved a trial, "
            f"{result['sweep_seconds_saved']:.0f} s over a {result['trials']}-trial sweep",
        ]
    )


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset", default="fashion-mnist", help="mnist or fashion-mnist (default fashion-mnist)"
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="where the dataset lives")
    parser.add_argument(
        "--subset", type=int, default=12000, help="training examples, 0 for all (default 12000)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--trials", type=int, default=6, help="trials per sweep (default 6)")
    add_data_arguments(parser)
    parser.add_argument(
        "--repeats", type=int, default=3, help="cold/warm cache trial pairs (default 3)"
    )
    args = parser.parse_args()
    if args.trials < 2:
        parser.error(f"--trials must be at least 2 (got {args.trials})")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1 (got {args.repeats})")
    run_and_print(args, run, report, "sweep-throughput-")


def run_and_print(args: argparse.Namespace, run, report, prefix: str) -> None:
    """`run(args, scratch)` in a scratch folder removed afterwards, everything it prints sent to
    stderr; then the result on stdout: `report(result)`, or with --json the JSON object alone."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # as the CLI: no experiment box on stdout
    from sparsetune.train.allocator import keep_freed_memory

    keep_freed_memory()  # as the CLI: this process trains (the dense stage, the cache trials)
    scratch = Path(tempfile.mkdtemp(prefix=prefix))
    real_stdout = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            result = run(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    text = report(result)
    print(json.dumps(result, indent=2) if args.json else text, file=real_stdout, flush=True)
    if args.json:
        log(text)


if __name__ == "__main__":
    main()
