#!/usr/bin/env python
"""How fast each sampler finds a good front: a tabular benchmark over the real LeNet-300-100 space.

    .venv/bin/python benchmarks/search_efficiency.py            # a table on stdout
    .venv/bin/python benchmarks/search_efficiency.py --json     # one JSON object on stdout

1. The table: every combination of the values that `--grid` (YAML, per method and knob; default
   search_efficiency_grid.yaml) gives the knobs of `search_spaces/lenet300.yaml` is trained for
   real on a Fashion-MNIST subset with short budgets, and every pruning round it reports is stored
   in `--table` (JSON). A rerun trains only what is missing, so the table is built once.
2. The replay: each sampler runs `--seeds` times against the table. Its proposals come from the
   real space through the sweep's own define-by-run code; a proposal is snapped to the nearest grid
   point, knob by knob (on a log scale where the space is; a choice the grid lacks snaps to its
   first value), and answered with that point's stored rounds. As in a sweep, the papers' points
   come first (`--enqueue auto`, the default: `sparsetune.search.enqueue.auto_points`), Optuna is
   told the last round, and the front and hypervolume (`sparsetune.search.hypervolume`) cover
   every round.
3. Printed: the median (and mean) hypervolume after K, 2K and 4K trials per sampler, the share of
   seeds that reach 95% of the table's own hypervolume by then (the medians can sit on a plateau
   that every sampler reaches, while the mean and the share show who finds the best region;
   benchmarks/README.md), and the dominance-based stop replayed on the same table (rounds saved
   against hypervolume lost).

Targets (issue 25), on each of three disjoint seed sets (`--seed-sets`): the `auto` sampler after
K = 24 trials reaches at least the median hypervolume of random search after 4K = 96:
`ratio` = hv_auto_24 / hv_random_96 >= 1; and at least half of its seeds reach 95% of the table's
front by 2K = 48 trials: `reach_auto_48` >= 0.5.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import yaml

from sparsetune.config import DEFAULT_CACHE_DIR, DEFAULT_DATA_DIR, DataConfig, TrialConfig
from sparsetune.identity import trial_hash
from sparsetune.search.choices import resolve_sampler
from sparsetune.search.enqueue import AUTO, NONE, auto_points
from sparsetune.search.hypervolume import hypervolume
from sparsetune.search.objectives import resolve_objective
from sparsetune.search.rounds import SOURCE_ATTR, method_of, round_trial
from sparsetune.search.samplers import make_sampler
from sparsetune.search.space import SearchSpace, default_space_path, load_space, params_from_flat
from sparsetune.search.stopping import DominanceStopper
from sparsetune.train.allocator import keep_freed_memory
from sparsetune.trial import run_trial

NUM_CLASSES = 10
OBJECTIVE = resolve_objective("pareto", num_classes=NUM_CLASSES)  # with the sweep's chance floor
ROUND_METRICS = ("val_acc", "compression", "flops_ratio")
GRID_FILE = "search_efficiency_grid.yaml"
NEAR_OPTIMUM = 0.95  # a run "reaches" the table's front at this share of its hypervolume


# -- the grid -------------------------------------------------------------------------------
class Grid:
    """Values per knob of the space (`--grid`, YAML), every combination a table point, and the
    snapping of any proposal from the real space onto its nearest grid point."""

    def __init__(self, values: dict[str, dict[str, list[Any]]], space: SearchSpace):
        self.space = space
        self.values: dict[str, dict[str, list[Any]]] = {}
        for method, specs in space.methods.items():
            given = values.get(method)
            if given is None:
                raise ValueError(f"grid: no entry for method {method!r} of the space")
            unknown = set(given) - set(specs)
            if unknown:
                raise ValueError(f"grid: {method} has no knob {sorted(unknown)} in the space")
            self.values[method] = {}
            for param, spec in specs.items():
                if spec.value is not None:
                    self.values[method][param] = [spec.value]
                elif param in given:
                    self.values[method][param] = list(given[param])
                else:
                    raise ValueError(f"grid: {method}.{param} is searched but has no grid values")

    @classmethod
    def load(cls, path: Path, space: SearchSpace) -> Grid:
        """The grid in `path` over `space` narrowed to the methods the grid lists: a method added
        to the space since (a new or a plugin's) sits the benchmark out until it gets values."""
        values = yaml.safe_load(path.read_text()) or {}
        listed = {method: specs for method, specs in space.methods.items() if method in values}
        return cls(values, space.model_copy(update={"methods": listed}))

    def points(self) -> list[dict[str, Any]]:
        """Every combination, as the flat configs `SearchSpace.sample` gives, without repeats."""
        points: dict[str, dict[str, Any]] = {}
        for method, knobs in self.values.items():
            for combination in itertools.product(*knobs.values()):
                flat = self._flat(method, dict(zip(knobs, combination, strict=True)))
                points.setdefault(key_of(flat), flat)
        return list(points.values())

    def snap(self, proposal: dict[str, Any]) -> dict[str, Any]:
        """The grid point nearest to `proposal`, knob by knob."""
        method = proposal["method"]
        specs = self.space.methods[method]
        values = {}
        for param, options in self.values[method].items():
            wanted = proposal.get(f"{method}.{param}", options[0])
            values[param] = _nearest(wanted, options, specs[param])
        return self._flat(method, values)

    def _flat(self, method: str, values: dict[str, Any]) -> dict[str, Any]:
        specs = self.space.methods[method]
        chosen: dict[str, Any] = {}
        for param, value in values.items():
            if specs[param].applies(chosen):
                chosen[param] = value
        return {"method": method, **{f"{method}.{param}": v for param, v in chosen.items()}}


def _nearest(wanted: Any, options: list[Any], spec) -> Any:
    if spec.choices is not None or spec.value is not None:
        return wanted if wanted in options else options[0]
    scale = math.log if spec.log else float
    return min(options, key=lambda option: abs(scale(option) - scale(wanted)))


def key_of(flat: dict[str, Any]) -> str:
    return json.dumps(flat, sort_keys=True)


def trial_config(flat: dict[str, Any], space: SearchSpace, data: DataConfig, epochs: int):
    method, params = params_from_flat(flat)
    train = space.train.model_copy(update={"epochs": epochs})
    return TrialConfig(model="lenet300", data=data, train=train, method=method, params=params)


def build_table(args: argparse.Namespace, grid: Grid) -> dict[str, list[dict[str, Any]]]:
    """Rounds per grid point (by `key_of`), training the points the table file lacks."""
    table: dict[str, dict[str, Any]] = {}
    if args.table.exists():
        table = {entry["hash"]: entry for entry in json.loads(args.table.read_text())}
    data = DataConfig(
        name="fashion-mnist", data_dir=args.data_dir, subset=args.subset, val_size=args.val_size
    )
    points = grid.points()
    configs = [trial_config(p, grid.space, data, args.epochs) for p in points]
    hashes = [trial_hash(config) for config in configs]
    missing = [
        (flat, config, key)
        for flat, config, key in zip(points, configs, hashes, strict=True)
        if key not in table
    ]
    log(f"table: {len(points)} grid points, {len(missing)} to train, the rest in {args.table}")
    started = time.monotonic()
    for index, (flat, config, key) in enumerate(missing, start=1):
        try:
            rounds = [
                {k: getattr(r, k) for k in ("round", *ROUND_METRICS)}
                for r in run_trial(config, cache_dir=args.cache_dir)
            ]
        except Exception as error:  # a failed trial is a point with no rounds, as in a sweep
            log(f"  {flat['method']} failed: {type(error).__name__}: {error}")
            rounds = []
        table[key] = {"hash": key, "flat": flat, "rounds": rounds}
        if index % 10 == 0 or index == len(missing):
            args.table.write_text(json.dumps(list(table.values()), indent=1))
            log(f"  {index}/{len(missing)} trained ({time.monotonic() - started:.0f} s)")
    return {key_of(p): table[h]["rounds"] for p, h in zip(points, hashes, strict=True)}


# -- the replay -----------------------------------------------------------------------------
class Table:
    """The grid's stored rounds, answering any proposal of the real space."""

    def __init__(self, rounds: dict[str, list[dict[str, Any]]], grid: Grid):
        self.rounds = rounds
        self.grid = grid
        self.space = grid.space

    def answer(self, proposal: dict[str, Any]) -> list[dict[str, Any]]:
        return self.rounds[key_of(self.grid.snap(proposal))]


def replay(
    table: Table,
    sampler: str,
    seed: int,
    trials: int,
    stop: bool = False,
    every_round: bool = True,
    enqueue: str = AUTO,
) -> tuple[list[float], int]:
    """Hypervolume after each trial, and the rounds trained (the cost), for one seeded run."""
    name = resolve_sampler(
        sampler, OBJECTIVE, conditional=table.space.is_conditional, trials=trials
    )
    study = optuna.create_study(
        directions=["maximize", "maximize"], sampler=make_sampler(name, trials=trials, seed=seed)
    )
    if enqueue == AUTO:  # what a sweep of `trials` runs first (Ray's points_to_evaluate)
        for point in auto_points(table.space, "lenet300", trials).points:
            study.enqueue_trial(point)
    stopper = DominanceStopper(OBJECTIVE, NUM_CLASSES) if stop else None
    seen: list[dict[str, Any]] = []
    curve, rounds_trained = [], 0
    for number in range(trials):
        trial = study.ask()
        flat = table.space.sample(trial)
        rounds = table.answer(flat)
        observed = []
        for result in rounds:
            observed.append(result)
            if stopper is not None and stopper(str(number), result):
                break
        rounds_trained += len(observed)
        if observed:
            seen.extend(row for row in observed if OBJECTIVE.feasible(row))
            last = observed[-1]
            for constraint, violation in OBJECTIVE.constraints(last).items():
                trial.set_constraint(constraint, violation)
            study.tell(trial, [last["val_acc"], last["compression"]])
            if every_round:
                tell_earlier_rounds(study, trial, flat, observed[:-1])
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        curve.append(hypervolume(seen, OBJECTIVE.metrics, NUM_CLASSES))
    return curve, rounds_trained


def tell_earlier_rounds(study, trial, flat: dict[str, Any], earlier: list[dict[str, Any]]) -> None:
    """What the sweep's searcher does when a trial ends (search/searcher.py)."""
    method_name, method = method_of(flat)
    for result in earlier:
        added = round_trial(
            trial.params,
            trial.distributions,
            result,
            OBJECTIVE,
            method_name=method_name,
            method=method,
            user_attrs={SOURCE_ATTR: trial.number},
        )
        if added is not None:
            study.add_trial(added)


def reach_share(values: list[float], target: float) -> float:
    """The share of runs whose hypervolume is at least `target`."""
    return sum(value >= target for value in values) / len(values)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=Path, default=Path(__file__).with_name(GRID_FILE))
    # 8,000 examples x the space's 8 dense epochs = 504 steps of 128: lottery's rewind points
    # (100, 500) exist in the dense stage.
    parser.add_argument("--subset", type=int, default=8000, help="Fashion-MNIST training examples")
    parser.add_argument("--val-size", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=8, help="dense epochs (the space's: 8)")
    parser.add_argument("--k", type=int, default=24, help="trials K; also reported at 2K and 4K")
    parser.add_argument("--seeds", type=int, default=30, help="seeds per seed set")
    parser.add_argument(
        "--seed-sets", type=int, default=3, help="disjoint seed sets: 0.., 100.., 200.., ..."
    )
    parser.add_argument("--samplers", default="auto,random,nsga2,qmc", help="auto is TPE here")
    parser.add_argument(
        "--last-round-only",
        action="store_true",
        help="tell Optuna each trial's last round only (as sweeps did before): the baseline",
    )
    parser.add_argument(
        "--enqueue",
        choices=(AUTO, NONE),
        default=AUTO,
        help="the sweeps' default start, the papers' points (auto), or none: the baseline",
    )
    parser.add_argument(
        "--table", type=Path, default=DEFAULT_CACHE_DIR / "search-efficiency-grid.json"
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    keep_freed_memory()  # this process trains: reuse freed blocks (train/allocator.py)
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    space = load_space(default_space_path("lenet300"))
    grid = Grid.load(args.grid, space)
    table = Table(build_table(args, grid), grid)
    k, every_round = args.k, not args.last_round_only
    options = {"every_round": every_round, "enqueue": args.enqueue}
    above_floor = [
        row for rounds in table.rounds.values() for row in rounds if OBJECTIVE.feasible(row)
    ]
    table_hv = hypervolume(above_floor, OBJECTIVE.metrics, NUM_CLASSES)
    sets = []
    for index in range(args.seed_sets):
        seeds = range(100 * index, 100 * index + args.seeds)
        results: dict[str, dict[str, float]] = {}
        for sampler in args.samplers.split(","):
            started = time.monotonic()
            horizon = 4 * k if sampler == "random" else 2 * k
            curves = [replay(table, sampler, seed, horizon, **options)[0] for seed in seeds]
            results[sampler] = {}
            for trials in (k, 2 * k, 4 * k):
                if trials > horizon:
                    continue
                after = [curve[trials - 1] for curve in curves]
                results[sampler][f"hv_{trials}"] = statistics.median(after)
                results[sampler][f"mean_{trials}"] = statistics.mean(after)
                results[sampler][f"reach_{trials}"] = reach_share(after, NEAR_OPTIMUM * table_hv)
            log(f"set {index} {sampler}: {results[sampler]} ({time.monotonic() - started:.0f} s)")
        sets.append(
            {
                "seeds": f"{seeds.start}-{seeds.stop - 1}",
                f"hv_auto_{k}": results["auto"][f"hv_{k}"],
                f"hv_random_{4 * k}": results["random"][f"hv_{4 * k}"],
                "ratio": results["auto"][f"hv_{k}"] / results["random"][f"hv_{4 * k}"],
                f"reach_auto_{2 * k}": results["auto"][f"reach_{2 * k}"],
                "samplers": results,
            }
        )

    # The dominance stop, replayed on the first seed set with the auto sampler.
    seeds = range(args.seeds)
    plain = [replay(table, "auto", seed, 2 * k, **options) for seed in seeds]
    stopped = [replay(table, "auto", seed, 2 * k, stop=True, **options) for seed in seeds]
    dominance = {
        "rounds_plain": statistics.median(r for _, r in plain),
        "rounds_stopped": statistics.median(r for _, r in stopped),
        f"hv_{2 * k}_plain": statistics.median(c[-1] for c, _ in plain),
        f"hv_{2 * k}_stopped": statistics.median(c[-1] for c, _ in stopped),
    }
    summary = {
        "points": len(table.rounds),
        "table_hv": table_hv,
        "seeds_per_set": args.seeds,
        "k": k,
        "every_round_told": every_round,
        "enqueue": args.enqueue,
        "ratio_min": min(entry["ratio"] for entry in sets),
        f"reach_auto_{2 * k}_min": min(entry[f"reach_auto_{2 * k}"] for entry in sets),
        "seed_sets": sets,
        "dominance_stop": dominance,
    }
    if args.json:
        print(json.dumps(summary))
        return
    print(
        f"median hypervolume over {args.seeds} seeds per set ({summary['points']} table points, "
        f"table front {table_hv:.4f}); reach: share of seeds at >= {NEAR_OPTIMUM:.0%} of it"
    )
    for entry in sets:
        print(f"seeds {entry['seeds']}")
        print(
            f"{'sampler':<8} {'K=' + str(k):>8} {'2K':>8} {'4K':>8}"
            f" {'mean K':>8} {'mean 2K':>8} {'reach K':>8} {'reach 2K':>8}"
        )
        for sampler, row in entry["samplers"].items():
            at_4k = row.get(f"hv_{4 * k}")
            print(
                f"{sampler:<8} {row[f'hv_{k}']:>8.4f} {row[f'hv_{2 * k}']:>8.4f}"
                f" {'' if at_4k is None else format(at_4k, '.4f'):>8}"
                f" {row[f'mean_{k}']:>8.4f} {row[f'mean_{2 * k}']:>8.4f}"
                f" {row[f'reach_{k}']:>8.0%} {row[f'reach_{2 * k}']:>8.0%}"
            )
        print(
            f"ratio hv_auto_{k} / hv_random_{4 * k} = {entry['ratio']:.3f} (target >= 1); "
            f"reach_auto_{2 * k} = {entry[f'reach_auto_{2 * k}']:.0%} (target >= 50%)"
        )
    print(f"dominance stop (auto, {2 * k} trials): {dominance}")


if __name__ == "__main__":
    main()
