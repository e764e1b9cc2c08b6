"""End to end: `sparsetune sweep SPEC` runs a real tiny sweep, says "nothing to do" when run
again, and with `new_sweep: always` starts a second sweep that tries the first's front first."""

from __future__ import annotations

import json

import optuna
import pytest
from cli_helpers import MAGNITUDE_GLOBAL_SPACE, run_cli
from sweep_helpers import ray_trials

from sparsetune.app.scheduled_sweep import EXIT_FINISHED, EXIT_NOTHING_TO_DO
from sparsetune.search.scheduled import warm_start
from sparsetune.search.space import load_space

pytestmark = pytest.mark.slow

SPEC = """
model: lenet300
dataset: synthetic
val_size: 500
space: space.yaml
trials: 2
max_concurrent: 2
seed: 0
out: runs
cache_dir: cache
experiment: scheduled
"""


def test_a_spec_runs_once_then_has_nothing_to_do_then_warm_starts_a_new_sweep(tmp_path):
    (tmp_path / "space.yaml").write_text(MAGNITUDE_GLOBAL_SPACE)
    (tmp_path / "spec.yaml").write_text(SPEC)
    first = tmp_path / "runs"

    result = run_cli("sweep", "spec.yaml", cwd=tmp_path)
    assert result.returncode == EXIT_FINISHED, result.stderr[-3000:]
    assert json.loads((first / "sweep-state.json").read_text())["status"] == "finished"
    front = json.loads((first / "pareto.json").read_text())["front"]
    assert front

    again = run_cli("sweep", "spec.yaml", cwd=tmp_path)
    assert again.returncode == EXIT_NOTHING_TO_DO, again.stderr[-3000:]
    assert "nothing to do" in again.stderr

    (tmp_path / "spec.yaml").write_text(SPEC + "new_sweep: always\n")
    expected = warm_start([first], load_space(tmp_path / "space.yaml")).points
    result = run_cli("sweep", "spec.yaml", cwd=tmp_path)
    assert result.returncode == EXIT_FINISHED, result.stderr[-3000:]
    assert f", {len(expected)} enqueued point" in result.stderr
    (second,) = [p for p in first.iterdir() if (p / "sweep-state.json").is_file()]
    assert json.loads((second / "sweep-state.json").read_text())["status"] == "finished"

    storage = f"sqlite:///{second / 'optuna.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    for point, trial in zip(expected, ray_trials(study), strict=False):
        assert point.items() <= trial.params.items()
