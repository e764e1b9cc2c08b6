#!/usr/bin/env python
"""What the sweep's driver spends on each report and each finished trial, as the sweep grows.

    .venv/bin/python benchmarks/driver_work.py            # a table on stdout (about a minute)
    .venv/bin/python benchmarks/driver_work.py --json     # one JSON object on stdout
    .venv/bin/python benchmarks/driver_work.py --reports 1000,5000,20000 --finished 300,3000

Every report of every trial reaches the driver, which updates the live progress (the front and
its hypervolume: `SweepProgress`), and every finished trial is told to the Optuna study with the
attributes that join it to its records (`SweepSearch`: one transaction, `private_api`). Both run
on the cores the trials train on. Here, in this process, with no Ray:

- progress: `SweepProgress` fed `--reports` synthetic reports (5 rounds a trial, random accuracy
  and log-normal compression), timed per report; `ms_per_report_last` is the mean of the last
  500: what a report costs once the sweep has that many rows.
- attributes: a study on SQLite (`--trials` trials), each trial's 5 record attributes and its
  constraint set one by one (`Trial.set_user_attr`, `set_constraint`) or at once
  (`private_api.set_trial_attrs`), the median per trial.
- results: when the sweep ends, its results on the MLflow parent run (`log_results`: the counts,
  the hypervolume curve with a point per finished trial, the front's run ids, the result files)
  for sweeps of `--finished` trials, on SQLite: the median of 3. It runs once, after the last
  trial, while the user waits.

Both are printed against a plain PyTorch loop run here: `train_steps` is how many SGD steps of
LeNet-300-100 on a batch of 128 (one core) take as long.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def train_step_seconds() -> float:
    """One SGD step of LeNet-300-100 on a batch of 128, one thread: the median of 200."""
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
        nn.Linear(100, 10),
    )  # fmt: skip
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    images, labels = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    times = []
    for _ in range(220):
        start = time.perf_counter()
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[20:])


def progress_per_report(reports: int, seed: int = 0) -> dict:
    from rich.console import Console

    from sparsetune.search.objectives import resolve_objective
    from sparsetune.search.progress import SweepProgress

    rng = random.Random(seed)
    progress = SweepProgress(
        resolve_objective("pareto"),
        total=reports // 5,
        console=Console(file=io.StringIO()),
        key_params={},
        num_classes=10,
    )
    times = []
    for index in range(reports):
        trial = SimpleNamespace(trial_id=f"t{index // 5}", config={"method": "magnitude"})
        result = {
            "round": index % 5 + 1,
            "val_acc": rng.uniform(0.1, 0.9),
            "compression": rng.lognormvariate(2, 1),
        }
        start = time.perf_counter()
        progress.on_trial_result(0, [], trial, result)
        if index % 5 == 4:
            progress.on_trial_complete(0, [], trial)
        times.append(time.perf_counter() - start)
    last = times[-500:]
    return {
        "reports": reports,
        "seconds": sum(times),
        "ms_per_report_last": 1000 * sum(last) / len(last),
        "front_points": len(progress.front()),
    }


def attributes_per_trial(trials: int, scratch: Path) -> dict:
    import optuna

    from sparsetune.search import private_api

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    attrs = {"run_id": "0" * 32, "round": 5, "feasible": True, "ray_trial_id": "abc_00001"}
    attrs |= {"config_hash": "f" * 16}
    constraints = {"chance_floor": -0.5}
    medians = {"at_once": None}
    # Code from before `set_trial_attrs` (PYTHONPATH at an older worktree) has one way only.
    ways = ("one_by_one", "at_once") if hasattr(private_api, "set_trial_attrs") else ("one_by_one",)
    for way in ways:
        study = optuna.create_study(
            storage=f"sqlite:///{scratch / f'{way}.db'}", directions=["maximize", "maximize"]
        )
        times = []
        for _ in range(trials):
            trial = study.ask()
            start = time.perf_counter()
            if way == "at_once":
                private_api.set_trial_attrs(trial, attrs, constraints)
            else:
                for key, value in attrs.items():
                    trial.set_user_attr(key, value)
                for name, value in constraints.items():
                    trial.set_constraint(name, value)
            times.append(time.perf_counter() - start)
            study.tell(trial, [0.9, 10.0])
        medians[way] = 1000 * statistics.median(times)
    return {
        "trials": trials,
        "ms_one_by_one": medians["one_by_one"],
        "ms_at_once": medians["at_once"],
    }


def results_at_end(trials: int, scratch: Path) -> dict:
    from sparsetune.search.records import log_results
    from sparsetune.tracking.mlflow_store import MlflowStore

    curve = [{"trials_done": n, "hypervolume": n / trials} for n in range(1, trials + 1)]
    counts = {"front_size": 12, "trials_finished": trials, "trials_failed": 0}
    times = []
    for attempt in range(3):
        folder = scratch / f"results-{trials}-{attempt}"
        folder.mkdir()
        for name in ("pareto.json", "trials.csv"):
            (folder / name).write_text("{}")
        store = MlflowStore.open(f"sqlite:///{folder / 'mlflow.db'}", "end", folder / "art")
        records = SimpleNamespace(parent=store.start_run("sweep"), sweep_dir=folder)
        start = time.perf_counter()
        log_results(records, [{"run_id": "0" * 32}], counts, curve, curve[-1])
        times.append(time.perf_counter() - start)
    return {"trials": trials, "seconds": statistics.median(times)}


def run(args: argparse.Namespace) -> dict:
    step = train_step_seconds()
    log(f"plain PyTorch loop: {1000 * step:.2f} ms per LeNet-300-100 step (batch 128, 1 thread)")
    progress = []
    for reports in args.reports:
        row = progress_per_report(reports)
        row["train_steps"] = row["ms_per_report_last"] / (1000 * step)
        log(f"  {reports} reports: {row['ms_per_report_last']:.3f} ms a report at the end")
        progress.append(row)
    with tempfile.TemporaryDirectory(prefix="driver-work-") as scratch:
        attributes = attributes_per_trial(args.trials, Path(scratch))
        results = [results_at_end(trials, Path(scratch)) for trials in args.finished]
    for row in results:
        row["train_steps"] = row["seconds"] / step
    for key in ("ms_one_by_one", "ms_at_once"):
        value = attributes[key]
        attributes[key.replace("ms", "train_steps")] = (
            None if value is None else value / (1000 * step)
        )
    return {
        "train_step_ms": 1000 * step,
        "progress": progress,
        "attributes": attributes,
        "results": results,
    }


def report(result: dict) -> str:
    lines = [
        f"plain PyTorch loop: {result['train_step_ms']:.2f} ms a step",
        "| reports so far | driver's progress work, whole run (s) | a report at the end (ms) | "
        "in training steps |",
        "|---|---|---|---|",
    ]
    for row in result["progress"]:
        lines.append(
            f"| {row['reports']} | {row['seconds']:.2f} | {row['ms_per_report_last']:.3f} | "
            f"{row['train_steps']:.2f} |"
        )
    attributes = result["attributes"]
    ways = [
        f"{way.replace('_', ' ')} {attributes[f'ms_{way}']:.1f} ms "
        f"({attributes[f'train_steps_{way}']:.1f} steps)"
        for way in ("one_by_one", "at_once")
        if attributes[f"ms_{way}"] is not None
    ]
    lines.append(
        f"Optuna attributes a trial ({attributes['trials']} trials on SQLite): " + ", ".join(ways)
    )
    lines.append(
        "Results on the parent run at the end: "
        + ", ".join(
            f"{row['trials']} trials {row['seconds']:.3f} s ({row['train_steps']:.0f} steps)"
            for row in result["results"]
        )
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument(
        "--reports",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1000, 3000, 5000],
        help="reports fed to the progress, comma-separated (default 1000,3000,5000)",
    )
    parser.add_argument(
        "--trials", type=int, default=200, help="trials told to the study (default 200)"
    )
    parser.add_argument(
        "--finished",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[16, 300, 1000],
        help="finished trials of the sweeps whose results are logged (default 16,300,1000)",
    )
    args = parser.parse_args()
    if any(n < 500 for n in args.reports):
        parser.error(f"--reports must each be at least 500 (got {args.reports})")
    if args.trials < 1:
        parser.error(f"--trials must be at least 1 (got {args.trials})")
    if any(n < 1 for n in args.finished):
        parser.error(f"--finished must each be at least 1 (got {args.finished})")
    with contextlib.redirect_stdout(sys.stderr):
        result = run(args)
    print(json.dumps(result, indent=2) if args.json else report(result), flush=True)


if __name__ == "__main__":
    main()
