"""Ray reuses a sweep's worker processes across trials (reuse_actors, with the data, the imports
and the MLflow client kept warm): a trial in a reused worker must give exactly the numbers it
would give in a fresh one. A real sweep, one trial at a time, runs the same L0 configuration
first (in a fresh worker) and third (in the worker that ran a magnitude trial in between); the
two agree to the last bit, and the child runs show one worker ran all three."""

from __future__ import annotations

import pytest
from cli_helpers import run_enqueued_sweep, sweep_runs

pytestmark = pytest.mark.slow

SPACE = """
train: {optimizer: sgd, lr: 0.05, epochs: 1, batch_size: 128}
methods:
  l0:
    l0_lambda: {low: 0.01, high: 1.0, log: true}
    granularity: neuron
    epochs: 2
  magnitude:
    criterion: global
    sparsity: {low: 0.5, high: 0.95}
    rounds: 2
    retrain_epochs: 1
"""
POINTS = """
- method: l0
  params: {l0_lambda: 0.3}
- method: magnitude
  params: {sparsity: 0.9}
- method: l0
  params: {l0_lambda: 0.3}
"""
NUMBERS = ("val_acc", "val_loss", "test_acc", "compression", "remaining_weights")


def test_a_reused_worker_gives_the_numbers_of_a_fresh_one(tmp_path):
    _, out = run_enqueued_sweep(tmp_path, SPACE, POINTS, 3, "reuse")
    client, _, children = sweep_runs(out, "reuse")
    assert len(children) == 3
    assert len({child.data.tags["worker"] for child in children}) == 1  # one process ran all
    first, second, third = sorted(children, key=lambda child: child.info.start_time)
    assert [c.data.tags["method"] for c in (first, second, third)] == ["l0", "magnitude", "l0"]

    def numbers(child) -> dict[str, list[tuple[int, float]]]:
        """Every round's numbers, as MLflow holds them (full precision)."""
        return {
            key: [(m.step, m.value) for m in client.get_metric_history(child.info.run_id, key)]
            for key in NUMBERS
        }

    assert numbers(first)["val_acc"] and numbers(second)["val_acc"]
    # Same seed, same gates drawn, same batches and optimizer steps, to the last bit.
    assert numbers(third) == numbers(first)
    assert numbers(second) != numbers(first)
