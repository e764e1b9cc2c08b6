"""Where a sweep's time goes: the share of its wall time spent training and evaluating, and the
overhead a trial pays around that (start-up, data, MLflow, the hand-off to Ray, teardown).

For each trial length (`--epochs`, default 1 and 10 retraining epochs), one real sweep of
`--trials` (16) LeNet-300-100 trials on a Fashion-MNIST `--subset`, `--concurrent` (2) at a time
with one core each: `sparsetune search` run as a user runs it (a new process, local Ray, MLflow on
SQLite), timed from its launch to its exit. The dense stage (one epoch) is trained once first,
into the benchmark's cache, and not timed. Each trial is global magnitude pruning in `--rounds`
(1) rounds of pruning and retraining, each round one report, so every trial does the same work.

- `compute_share`: the trials' training and evaluation core-seconds (each child run's
  `time_train_s` + `time_eval_s`, times its threads) over cores x wall time.
- `overhead_per_trial_s`: (concurrent x wall - the trials' training and evaluation seconds) /
  trials: what each trial costs a slot beyond its own compute, fixed costs shared out.
- the breakdown in slot-seconds (rows add up to concurrent x wall), from the child runs'
  `time_<phase>_s` (trial/clock.py) and their start and end times: start-up (launch to the first
  trial's run), each phase inside the trials, the rest while trials run (Ray's hand-off, a
  worker's start and imports), teardown (the last trial's end to exit).
- `handoff_s_by_quarter`: the median time from a trial's run's end to the next trial's start on
  the same worker, in each quarter of the sweep: flat when the driver's work per trial does not
  grow with the trials before it (run with `--trials 300` to see it).

Targets: `compute_share` >= 0.5 at 1 epoch and >= 0.85 at 10; `overhead_per_trial_s` <= 1.0.

`--warm N` adds, per trial length, the same sweep through `sparsetune.search` in this process,
N times after one untimed run, all in one `sparsetune.session()` (a notebook or script running
several sweeps): what a sweep costs when Ray is up and its trial workers are ready. Reported
under `warm_process` (the median run by wall time), against the same targets. `--pause S` waits S
seconds before each timed one (a notebook's user between cells).

    .venv/bin/python benchmarks/sweep_throughput.py [--json] [--trials N] [--concurrent N]
        [--rounds R] [--epochs 1,10] [--warm N [--pause S]] [--subset N] [--dataset NAME]
        [--data-dir DIR]

With --json, stdout carries exactly one JSON object; everything else goes to stderr.
`gpu_packing.py` imports this script's helpers to time sweeps on a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import statistics
import subprocess
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
    rounds: ROUNDS
    retrain_epochs: RETRAIN_EPOCHS
"""
MODEL = "lenet300"
SEED = 0
TARGETS = {"compute_share": {1: 0.5, 10: 0.85}, "overhead_per_trial_s": 1.0}
PHASES = ("data", "dense", "tracking", "report", "ticket", "train", "eval")


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
        "model": getattr(args, "model", MODEL),
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

    (scratch / "space.yaml").write_text(space_text(1))
    base = sweep_config(args, scratch, "warm-up", 1, device=device)
    space = load_space(base.space)
    splits = load_splits(base.data_config())
    log(
        f"torch {torch.__version__}, {available_cores()} cores; {getattr(args, 'model', MODEL)} on "
        f"{len(splits.train)} "
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


def space_text(epochs: int, rounds: int = 1) -> str:
    return SPACE.replace("RETRAIN_EPOCHS", str(epochs)).replace("ROUNDS", str(rounds))


def timed_cli_sweep(args, scratch: Path, epochs: int, cache: Path) -> dict:
    """`sparsetune search` in a new process over the fixed space with `epochs` of retraining,
    timed from launch to exit; then what its MLflow store says about where the time went."""
    space = scratch / f"space-{epochs}.yaml"
    space.write_text(space_text(epochs, args.rounds))
    out = scratch / f"sweep-{epochs}"
    command = [
        sys.executable, "-m", "sparsetune.cli", "search",
        "--model", MODEL, "--dataset", args.dataset, "--subset", str(args.subset),
        "--trials", str(args.trials), "--max-concurrent", str(args.concurrent),
        "--cpus-per-trial", "1", "--space", str(space), "--out", str(out),
        "--cache-dir", str(cache), "--seed", str(SEED), "--device", "cpu",
        "--experiment", f"throughput-{epochs}", "--json",
    ]  # fmt: skip
    if args.data_dir:
        command += ["--data-dir", str(args.data_dir)]
    env = {**os.environ, "SPARSETUNE_OFFLINE": "1"}
    launched = time.time()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    exited = time.time()
    if done.returncode != 0:
        raise SystemExit(f"the {epochs}-epoch sweep failed: {done.stderr[-2000:]}")
    return breakdown(out, f"throughput-{epochs}", launched, exited, args)


def timed_warm_sweeps(args, scratch: Path, epochs: int, cache: Path) -> dict:
    """The sweep of `timed_cli_sweep` through `sparsetune.search` in this process, `args.warm`
    times after one untimed run (its imports, the first MLflow store), all in one
    `sparsetune.session()` (one local Ray, each next sweep's trial workers readied after a
    sweep): the run of median wall time, and every run's wall time."""
    import sparsetune

    space = scratch / f"space-{epochs}.yaml"
    space.write_text(space_text(epochs, args.rounds))
    data = {"data_dir": args.data_dir} if args.data_dir else {}
    runs = []
    with sparsetune.session(gpus=0):
        for index in range(args.warm + 1):
            name = f"warm-{epochs}-{index}"
            if index:
                time.sleep(args.pause)
            launched = time.time()
            sparsetune.search(
                model=MODEL, data=args.dataset, subset=args.subset or None, trials=args.trials,
                max_concurrent=args.concurrent, cpus_per_trial=1, space=space,
                out=scratch / name, cache_dir=cache, seed=SEED, device="cpu", experiment=name,
                quiet=True, **data,
            )  # fmt: skip
            exited = time.time()
            if index:
                runs.append(breakdown(scratch / name, name, launched, exited, args))
    runs.sort(key=lambda run: run["wall_s"])
    return runs[len(runs) // 2] | {"walls_s": [run["wall_s"] for run in runs]}


def breakdown(out: Path, experiment: str, launched: float, exited: float, args) -> dict:
    from mlflow.tracking import MlflowClient

    from sparsetune.trial.clock import COMPUTE_PHASES

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id])
    trials = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    wall = exited - launched
    first = min(r.info.start_time for r in trials) / 1000
    last = max(r.info.end_time for r in trials) / 1000
    phases = {
        name: sum(r.data.metrics.get(f"time_{name}_s", 0.0) for r in trials) for name in PHASES
    }
    threads = [int(r.data.tags.get("torch_threads", "1")) for r in trials]
    compute = sum(phases[name] for name in COMPUTE_PHASES)
    compute_core_s = sum(
        sum(r.data.metrics.get(f"time_{name}_s", 0.0) for name in COMPUTE_PHASES) * t
        for r, t in zip(trials, threads, strict=True)
    )
    slots = args.concurrent
    cores = available_cores()
    handoffs = handoff_gaps(trials)
    quarter = max(1, len(handoffs) // 4)
    # Slot-seconds (a slot: one trial at a time), so that the rows add up to concurrent x wall.
    table = {
        "start-up (launch to the first trial)": slots * (first - launched),
        **{f"trials: {name}": seconds for name, seconds in phases.items()},
        "between and around the trials (Ray's hand-off, worker start)": slots * (last - first)
        - sum(phases.values()),
        "teardown (the last trial's end to exit)": slots * (exited - last),
    }
    return {
        "wall_s": wall,
        "trials": len(trials),
        "workers": len({r.data.tags.get("worker") for r in trials}),
        "compute_share": compute_core_s / (cores * wall),
        "overhead_per_trial_s": (slots * wall - compute) / len(trials),
        "compute_s": compute,
        "breakdown_s": table,
        # Does a trial's hand-off grow with the sweep (the driver's work per result)?
        "handoff_s_by_quarter": [
            statistics.median(handoffs[start : start + quarter])
            for start in range(0, quarter * 4, quarter)
            if handoffs[start : start + quarter]
        ],
    }


def handoff_gaps(trials) -> list[float]:
    """Seconds from each trial's run's end to the next trial's start on the same worker, in
    the order the next trials started: the driver's and Ray's hand-off between two trials."""
    by_worker: dict[str, list] = {}
    for run in sorted(trials, key=lambda r: r.info.start_time):
        by_worker.setdefault(run.data.tags.get("worker", ""), []).append(run)
    gaps = [
        (after.info.start_time, (after.info.start_time - before.info.end_time) / 1000)
        for runs in by_worker.values()
        for before, after in itertools.pairwise(runs)
    ]
    return [gap for _, gap in sorted(gaps)]


def run(args: argparse.Namespace, scratch: Path) -> dict:
    import ray
    import torch
    from rich.console import Console

    console = Console(stderr=True, width=160)
    (scratch / "space.yaml").write_text(space_text(1))
    base = sweep_config(args, scratch, "warm-up", 1)
    from sparsetune.data import load_splits
    from sparsetune.search.space import load_space
    from sparsetune.search.sweep import prepare_dense

    splits = load_splits(base.data_config())
    log(
        f"torch {torch.__version__}, ray {ray.__version__}, {available_cores()} cores; {MODEL} "
        f"on {len(splits.train)} {args.dataset} training examples, {args.trials} trials, "
        f"{args.concurrent} at a time"
    )
    prepare_dense(base, load_space(base.space), splits, console)  # cached, not timed
    arms = {}
    for epochs in args.epochs:
        log(f"sweep: {args.trials} trials of {epochs} retraining epoch(s)")
        arms[str(epochs)] = arm = timed_cli_sweep(args, scratch, epochs, base.cache_dir)
        log(
            f"  {arm['wall_s']:.1f} s wall, compute_share {arm['compute_share']:.3f}, "
            f"overhead_per_trial_s {arm['overhead_per_trial_s']:.2f}"
        )
    warm = {}
    for epochs in args.epochs if args.warm else ():
        log(f"in this process, Ray kept up: {args.warm} + 1 sweeps of {epochs} epoch(s)")
        warm[str(epochs)] = arm = timed_warm_sweeps(args, scratch, epochs, base.cache_dir)
        log(
            f"  median {arm['wall_s']:.1f} s wall, compute_share {arm['compute_share']:.3f}, "
            f"overhead_per_trial_s {arm['overhead_per_trial_s']:.2f}"
        )
    missed = [
        f"compute_share {arm['compute_share']:.3f} < {TARGETS['compute_share'][int(e)]} at {e}"
        for e, arm in arms.items()
        if int(e) in TARGETS["compute_share"]
        and arm["compute_share"] < TARGETS["compute_share"][int(e)]
    ] + [
        f"overhead_per_trial_s {arm['overhead_per_trial_s']:.2f} > 1.0 at {e}"
        for e, arm in arms.items()
        if arm["overhead_per_trial_s"] > TARGETS["overhead_per_trial_s"]
    ]
    for line in missed:
        log(f"MISSED: {line}")
    first = arms[str(args.epochs[0])]
    return {
        "compute_share": first["compute_share"],
        "overhead_per_trial_s": first["overhead_per_trial_s"],
        "arms": arms,
        **({"warm_process": warm} if warm else {}),
        "cores": available_cores(),
        "trials": args.trials,
        "rounds": args.rounds,
        "concurrent": args.concurrent,
        "train_examples": len(splits.train),
        "model": MODEL,
        "torch": torch.__version__,
        "ray": ray.__version__,
    }


def report(result: dict) -> str:
    arms = result["arms"]
    names = list(arms)
    lines = [
        f"{result['trials']} trials of {result['model']}, {result['concurrent']} at a time, "
        f"{result['cores']} cores, {result['train_examples']} training examples",
        "| slot-seconds, whole sweep | " + " | ".join(f"{n} epoch(s)" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]

    def row(key: str, values: list[str]) -> str:
        return f"| {key} | " + " | ".join(values) + " |"

    for key in arms[names[0]]["breakdown_s"]:
        lines.append(row(key, [f"{arms[n]['breakdown_s'][key]:.1f}" for n in names]))
    for key in ("wall_s", "compute_share", "overhead_per_trial_s", "workers"):
        lines.append(row(key, [f"{arms[n][key]:.3g}" for n in names]))
    lines.append(
        row(
            "hand-off between trials, median by quarter (s)",
            [" / ".join(f"{gap:.3f}" for gap in arms[n]["handoff_s_by_quarter"]) for n in names],
        )
    )
    for name, arm in result.get("warm_process", {}).items():
        lines.append(
            f"in this process, Ray kept up, {name} epoch(s): median {arm['wall_s']:.1f} s wall "
            f"(runs {', '.join(f'{w:.1f}' for w in arm['walls_s'])}), compute_share "
            f"{arm['compute_share']:.3f}, overhead_per_trial_s {arm['overhead_per_trial_s']:.2f}"
        )
    return "\n".join(lines)


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
    parser.add_argument("--trials", type=int, default=16, help="trials per sweep (default 16)")
    parser.add_argument("--concurrent", type=int, default=2, help="trials at a time (default 2)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="pruning rounds of each trial, each one report (default 1)",
    )
    parser.add_argument(
        "--epochs",
        type=lambda text: [int(e) for e in text.split(",")],
        default=[1, 10],
        help="retraining epochs of each sweep's trials, comma-separated (default 1,10)",
    )
    parser.add_argument(
        "--warm",
        type=int,
        default=0,
        help="also time N sweeps in this process with Ray kept up, after one untimed (default 0)",
    )
    parser.add_argument(
        "--pause",
        type=float,
        default=0.0,
        help="with --warm: seconds between the sweeps, as a notebook's user leaves (default 0)",
    )
    add_data_arguments(parser)
    args = parser.parse_args()
    if args.warm < 0:
        parser.error(f"--warm must be 0 or more (got {args.warm})")
    if args.pause < 0:
        parser.error(f"--pause must be 0 or more (got {args.pause})")
    if args.trials < 2:
        parser.error(f"--trials must be at least 2 (got {args.trials})")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1 (got {args.rounds})")
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
