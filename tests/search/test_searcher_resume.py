"""The sweep's searcher continued after its driver was killed (`SweepSearch.restore`): every
round a trial reported reaches the study once, wherever the kill fell. A real Optuna study on
SQLite, the searcher saved and restored as Ray saves and restores it; no Ray trials."""

from __future__ import annotations

import optuna
import pytest

from sparsetune.search.objectives import resolve_objective
from sparsetune.search.private_api import searcher_study, searcher_trials
from sparsetune.search.samplers import make_sampler
from sparsetune.search.searcher import SweepSearch


def space(trial) -> dict:
    trial.suggest_float("magnitude.c_fc", 0.5, 2.0)
    return {"method": "magnitude", "magnitude.rounds": 3}


def sweep_searcher(storage: str) -> SweepSearch:
    objective = resolve_objective("pareto", min_compression=None, max_drop=None, dense_val_acc=0.9)
    return SweepSearch(
        space=space,
        metric=list(objective.metrics),
        mode=list(objective.modes),
        sampler=make_sampler("tpe", trials=8, seed=0),
        storage=optuna.storages.RDBStorage(storage),
        study_name="sweep",
        objective=objective,
    )


def round_result(search: SweepSearch, trial_id: str, round_index: int) -> dict:
    """What a Ray trial reports for a round: its metrics, its record, its config flattened."""
    config = {f"config/{k}": v for k, v in searcher_trials(search)[trial_id].params.items()}
    return {
        "val_acc": 0.9 - 0.05 * round_index,
        "compression": 2.0**round_index,
        "round": round_index,
        "run_id": f"run-{trial_id}",
        "config_hash": f"hash-{trial_id}",
        "method": "magnitude",
        "config/method": "magnitude",
        "config/magnitude.rounds": 3,
        **config,
    }


def rounds_in_study(search: SweepSearch, trial_id: str) -> list[int]:
    complete = optuna.trial.TrialState.COMPLETE
    return sorted(
        t.user_attrs["round"]
        for t in searcher_study(search).get_trials(states=(complete,))
        if t.user_attrs.get("ray_trial_id") == trial_id
    )


class Killed(Exception):
    """The driver's SIGKILL, at one chosen point."""


@pytest.mark.parametrize("kill_after", ["the trial's tell", "its first earlier round", "nothing"])
def test_each_round_reaches_the_study_once_when_the_driver_is_killed_at_the_end(
    tmp_path, kill_after
):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    first = sweep_searcher(storage)
    assert first.suggest("t1") is not None
    rounds = [round_result(first, "t1", r) for r in (1, 2, 3)]
    first.on_trial_result("t1", rounds[0])
    first.on_trial_result("t1", rounds[1])
    saved = tmp_path / "searcher-state.pkl"
    first.save(str(saved))  # Ray's last save: the trial at its round 2
    if kill_after == "the trial's tell":

        def killed(*args, **kwargs):
            raise Killed

        first._tell_earlier_rounds = killed  # the kill: after the tell, before rounds 1 and 2
        with pytest.raises(Killed):
            first.on_trial_complete("t1", rounds[2])
        assert rounds_in_study(first, "t1") == [3]
    elif kill_after == "its first earlier round":
        study, added = searcher_study(first), []

        def add_trial(trial):
            if added:
                raise Killed  # the kill: rounds 3 and 1 told, round 2 not
            added.append(trial)
            optuna.Study.add_trial(study, trial)

        study.add_trial = add_trial
        with pytest.raises(Killed):
            first.on_trial_complete("t1", rounds[2])
        assert rounds_in_study(first, "t1") == [1, 3]

    # The resumed driver: Ray's saved searcher, then the trial's end (Ray runs it again from its
    # checkpoint, or on to its end), told twice as a trial Ray restarts twice would be.
    resumed = sweep_searcher(storage)
    resumed.restore(str(saved))
    resumed.on_trial_complete("t1", rounds[2])
    resumed.on_trial_complete("t1", rounds[2])
    assert rounds_in_study(resumed, "t1") == [1, 2, 3]
    study = searcher_study(resumed)
    assert len([t for t in study.trials if t.user_attrs.get("ray_trial_id") == "t1"]) == 3
