"""The sweep's searcher: which configuration each new trial runs.

- `DefineByRun`: Optuna's define-by-run function over the search space; it tags each Optuna trial
  with its config hash, which Ray's trial config then carries to the trainable.
- `SweepSearch`: Ray's OptunaSearch plus every earlier round of a trial told as a trial of its
  own (`rounds.py`), the record attributes (MLflow run id, round, Ray trial) on each, the
  objective's constraints (its bound and chance floor, set on the Optuna trial before it is
  told, so the sampler sees feasibility), the time and epoch budgets (no new trial once a
  budget is spent: `stopping.EpochBudget`), and the reconciliation of the study with Ray's
  saved state on resume.

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
from sparsetune.results import ROUND_METRICS
from sparsetune.search import private_api
from sparsetune.search.objectives import Objective
from sparsetune.search.rounds import RECORD_ATTRS, SOURCE_ATTR, method_of, round_trial
from sparsetune.search.space import SearchSpace
from sparsetune.search.stopping import EpochBudget
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
    def __init__(
        self,
        *args,
        objective: Objective | None = None,
        deadline: float | None = None,
        epochs: EpochBudget | None = None,
        **kw,
    ):
        super().__init__(*args, **kw)
        self._objective = objective
        # Ray trial id -> round -> what that round reported (`_remember`), until the trial ends;
        # pickled with the searcher in Ray's experiment state, so a resumed sweep keeps them.
        self._rounds: dict[str, dict[int, dict[str, Any]]] = {}
        self._configs: dict[str, dict[str, Any]] = {}
        study = private_api.searcher_study(self)
        if study is not None and objective is not None:
            study.set_metric_names(list(objective.metrics))
        self._deadline = deadline
        self._epochs = epochs  # --budget-epochs

    def suggest(self, trial_id: str) -> dict | str | None:
        if self._deadline is not None and time.time() >= self._deadline:
            return Searcher.FINISHED
        if self._epochs is not None and self._epochs.exhausted():
            # A running trial that ends below its plan (stopped early) gives epochs back: ask
            # again once it has ended; with none running, the sweep starts nothing more.
            running = self._epochs.running()
            waiting = [t for t in running if not private_api.searcher_told(self, t)]
            return None if waiting else Searcher.FINISHED
        config = super().suggest(trial_id)
        if self._epochs is not None and isinstance(config, dict):
            self._epochs.start(trial_id, config)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._remember(trial_id, result)
        super().on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        trial = private_api.searcher_trials(self).get(trial_id)
        if result:
            self._remember(trial_id, result)
        last = None if error or not result else result.get("round")
        if private_api.searcher_told(self, trial_id):
            # Told before the driver was killed (see `restore`): a study trial ends once. A kill
            # between that tell and its earlier rounds' left those out; add what the study lacks.
            if trial is not None:
                self._tell_earlier_rounds(trial_id, trial, last, told_before=True)
            return
        if self._objective is not None and trial is not None and result:
            private_api.set_trial_attrs(
                trial, self._record_attrs(trial_id, result), self._objective.constraints(result)
            )
        super().on_trial_complete(trial_id, result, error)
        if trial is not None:
            self._tell_earlier_rounds(trial_id, trial, last, told_before=False)

    def _remember(self, trial_id: str, result: dict) -> None:
        if result.get("round") is None:
            return
        kept = {k: result.get(k) for k in (*ROUND_METRICS, *RECORD_ATTRS) if k in result}
        self._rounds.setdefault(trial_id, {})[int(result["round"])] = kept
        if trial_id not in self._configs:
            # Ray hands searchers the result flattened: the trial's config as `config/<key>`.
            config = {
                key.removeprefix("config/"): value
                for key, value in result.items()
                if key.startswith("config/") and key != "config/config_hash"
            }
            if config:
                self._configs[trial_id] = config

    def _record_attrs(self, trial_id: str, result: dict) -> dict[str, Any]:
        """What joins an Optuna trial to its records: the MLflow run, the round, the Ray trial."""
        attrs = {key: result[key] for key in RECORD_ATTRS if result.get(key) not in (None, "")}
        if result.get("round") is not None:
            attrs["round"] = int(result["round"])
        if self._objective is not None:  # shown in optuna-dashboard's trial list
            attrs["feasible"] = self._objective.feasible(result)
        return attrs | {"ray_trial_id": trial_id}

    def _tell_earlier_rounds(
        self, trial_id: str, trial: optuna.Trial, last: Any, *, told_before: bool
    ) -> None:
        """Each round of the trial but the one its own Optuna trial holds (`last`; None when
        the trial failed: then every round it reported) as a COMPLETE trial (`rounds.py`).
        They are added only after the trial's own tell, so the study holds some already only
        for a trial `told_before` (a kill came between the two): only then is it searched for
        them, a search through every trial of the study."""
        rounds = self._rounds.pop(trial_id, {})
        flat = self._configs.pop(trial_id, None)
        earlier = {index: result for index, result in rounds.items() if index != last}
        if self._objective is None or not earlier:
            return
        study = private_api.searcher_study(self)
        told: set[Any] = set()
        if told_before:
            told = {
                t.user_attrs.get("round")
                for t in study.get_trials(deepcopy=False)
                if t.user_attrs.get("ray_trial_id") == trial_id
            }
        method_name, method = method_of(flat) if flat else (None, None)
        for round_index, result in sorted(earlier.items()):
            if round_index in told:
                continue
            added = round_trial(
                trial.params,
                trial.distributions,
                {**result, "round": round_index},
                self._objective,
                method_name=method_name or str(result.get("method")),
                method=method,
                user_attrs={"ray_trial_id": trial_id, SOURCE_ATTR: trial.number},
            )
            if added is not None:
                study.add_trial(added)

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
        deadline, epochs = self._deadline, self._epochs  # this run's budgets, not the first's
        super().restore(checkpoint_path)
        restored = getattr(self, "_epochs", None)
        if epochs is not None and restored is not None:  # the trials it planned before
            epochs.planned = {**restored.planned, **epochs.planned}
        self._deadline, self._epochs = deadline, epochs
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
