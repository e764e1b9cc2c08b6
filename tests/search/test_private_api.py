"""Every accessor of Ray's and Optuna's private attributes, on the installed versions: an upgrade
that drops or renames one fails here, by name, before a sweep or a resume meets it."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
from ray import tune
from ray.tune.search.optuna import OptunaSearch

import sparsetune
from sparsetune.search import private_api
from sparsetune.search.private_api import PrivateApiChanged


def space(trial: optuna.Trial) -> dict:
    trial.suggest_float("magnitude.c_fc", 0.5, 2.0)
    return {"method": "magnitude"}


@pytest.fixture
def searcher() -> OptunaSearch:
    return OptunaSearch(
        space=space,
        metric="val_acc",
        mode="max",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )


@pytest.mark.parametrize("library", ["ray", "optuna"])
def test_the_installed_versions_are_ones_the_accessors_were_written_for(library):
    installed = private_api.check_version(library)
    major, _ = private_api.WRITTEN_FOR[library]
    assert int(installed.split(".")[0]) <= major


def test_the_searchers_study_trials_and_told_set(searcher):
    assert searcher.suggest("a") is not None
    study = private_api.searcher_study(searcher)
    assert isinstance(study, optuna.Study)
    trials = private_api.searcher_trials(searcher)
    assert set(trials) == {"a"} and isinstance(trials["a"], optuna.Trial)
    assert not private_api.searcher_told(searcher, "a")
    searcher.on_trial_complete("a", {"val_acc": 0.9})
    assert private_api.searcher_told(searcher, "a")
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE

    private_api.mark_searcher_told(searcher, "b")
    assert private_api.searcher_told(searcher, "b")


def test_a_running_trial_gets_a_user_attribute_from_outside(searcher):
    searcher.suggest("a")
    study = private_api.searcher_study(searcher)
    (running,) = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    private_api.set_trial_user_attr(study, running, "sparsetune_lost", "a reason")
    assert study.trials[0].user_attrs["sparsetune_lost"] == "a reason"


@pytest.mark.parametrize("storage", ["sqlite", "memory"])
def test_attributes_set_at_once_are_those_set_one_by_one(tmp_path, storage):
    """The same user attributes and constraints (which Optuna's samplers read) as the trial's
    own `set_user_attr` and `set_constraint` give: on SQLite in one transaction, in memory one
    call each."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}" if storage == "sqlite" else None
    study = optuna.create_study(storage=url, directions=["maximize", "maximize"])
    attrs = {"run_id": "r1", "round": 3, "feasible": True, "ray_trial_id": "t1"}
    constraints = {"accuracy_floor": -0.25, "max_drop": 0.5}
    one_by_one, at_once = study.ask(), study.ask()
    for key, value in attrs.items():
        one_by_one.set_user_attr(key, value)
    for name, value in constraints.items():
        one_by_one.set_constraint(name, value)
    private_api.set_trial_attrs(at_once, attrs, constraints)
    assert at_once.user_attrs == one_by_one.user_attrs == attrs
    for trial in (one_by_one, at_once):
        study.tell(trial, [0.9, 10.0])
    first, second = study.get_trials()
    assert (second.user_attrs, second.system_attrs) == (first.user_attrs, first.system_attrs)
    assert second.constraints == constraints
    with pytest.raises(ValueError, match="NaN"):
        private_api.set_trial_attrs(study.ask(), {}, {"accuracy_floor": float("nan")})


def test_a_tuners_configs_are_read_and_replaced(tmp_path):
    tuner = tune.Tuner(
        lambda config: None,
        tune_config=tune.TuneConfig(num_samples=1),
        run_config=tune.RunConfig(name="first", storage_path=str(tmp_path)),
    )
    assert private_api.tuner_run_config(tuner).name == "first"
    tune_config = tune.TuneConfig(num_samples=3)
    run_config = tune.RunConfig(name="second", storage_path=str(tmp_path))
    private_api.replace_tuner_configs(tuner, tune_config, run_config)
    assert private_api.tuner_run_config(tuner) is run_config
    assert tuner._local_tuner._tune_config is tune_config  # what the restored Tuner will run


def test_the_ray_address_comes_from_the_environment_or_is_kept(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.1.2.3:6379")
    assert private_api.ray_address_from_environment("auto") == "10.1.2.3:6379"
    monkeypatch.delenv("RAY_ADDRESS")
    assert private_api.ray_address_from_environment("10.4.5.6:6379") == "10.4.5.6:6379"


def test_a_missing_attribute_is_named_with_the_installed_version(searcher):
    class Changed:  # an OptunaSearch of a future Ray, without the attribute
        pass

    with pytest.raises(PrivateApiChanged, match=r"ray \S+ has no Changed\._ot_study") as caught:
        private_api.searcher_study(Changed())
    assert "written against ray 2.60.x" in str(caught.value)
    assert "private_api.py" in str(caught.value)


def test_a_newer_major_version_is_refused_attributes_or_not(monkeypatch, searcher):
    monkeypatch.setattr(private_api, "version", lambda library: "9.0.0")
    private_api.check_version.cache_clear()
    try:
        with pytest.raises(PrivateApiChanged, match=r"ray 9\.0\.0 is installed.*ray 2\.60\.x"):
            private_api.searcher_study(searcher)
        with pytest.raises(PrivateApiChanged, match=r"optuna 9\.0\.0 is installed"):
            private_api.set_trial_user_attr(object(), object(), "key", "value")
    finally:
        monkeypatch.undo()
        private_api.check_version.cache_clear()


# The private names the accessors wrap; none may be reached anywhere else in the package.
PRIVATE = re.compile(
    r"_ot_trials|_ot_study|_completed_trials|\._storage\b|\._trial_id\b|_local_tuner"
    r"|\._run_config\b|\._tune_config\b|ray\._private|from ray import _private"
    r"|_system_config|preload_python_modules|PrestartWorkers"
)


def test_no_other_module_reaches_into_ray_or_optuna():
    package = Path(sparsetune.__file__).parent
    offenders = [
        f"{path.relative_to(package.parent)}:{number}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        if path.name != "private_api.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE.search(line)
    ]
    assert offenders == [], "use sparsetune.search.private_api instead"


def test_the_ids_of_classes_pickled_by_value_are_read():
    from ray import cloudpickle

    namespace: dict = {}
    exec("class Local:\n    pass\n", namespace)  # a class no module holds: pickled by value
    Local = namespace["Local"]
    Local.__module__ = "__main__"
    pickled = cloudpickle.dumps(Local)
    drawn = private_api.pickled_class_ids()
    assert drawn and any(class_id.encode() in pickled for class_id in drawn)
