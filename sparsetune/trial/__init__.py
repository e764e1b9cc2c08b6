"""One trial, start to finish, with no Ray or MLflow: the core that every front end calls.

`run_trial(config, ...)` loads the data, gets the dense stage from the cache (training it only if
no trial has), builds the method, attaches masks, and runs the method's plan through the one
driver (`driver.run_plan`). Each round's point goes to `on_round`; the search layer turns those
into Ray reports and MLflow metrics, a single-run command prints them.

Modules: `start` (everything before the plan runs), `context` (the running trial and its
verbs), `driver` (a runner per plan kind), `dense` (the dense stage), `tickets` (round files).
"""

from __future__ import annotations

from sparsetune.trial.context import EpochCallback, RoundResult, TrialContext
from sparsetune.trial.dense import train_dense
from sparsetune.trial.start import check_method, resolve_device, run_trial, start_trial

__all__ = [
    "EpochCallback",
    "RoundResult",
    "TrialContext",
    "check_method",
    "resolve_device",
    "run_trial",
    "start_trial",
    "train_dense",
]
