"""The sweep's searcher: which configuration each new trial runs.

- `DefineByRun`: Optuna's define-by-run function over the search space; it tags each Optuna trial
  with its config hash, which Ray's trial config then carries to the trainable.
- `SweepSearch`: Ray's OptunaSearch plus the objective's constraint (set on the Optuna trial
  before it is told, so the sampler sees feasibility), the time budget (no new trial once the
  budget is spent), and the reconciliation of the study with Ray's saved state on resume.

The Ray and Optuna internals it needs are reached through `private_api`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from sparsetune.identity import trial_hash
from sparsetune.search import private_api
from sparsetune.search.objectives import Bound
from sparsetune.search.space import SearchSpace
from sparsetune.search.trainable import TrialTemplate


@dataclass(frozen=True)
class DefineByRun:
    """Optuna's define-by-run function: samples the space and tags the trial with its config
    hash, which thereby joins Optuna's user attributes, Ray's trial config and MLflow's tags.
    A picklable object, not a closure: Ray saves the searcher with the experiment state."""

    space: SearchSpace
    template: TrialTemplate

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        flat = self.space.sample(trial)
        config_hash = trial_hash(self.template.trial_config(flat))
        trial.set_user_attr("config_hash", config_hash)
        # Ray's trial config holds what Optuna sampled plus what this returns: return the
        # whole flat config, so fixed values and a lone method reach the trainable too.
        return {**flat, "config_hash": config_hash}


class SweepSearch(OptunaSearch):
    def __init__(self, *args, bound: Bound | None = None, deadline: float | None = None, **kw):
        super().__init__(*args, **kw)
        self._bound = bound
        self._deadline = deadline

    def suggest(self, trial_id: str) -> dict | str | None:
        if self._deadline is not None and time.time() >= self._deadline:
            return Searcher.FINISHED
        return super().suggest(trial_id)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        if private_api.searcher_told(self, trial_id):
            return  # told before the driver was killed (see `restore`); a study trial ends once
        trial = private_api.searcher_trials(self).get(trial_id)
        if self._bound and trial is not None and result and self._bound.metric in result:
            trial.set_constraint(self._bound.metric, self._bound.violation(result))
        super().on_trial_complete(trial_id, result, error)

    def restore(self, checkpoint_path: str) -> None:
        """Ray's restore (the pickled searcher: study, sampler and its RNG, the Ray trial to
        Optuna trial map), then reconcile the study with it. The study in `optuna.db` is written
        at once; Ray's saved state lags behind it. So, after the driver was killed:
        - an Optuna trial left RUNNING that the restored map does not hold belongs to a Ray
          trial that Ray never saved: nothing will ever finish it, so it is marked FAIL
          (user attribute `sparsetune_lost`) rather than left RUNNING forever;
        - a mapped trial that the study already holds as finished belongs to a Ray trial that
          ended after Ray's last save: Ray runs it again (from its last checkpoint, at once done)
          and its second completion must not be told twice.
        A trial Ray restores as unfinished keeps its Optuna trial, which is told when it ends:
        the study counts each configuration once."""
        deadline = self._deadline  # this run's budget, not the first run's
        super().restore(checkpoint_path)
        self._deadline = deadline
        mapped = private_api.searcher_trials(self)
        live = {
            ot_trial.number
            for ray_id, ot_trial in mapped.items()
            if not private_api.searcher_told(self, ray_id)
        }
        self.fail_running_trials("its Ray trial was not saved", keep=live)
        study = private_api.searcher_study(self)
        finished = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
        for ray_id, ot_trial in mapped.items():
            if ot_trial.number in finished:
                private_api.mark_searcher_told(self, ray_id)

    def fail_running_trials(self, reason: str, keep: frozenset[int] | set[int] = frozenset()):
        """Mark the study's RUNNING trials (but those numbered in `keep`) FAIL, with `reason` as
        the user attribute `sparsetune_lost`: trials that no Ray trial will ever finish."""
        study = private_api.searcher_study(self)
        for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if frozen.number not in keep:
                private_api.set_trial_user_attr(study, frozen, "sparsetune_lost", reason)
                study.tell(frozen.number, state=optuna.trial.TrialState.FAIL)
