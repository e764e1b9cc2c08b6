"""`sparsetune prune`: one configuration in this process, no Ray, MLflow only when asked.

The same `run_trial` as a sweep's trials, the same dense cache (a dense stage trained here is
reused by later sweeps and runs), and the same ticket files in the output folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsetune.config import TrialConfig
from sparsetune.identity import trial_hash
from sparsetune.trial import RoundResult, run_trial


@dataclass(frozen=True)
class SingleRun:
    config: TrialConfig
    rounds: list[RoundResult]
    out: Path
    run_id: str | None

    @property
    def final(self) -> RoundResult:
        return self.rounds[-1]

    def summary(self) -> dict[str, Any]:
        """What `--json` prints and `result.json` holds: the final round, and every round."""
        final = self.final
        return {
            "method": self.config.method,
            "params": self.config.method_config().model_dump(),
            "model": self.config.model,
            "dataset": self.config.data.name,
            "val_acc": final.val_acc,
            "test_acc": final.test_acc,
            "test_error": round(100 * (1 - final.test_acc), 4),
            "compression": final.compression,
            "flops_ratio": final.flops_ratio,
            "remaining_weights": final.remaining_weights,
            "total_weights": final.total_weights,
            "architecture": final.architecture,
            "round": final.round,
            "run_id": self.run_id,
            "config_hash": trial_hash(self.config),
            "out": str(self.out),
            "rounds": [result.metrics() for result in self.rounds],
            "layers": [layer.as_row() for layer in final.report.layers],
        }


def run_single(
    config: TrialConfig,
    *,
    out: Path,
    cache_dir: Path,
    tracking_uri: str | None = None,
    experiment: str = "sparsetune-prune",
    on_round=lambda result: None,
) -> SingleRun:
    """Train and prune `config`; tickets and `result.json` go to `out`, an MLflow run to
    `tracking_uri` when given (marked FAILED with the reason if the trial raises)."""
    recorder = None
    if tracking_uri is not None:
        from sparsetune.tracking.mlflow_store import MlflowStore
        from sparsetune.tracking.trial_run import TrialRun

        store = MlflowStore.open(tracking_uri, experiment, out / "mlartifacts")
        name = f"{config.method}-{config.model}-{trial_hash(config)[:8]}"
        recorder = TrialRun.start(store, name, config, trial_hash(config), out)

    def record(result: RoundResult) -> None:
        if recorder is not None:
            recorder.record_round(result)
        on_round(result)

    try:
        rounds = run_trial(config, cache_dir=cache_dir, workdir=out, on_round=record)
    except BaseException as error:
        if recorder is not None:
            recorder.fail(error)
        raise
    if recorder is not None:
        recorder.finish()
    single = SingleRun(config, rounds, out, recorder.run_id if recorder else None)
    (out / "result.json").write_text(json.dumps(single.summary(), indent=2, default=str) + "\n")
    return single
