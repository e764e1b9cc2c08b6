"""Bad input: one line naming the problem and the fix, exit code 2, no traceback, nothing written.

Each case runs the real command in a subprocess and checks that neither the sweep folder nor an
MLflow store appears.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_helpers import SYNTHETIC_RUN, assert_one_error_line, run_cli, run_cli_many

BAD_SPACES = {
    "out_of_range.yaml": "methods:\n  magnitude:\n    c_fc: {low: -1, high: 2}\n",
    "malformed.yaml": "methods:\n  magnitude: [\n",
    "unknown_method.yaml": "methods:\n  prune_all: {}\n",
    "unknown_param.yaml": "methods:\n  magnitude:\n    c_xyz: 1.0\n",
    "empty_range.yaml": "methods:\n  magnitude:\n    rounds: {low: 5, high: 2}\n",
    "points_out_of_range.yaml": "- method: magnitude\n  params: {c_fc: 9.0}\n",
    "points_unknown_param.yaml": "- method: snip\n  params: {sparsity: 0.9, c_fc: 1.0}\n",
    "points_not_a_list.yaml": "method: magnitude\n",
}

CASES = [
    # (id, arguments, words the one line must contain)
    ("unknown-model", ["--model", "lenet9"], ["--model", "lenet9", "lenet300, lenet5"]),
    ("unimportable-model", ["--model", "nowhere:net"], ["--model", "nowhere", "PYTHONPATH"]),
    ("unknown-dataset", ["--dataset", "cifar7"], ["--dataset", "cifar7", "fashion-mnist, mnist"]),
    ("unknown-objective", ["--objective", "fast"], ["--objective", "fast", "pareto"]),
    (
        "unknown-method",
        ["--methods", "magnitude,snipp"],
        ["--methods", "snipp", "dense, magnitude, lottery, l0, sensitivity, snip"],
    ),
    ("zero-trials", ["--trials", "0"], ["--trials", "greater than or equal to 1"]),
    ("negative-trials", ["--trials", "-3"], ["--trials", "greater than or equal to 1"]),
    ("text-trials", ["--trials", "many"], ["--trials", "integer"]),
    ("zero-concurrency", ["--max-concurrent", "0"], ["--max-concurrent"]),
    ("bad-device", ["--device", "tpu"], ["--device", "'cpu'"]),
    (
        "out-of-range-space",
        ["--space", "{spaces}/out_of_range.yaml"],
        ["out_of_range.yaml", "methods.magnitude.c_fc.low", "greater than 0"],
    ),
    (
        "malformed-space",
        ["--space", "{spaces}/malformed.yaml"],
        ["malformed.yaml", "not valid YAML"],
    ),
    (
        "unknown-method-in-space",
        ["--space", "{spaces}/unknown_method.yaml"],
        ["methods.prune_all", "dense, grasp, l0, lottery, magnitude"],
    ),
    (
        "unknown-param-in-space",
        ["--space", "{spaces}/unknown_param.yaml"],
        ["methods.magnitude.c_xyz", "unknown parameter", "c_fc"],
    ),
    ("empty-range-in-space", ["--space", "{spaces}/empty_range.yaml"], ["rounds", "low"]),
    ("missing-space", ["--space", "{spaces}/nowhere.yaml"], ["nowhere.yaml", "--space"]),
    (
        "missing-data-no-network",
        ["--dataset", "mnist", "--data-dir", "{tmp}/no-data"],
        ["mnist", "--data-dir"],
    ),
    ("out-under-a-file", ["--out", "{tmp}/a-file/sweep"], ["--out", "a-file", "not a folder"]),
    ("out-unwritable", ["--out", "/proc/sparsetune-sweep"], ["--out", "cannot write"]),
    ("unknown-option", ["--bogus"], ["--bogus", "--help"]),
    (
        "max-acc-without-bound",
        ["--objective", "max-acc"],
        ["--objective max-acc needs --min-compression"],
    ),
    (
        "max-compression-without-drop",
        ["--objective", "max-compression"],
        ["--objective max-compression needs --max-drop"],
    ),
    (
        "bound-for-pareto",
        ["--min-compression", "10"],
        ["--min-compression applies to --objective max-acc only"],
    ),
    ("bound-below-1x", ["--objective", "max-acc", "--min-compression", "0.5"], ["min-compression"]),
    ("unknown-sampler", ["--sampler", "cmaes"], ["--sampler", "cmaes", "tpe, nsga2, gp"]),
    ("asha-on-pareto", ["--early-stop", "asha"], ["--early-stop asha", "dominance or off"]),
    (
        "dominance-on-one-objective",
        ["--objective", "max-acc", "--min-compression", "5", "--early-stop", "dominance"],
        ["--early-stop dominance is for Pareto objectives", "asha"],
    ),
    ("zero-budget", ["--budget-minutes", "0"], ["--budget-minutes", "greater than 0"]),
    ("zero-epoch-budget", ["--budget-epochs", "0"], ["--budget-epochs", "greater than 0"]),
    ("fractional-epoch-budget", ["--budget-epochs", "2.5"], ["--budget-epochs", "integer"]),
    ("missing-points", ["--enqueue", "{spaces}/nowhere.yaml"], ["--enqueue", "no such file"]),
    (
        "point-out-of-range",
        ["--enqueue", "{spaces}/points_out_of_range.yaml"],
        ["point 1", "magnitude.c_fc=9.0", "outside the space's [0.5, 2.5]"],
    ),
    (
        "point-unknown-param",
        ["--enqueue", "{spaces}/points_unknown_param.yaml"],
        ["point 1", "snip has no parameter 'c_fc'"],
    ),
    ("points-not-a-list", ["--enqueue", "{spaces}/points_not_a_list.yaml"], ["a list of points"]),
]


def make_workdir(folder: Path) -> Path:
    spaces = folder / "spaces"
    spaces.mkdir()
    for name, text in BAD_SPACES.items():
        (spaces / name).write_text(text)
    (folder / "a-file").write_text("not a folder")
    return folder


def search_arguments(workdir: Path, arguments: list[str]) -> list[str]:
    """The case's arguments in `workdir`, with a model, an --out and a --cache-dir there."""
    arguments = [a.format(spaces=workdir / "spaces", tmp=workdir) for a in arguments]
    if "--model" not in arguments:
        arguments = ["--model", "lenet5", *arguments]
    if "--out" not in arguments:
        arguments += ["--out", str(workdir / "sweep")]
    return ["search", *arguments, "--cache-dir", str(workdir / "cache")]


@pytest.fixture(scope="module")
def refusals(tmp_path_factory) -> dict[str, tuple[list[str], Any, Path]]:
    """Every case run once in its own folder, a few at a time: {id: (the folder's listing
    before, the process, the folder)}."""
    folders = {case[0]: make_workdir(tmp_path_factory.mktemp(case[0])) for case in CASES}
    before = {
        case_id: sorted(p.name for p in folder.iterdir()) for case_id, folder in folders.items()
    }
    results = run_cli_many(
        {
            case_id: {
                "args": search_arguments(folders[case_id], arguments),
                "cwd": folders[case_id],
            }
            for case_id, arguments, _ in CASES
        }
    )
    return {case_id: (before[case_id], results[case_id], folders[case_id]) for case_id in folders}


@pytest.mark.parametrize(
    "case_id, expected", [(c[0], c[2]) for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_gets_one_line_and_exit_code_2(refusals, case_id, expected):
    before, result, workdir = refusals[case_id]
    assert_one_error_line(result, expected)
    # Nothing half-written: no sweep folder, no MLflow store, no dense cache.
    assert sorted(p.name for p in workdir.iterdir()) == before
    assert not list(workdir.rglob("mlflow.db"))


def test_missing_model_option_is_bad_input(tmp_path):
    result = run_cli("search", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "sparsetune: error: Missing option '--model' (or --resume DIR, to continue a sweep); "
        "see 'sparsetune search --help'"
    ]


def test_resume_of_a_folder_without_a_sweep_is_bad_input(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli("search", "--resume", str(tmp_path / "empty"), cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("sparsetune: error: --resume ") and "sweep-state.json" in line
    assert list(tmp_path.iterdir()) == [tmp_path / "empty"]


def test_help_on_every_command(tmp_path):
    for command in ([], ["search"]):
        result = run_cli(*command, "--help", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "Usage: sparsetune" in result.stdout
    assert "--objective" in run_cli("search", "--help", cwd=tmp_path).stdout


def test_a_diverging_dense_recipe_stops_before_anything_is_written(tmp_path):
    (tmp_path / "space.yaml").write_text("train: {lr: 10.0, epochs: 2}\nmethods:\n  dense: {}\n")
    result = run_cli(
        "search",
        *SYNTHETIC_RUN,
        "--space",
        str(tmp_path / "space.yaml"),
        "--out",
        str(tmp_path / "sweep"),
        "--cache-dir",
        str(tmp_path / "cache"),
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    # the progress line that announced the dense stage, then the one-line reason
    assert result.stderr.strip().splitlines()[-1] == (
        "sparsetune: error: the dense stage diverged (training loss became nan in epoch 2); "
        "lower train.lr in the space"
    )
    assert not (tmp_path / "sweep").exists()
    assert not [p for p in (tmp_path / "cache" / "dense").iterdir() if p.is_dir()]
