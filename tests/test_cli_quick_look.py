"""A quick look looks like the real thing (issue 25): `sparsetune prune --epochs 2` of L0 and of
sensitivity on a small split either prunes or says, in one plain line before it trains, that
it will not at that length and what it would need."""

from __future__ import annotations

import json

import pytest
from cli_helpers import SYNTHETIC_RUN, run_cli_many

QUICK = [*SYNTHETIC_RUN, "--epochs", "2", "--json", "--cache-dir", "cache"]


@pytest.mark.slow
def test_a_quick_prune_of_l0_and_sensitivity_prunes_or_says_it_will_not(tmp_path):
    calls = {
        # 200 examples, batches of 100: 37 epochs x 2 steps cannot carry a gate shut.
        "l0": ["--method", "l0", "--subset", "200"],
        "sensitivity": ["--method", "sensitivity", "--subset", "200"],
        # What the line asks for, with room: the gates close.
        "l0-faster": ["--method", "l0", "--subset", "200", "--set", "gate_lr_factor=100"],
    }
    results = run_cli_many(
        {
            name: {"args": ["prune", *QUICK, *args, "--out", name], "cwd": tmp_path}
            for name, args in calls.items()
        }
    )
    for name, result in results.items():
        assert result.returncode == 0, (name, result.stderr[-3000:])
    summaries = {name: json.loads(result.stdout) for name, result in results.items()}
    said = [line for line in results["l0"].stderr.splitlines() if "will not prune" in line]
    assert said == [
        "l0 will not prune in this run: 37 epochs x 2 steps move a gate's log_alpha at most 0.4 "
        "(lr 0.001 x gate_lr_factor 5.41 a step) and closing one takes 2.4; gates can close "
        "only with --set gate_lr_factor=32 or more, or more training data than these 200 "
        "examples"
    ]
    assert summaries["sensitivity"]["compression"] > 1.5
    assert "will not prune" not in results["l0-faster"].stderr
    assert summaries["l0-faster"]["compression"] > 1.5
