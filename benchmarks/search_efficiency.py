#!/usr/bin/env python
"""How fast each sampler finds a good front: a tabular benchmark over the real LeNet-300-100 space.

    .venv/bin/python benchmarks/search_efficiency.py            # a table on stdout
    .venv/bin/python benchmarks/search_efficiency.py --json     # one JSON object on stdout

1. The table: `--points` configurations drawn from `search_spaces/lenet300.yaml` (the same number
   for each method, seeded) are trained for real on a Fashion-MNIST subset with short budgets, and
   every pruning round they report is stored in `--table` (JSON). A rerun trains only what is
   missing, so the table is built once.
2. The replay: each sampler runs `--seeds` times against the table. Its proposals come from the
   real space through the sweep's own define-by-run code; a proposal is answered with the stored
   rounds of the nearest table point of the same method (numeric knobs normalised to [0, 1], on a
   log scale where the space is, plus 1 per differing choice). As in a sweep, Optuna is told the
   last round, and the front and hypervolume (`sparsetune.search.hypervolume`) cover every round.
3. Printed: the median hypervolume after K and 2K trials per sampler, and the dominance-based
   stop replayed on the same table (rounds saved against hypervolume lost).

Target (issue 5): the `auto` sampler after K = 24 trials reaches at least the median hypervolume
of random search after 48: `ratio` = hv_auto_24 / hv_random_48 >= 1.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import optuna

from sparsetune.config import DEFAULT_CACHE_DIR, DEFAULT_DATA_DIR, DataConfig, TrialConfig
from sparsetune.identity import trial_hash
from sparsetune.search.choices import resolve_sampler
from sparsetune.search.hypervolume import hypervolume
from sparsetune.search.objectives import OBJECTIVES
from sparsetune.search.samplers import make_sampler
from sparsetune.search.space import SearchSpace, default_space_path, load_space, params_from_flat
from sparsetune.search.stopping import DominanceStopper
from sparsetune.trial import run_trial

OBJECTIVE = OBJECTIVES["pareto"]
NUM_CLASSES = 10
ROUND_METRICS = ("val_acc", "compression", "flops_ratio")


# -- the table ------------------------------------------------------------------------------
def draw_points(space: SearchSpace, count: int, seed: int) -> list[dict[str, Any]]:
    """`count` flat configurations, the same number per method, from seeded random sampling."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    per_method = math.ceil(count / len(space.methods))
    points: list[dict[str, Any]] = []
    for method in space.method_names:
        single = space.model_copy(update={"methods": {method: space.methods[method]}})
        for _ in range(per_method):
            trial = study.ask()
            points.append(single.sample(trial))
            study.tell(trial, 0.0)
    return points


def trial_config(flat: dict[str, Any], space: SearchSpace, data: DataConfig, epochs: int):
    method, params = params_from_flat(flat)
    train = space.train.model_copy(update={"epochs": epochs})
    return TrialConfig(model="lenet300", data=data, train=train, method=method, params=params)


def build_table(args: argparse.Namespace, space: SearchSpace) -> list[dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    if args.table.exists():
        table = {entry["hash"]: entry for entry in json.loads(args.table.read_text())}
    data = DataConfig(
        name="fashion-mnist", data_dir=args.data_dir, subset=args.subset, val_size=args.val_size
    )
    points = draw_points(space, args.points, seed=0)
    hashes = [trial_hash(trial_config(p, space, data, args.epochs)) for p in points]
    missing = [p for p, key in zip(points, hashes, strict=True) if key not in table]
    log(f"table: {len(points)} points, {len(missing)} to train, the rest stored in {args.table}")
    started = time.monotonic()
    for index, flat in enumerate(missing, start=1):
        config = trial_config(flat, space, data, args.epochs)
        try:
            rounds = [
                {k: getattr(r, k) for k in ("round", *ROUND_METRICS)}
                for r in run_trial(config, cache_dir=args.cache_dir)
            ]
        except Exception as error:  # a failed trial is a point with no rounds, as in a sweep
            log(f"  {flat['method']} failed: {type(error).__name__}: {error}")
            rounds = []
        table[trial_hash(config)] = {"hash": trial_hash(config), "flat": flat, "rounds": rounds}
        if index % 10 == 0 or index == len(missing):
            args.table.write_text(json.dumps(list(table.values()), indent=1))
            log(f"  {index}/{len(missing)} trained ({time.monotonic() - started:.0f} s)")
    return [table[key] for key in hashes]


# -- the replay -----------------------------------------------------------------------------
class Table:
    def __init__(self, entries: list[dict[str, Any]], space: SearchSpace):
        self.space = space
        self.by_method: dict[str, list[dict[str, Any]]] = {}
        for entry in entries:
            self.by_method.setdefault(entry["flat"]["method"], []).append(entry)

    def nearest(self, flat: dict[str, Any]) -> dict[str, Any]:
        method = flat["method"]
        specs = self.space.methods[method]
        return min(self.by_method[method], key=lambda e: self._distance(flat, e["flat"], specs))

    @staticmethod
    def _distance(a: dict[str, Any], b: dict[str, Any], specs) -> float:
        distance = 0.0
        for key in set(a) | set(b):
            if key == "method":
                continue
            if key not in a or key not in b:
                distance += 1.0
                continue
            spec = specs[key.split(".", 1)[1]]
            if spec.choices is not None or spec.value is not None:
                distance += float(a[key] != b[key])
                continue
            scale = math.log if spec.log else float
            low, high = scale(spec.low), scale(spec.high)
            span = (high - low) or 1.0
            distance += abs(scale(a[key]) - scale(b[key])) / span
        return distance


def replay(
    table: Table, sampler: str, seed: int, trials: int, stop: bool = False
) -> tuple[list[float], int]:
    """Hypervolume after each trial, and the rounds trained (the cost), for one seeded run."""
    name = resolve_sampler(
        sampler, OBJECTIVE, conditional=table.space.is_conditional, trials=trials
    )
    study = optuna.create_study(
        directions=["maximize", "maximize"], sampler=make_sampler(name, trials=trials, seed=seed)
    )
    stopper = DominanceStopper(OBJECTIVE, NUM_CLASSES) if stop else None
    seen: list[dict[str, Any]] = []
    curve, rounds_trained = [], 0
    for number in range(trials):
        trial = study.ask()
        rounds = table.nearest(table.space.sample(trial))["rounds"]
        observed = []
        for result in rounds:
            observed.append(result)
            if stopper is not None and stopper(str(number), result):
                break
        rounds_trained += len(observed)
        if observed:
            seen.extend(observed)
            study.tell(trial, [observed[-1]["val_acc"], observed[-1]["compression"]])
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        curve.append(hypervolume(seen, OBJECTIVE.metrics, NUM_CLASSES))
    return curve, rounds_trained


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200, help="table size (default 200)")
    # 8,000 examples x the space's 8 dense epochs = 504 steps of 128: lottery's rewind points
    # (100, 500) exist in the dense stage.
    parser.add_argument("--subset", type=int, default=8000, help="Fashion-MNIST training examples")
    parser.add_argument("--val-size", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=8, help="dense epochs (the space's: 8)")
    parser.add_argument("--k", type=int, default=24, help="trials K; also reported at 2K")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--samplers", default="auto,random,nsga2,qmc", help="auto is TPE here")
    parser.add_argument(
        "--table", type=Path, default=DEFAULT_CACHE_DIR / "search-efficiency-table.json"
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    space = load_space(default_space_path("lenet300"))
    table = Table(build_table(args, space), space)
    k, seeds = args.k, range(args.seeds)
    results: dict[str, dict[str, float]] = {}
    for sampler in args.samplers.split(","):
        started = time.monotonic()
        curves = [replay(table, sampler, seed, 2 * k)[0] for seed in seeds]
        results[sampler] = {
            f"hv_{k}": statistics.median(c[k - 1] for c in curves),
            f"hv_{2 * k}": statistics.median(c[2 * k - 1] for c in curves),
        }
        log(f"{sampler}: {results[sampler]} ({time.monotonic() - started:.0f} s)")

    # The dominance stop, replayed on the same table with the auto sampler.
    plain = [replay(table, "auto", seed, 2 * k) for seed in seeds]
    stopped = [replay(table, "auto", seed, 2 * k, stop=True) for seed in seeds]
    dominance = {
        "rounds_plain": statistics.median(r for _, r in plain),
        "rounds_stopped": statistics.median(r for _, r in stopped),
        f"hv_{2 * k}_plain": statistics.median(c[-1] for c, _ in plain),
        f"hv_{2 * k}_stopped": statistics.median(c[-1] for c, _ in stopped),
    }
    summary = {
        "points": sum(len(v) for v in table.by_method.values()),
        "seeds": args.seeds,
        "k": k,
        f"hv_auto_{k}": results["auto"][f"hv_{k}"],
        f"hv_random_{k}": results["random"][f"hv_{k}"],
        f"hv_random_{2 * k}": results["random"][f"hv_{2 * k}"],
        "ratio": results["auto"][f"hv_{k}"] / results["random"][f"hv_{2 * k}"],
        "samplers": results,
        "dominance_stop": dominance,
    }
    if args.json:
        print(json.dumps(summary))
        return
    print(f"median hypervolume over {args.seeds} seeds ({summary['points']} table points)")
    print(f"{'sampler':<8} {'K=' + str(k):>10} {'2K=' + str(2 * k):>10}")
    for sampler, row in results.items():
        print(f"{sampler:<8} {row[f'hv_{k}']:>10.4f} {row[f'hv_{2 * k}']:>10.4f}")
    print(f"ratio hv_auto_{k} / hv_random_{2 * k} = {summary['ratio']:.3f} (target >= 1)")
    print(f"dominance stop (auto, {2 * k} trials): {dominance}")


if __name__ == "__main__":
    main()
