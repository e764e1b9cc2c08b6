"""A default sweep with a short dense stage has no failure known before it starts (issue 25):
LeNet-300-100's built-in space, one dense epoch on a few hundred examples (fewer optimiser
steps than any rewind point but theta_0), and every method's corner configuration enqueued so
that it certainly runs (the largest rewind this run has, the largest scoring batch, the most
rounds and the longest, the strongest regularisation). Real Ray Tune, Optuna and MLflow."""

from __future__ import annotations

import pytest
from cli_helpers import SWEEP_COMMON, run_cli, sweep_rows

# Each method at the edges of its built-in fragment (search_spaces/methods/*.yaml). lottery's
# largest rewind_iteration that a 3-step dense stage has is 0: 100 and 500 are left out.
CORNERS = """
- {method: dense}
- method: magnitude
  params: {criterion: std, c_fc: 2.5, c_conv: 2.0, rounds: 4, retrain_lr_factor: 1.0,
           retrain_schedule: cosine, weight_decay: 1.0e-3, retrain_epochs: 8}
- method: magnitude
  params: {criterion: global, sparsity: 0.98, rounds: 4, retrain_lr_factor: 0.03}
- method: lottery
  params: {prune_fraction: 0.6, rounds: 4, rewind_iteration: 0, criterion: global,
           train_epochs: 8}
- method: l0
  params: {l0_lambda: 10.0, fc_lambda_scale: 10.0, conv_lambda_scale: 10.0,
           granularity: neuron, droprate_init: 0.7, start: init, gate_lr_factor: 30.0}
- method: l0
  params: {l0_lambda: 10.0, fc_lambda_scale: 10.0, granularity: weight, droprate_init: 0.2,
           start: dense, gate_lr_factor: 3.0}
- method: sensitivity
  params: {variant: specific, lmbda: 1.0e-2, threshold: 1.0e-2, lr: 0.1}
- method: snip
  params: {sparsity: 0.98, scoring_batch: 500}
- method: grasp
  params: {sparsity: 0.98, samples_per_class: 25, temperature: 400.0, xavier_fc_scoring: true}
- method: random
  params: {sparsity: 0.98, distribution: global}
"""
CORNER_COUNT = 10
# 300 training examples in batches of 128 (the built-in space's): 3 steps in one dense epoch.
SHORT_DENSE = ["--subset", "300", "--epochs", "1"]


@pytest.mark.slow
def test_a_default_sweep_with_a_short_dense_stage_has_no_predictable_failure(tmp_path):
    (tmp_path / "corners.yaml").write_text(CORNERS)
    out = tmp_path / "sweep"
    result = run_cli(
        "search",
        *SWEEP_COMMON,
        *SHORT_DENSE,
        *("--trials", str(CORNER_COUNT), "--enqueue", str(tmp_path / "corners.yaml")),
        *("--out", str(out), "--cache-dir", str(tmp_path / "cache")),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "space: lottery.rewind_iteration 100, 500 left out: the dense stage trains 1 epoch x 3 "
        "batches of 128 (300 training examples): 3 steps" in result.stderr
    )
    rows = sweep_rows(out)
    failed = [row for row in rows if row.get("status") not in (None, "", "ok")]
    assert not failed, failed
    assert {row["method"] for row in rows} >= {
        "dense",
        "magnitude",
        "lottery",
        "l0",
        "sensitivity",
        "snip",
        "grasp",
        "random",
    }
