"""The grid of benchmarks/search_efficiency.py: every proposal of the real space lands on a grid
point that the table holds, a grid that leaves a searched knob out is refused, and the replay
starts as a default sweep does."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
import yaml
from sweep_helpers import load_benchmark

from sparsetune.search.enqueue import AUTO_TRIALS_PER_POINT, PAPER_POINTS, auto_points, load_points
from sparsetune.search.space import default_space_path, load_space

BENCHMARK = Path(__file__).parents[2] / "benchmarks" / "search_efficiency.py"


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("search_efficiency")


@pytest.fixture(scope="module")
def grid(bench):
    space = load_space(default_space_path("lenet300"))
    return bench.Grid.load(BENCHMARK.with_name(bench.GRID_FILE), space)


def test_the_grid_covers_every_method_with_a_few_hundred_points(bench, grid):
    points = grid.points()
    methods = {point["method"] for point in points}
    # Every method the grid file lists is one of the space's, and each gets points.
    listed = yaml.safe_load(BENCHMARK.with_name(bench.GRID_FILE).read_text())
    assert methods == set(grid.space.method_names) == set(listed)
    assert 200 <= len(points) <= 800  # a few hundred: the table trains in minutes (README)
    assert len({tuple(sorted(p.items())) for p in points}) == len(points)  # no repeats


# The knobs that set how much is pruned. The front lives at their top: a grid that stopped short
# of the space's bound there (magnitude's c_fc at 2.25, its sparsity at 0.95) hid the space's best
# region, 117x at 0.79 (benchmarks/README.md).
COMPRESSION_KNOBS = [
    ("magnitude", "c_fc"),
    ("magnitude", "sparsity"),
    ("snip", "sparsity"),
    ("grasp", "sparsity"),
    ("random", "sparsity"),
]


@pytest.mark.parametrize(("method", "knob"), COMPRESSION_KNOBS)
def test_compression_knobs_reach_the_top_of_the_space(grid, method, knob):
    spec = grid.space.methods[method][knob]
    values = sorted(grid.values[method][knob])
    assert values[-1] == spec.high
    # Fine near the top, where compression changes fastest (c_fc 2.0 -> 2.5: 33x -> 113x).
    assert values[-1] - values[-2] <= (spec.high - spec.low) / 8


# How long each round trains: the table holds a short and a long length, so a proposal of long
# rounds is answered with long rounds' accuracy (and the sampler can learn what they buy).
LENGTH_KNOBS = [("magnitude", "retrain_epochs"), ("lottery", "train_epochs")]


@pytest.mark.parametrize(("method", "knob"), LENGTH_KNOBS)
def test_round_lengths_hold_a_quick_and_a_long_round(grid, method, knob):
    spec = grid.space.methods[method][knob]
    values = sorted(grid.values[method][knob])
    assert values[0] == spec.low == 1
    assert values[-1] >= math.sqrt(spec.low * spec.high)  # past the log scale's midpoint
    assert len(values) >= 2


def test_when_conditions_drop_knobs_that_do_not_apply(grid):
    magnitude = [p for p in grid.points() if p["method"] == "magnitude"]
    for point in magnitude:
        has_sparsity = "magnitude.sparsity" in point
        assert has_sparsity == (point["magnitude.criterion"] == "global")
        assert ("magnitude.c_fc" in point) == (not has_sparsity)


def test_every_sampled_proposal_snaps_onto_a_grid_point(bench, grid):
    keys = {bench.key_of(point) for point in grid.points()}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(200):
        trial = study.ask()
        proposal = grid.space.sample(trial)
        assert bench.key_of(grid.snap(proposal)) in keys
        study.tell(trial, 0.0)


def test_numbers_snap_to_the_nearest_value_on_the_spaces_scale(bench, grid):
    snapped = grid.snap(
        {"method": "sensitivity", "sensitivity.lmbda": 3.5e-4, "sensitivity.lr": 0.06}
    )
    assert snapped["sensitivity.lmbda"] == 1e-3  # log scale: 3.5e-4 is nearer 1e-3 than 1e-4
    assert snapped["sensitivity.lr"] == 0.1  # log scale: 0.06 is nearer 0.1 than 0.03
    snapped = grid.snap({"method": "snip", "snip.sparsity": 0.76})
    assert snapped["snip.sparsity"] == 0.8  # linear scale


def test_a_method_the_grid_does_not_list_sits_the_benchmark_out(bench, grid, tmp_path):
    values = {method: knobs for method, knobs in grid.values.items() if method != "snip"}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(values))
    smaller = bench.Grid.load(path, load_space(default_space_path("lenet300")))
    assert "snip" not in smaller.space.method_names
    assert {point["method"] for point in smaller.points()} == set(values)


def test_a_grid_without_a_searched_knob_is_refused(bench, grid):
    values = {method: dict(knobs) for method, knobs in grid.values.items()}
    del values["snip"]["sparsity"]
    with pytest.raises(ValueError, match="snip.sparsity is searched"):
        bench.Grid(values, grid.space)


def test_reach_share_counts_runs_at_or_above_the_target(bench):
    assert bench.reach_share([1.0, 1.2, 1.29, 1.3, 1.35], 1.29) == 0.6
    assert bench.reach_share([0.5], 1.0) == 0.0


def test_the_replay_starts_as_a_default_sweep_does(bench, grid):
    """The papers' points first (`--enqueue auto`), then the sampler; `enqueue="none"`: the
    sampler from the first trial."""
    row = {"round": 1, "val_acc": 0.5, "compression": 2.0, "flops_ratio": 1.0}
    table = bench.Table({bench.key_of(point): [row] for point in grid.points()}, grid)
    asked: list[dict] = []
    answer = table.answer
    table.answer = lambda flat: asked.append(flat) or answer(flat)
    count = len(load_points(PAPER_POINTS, grid.space, "lenet300").points)
    trials = AUTO_TRIALS_PER_POINT * count
    paper = auto_points(grid.space, "lenet300", trials).points
    assert len(paper) == count >= 9
    bench.replay(table, "auto", seed=0, trials=trials)
    assert len(asked) == trials
    for flat, point in zip(asked, paper, strict=False):
        assert point.items() <= flat.items()
    asked.clear()
    bench.replay(table, "auto", seed=0, trials=trials, enqueue="none")
    assert [flat["method"] for flat in asked[:count]] != [point["method"] for point in paper]
