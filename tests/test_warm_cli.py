"""The CLI tests' commands run forked from a warm interpreter (tests/warm_cli.py): a command that
trains gives the numbers it gives in a new interpreter, and the runner reports what
subprocess.run would (exit codes, output, a timeout). The refusals are compared case by case in
tests/test_bad_input_table.py."""

from __future__ import annotations

import json
import subprocess

import pytest
from cli_helpers import SYNTHETIC_RUN, run_cli

pytestmark = pytest.mark.slow  # trains twice

PRUNE = [
    "prune",
    *SYNTHETIC_RUN,
    *("--method", "magnitude", "--epochs", "1", "--subset", "600", "--set", "rounds=2"),
    *("--seed", "3", "--json", "--out", "run", "--cache-dir", "cache"),
]


def _numbers(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    for row in report["rounds"]:
        del row["seconds"]
    return {key: report[key] for key in ("val_acc", "test_acc", "compression", "rounds")}


def test_a_forked_prune_trains_to_the_numbers_of_a_new_interpreter(tmp_path):
    (tmp_path / "warm").mkdir()
    (tmp_path / "fresh").mkdir()
    warm = run_cli(*PRUNE, cwd=tmp_path / "warm")
    fresh = run_cli(*PRUNE, cwd=tmp_path / "fresh", fresh=True)
    assert _numbers(warm) == _numbers(fresh)
    assert [row["val_loss"] for row in _numbers(warm)["rounds"]][-1] > 0


def test_the_runner_reports_exit_codes_output_and_timeouts_as_subprocess_does(tmp_path):
    help_text = run_cli("--help", cwd=tmp_path)
    assert help_text.returncode == 0 and "search" in help_text.stdout
    assert help_text.stdout == run_cli("--help", cwd=tmp_path, fresh=True).stdout
    refused = run_cli("prune", "--epochs", "-1", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.startswith("sparsetune: error:")
    with pytest.raises(subprocess.TimeoutExpired):
        run_cli(*PRUNE, "--epochs", "50", cwd=tmp_path, timeout=1)
    assert run_cli("--help", cwd=tmp_path).returncode == 0  # the runner carries on
