"""Ray Tune's own per-trial logs (JSON, CSV and TensorBoard files of every result) are off while a
sweep's Tuner runs, and the environment is as before afterwards; a value the user set wins. A
real Ray and real Tuners (`run_tuner`, as a sweep runs it)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from ray import tune
from ray.tune.search import BasicVariantGenerator

from sparsetune.search.local_ray import stop_ray
from sparsetune.search.options import SweepConfig
from sparsetune.search.tuner import (
    TUNE_LOGGERS_OFF,
    TunerPlan,
    run_tuner,
    start_ray,
    without_tune_loggers,
)

TUNE_LOG_FILES = ("result.json", "progress.csv", "params.json", "events.out.tfevents")


def tune_logs(experiment: Path) -> list[str]:
    """The names of Tune's log files in the experiment's trial folders."""
    return sorted(
        path.name
        for path in experiment.glob("*/*")
        if path.is_file() and path.name.startswith(TUNE_LOG_FILES)
    )


def plan(storage: Path, name: str) -> TunerPlan:
    """Two trials, each leaving a file in `storage / name-ran` as it reports."""
    ran = storage / f"{name}-ran"
    ran.mkdir()

    def probe(config: dict) -> None:  # pickled by value: the workers cannot import this module
        (ran / tune.get_context().get_trial_id()).touch()
        tune.report({"x": 1})

    return TunerPlan(
        trainable=probe,
        searcher=BasicVariantGenerator(),
        scheduler=None,
        callbacks=[],
        stoppers=[],
        trials=2,
        max_concurrent=1,
        name=name,
        storage=str(storage),
    )


@pytest.mark.slow
def test_a_sweeps_tuner_writes_none_of_tunes_own_logs_unless_the_user_asks(tmp_path, monkeypatch):
    monkeypatch.delenv(TUNE_LOGGERS_OFF, raising=False)
    assert start_ray(SweepConfig(model="lenet300", device="cpu"))
    try:
        assert run_tuner(plan(tmp_path, "sweep"), resume=False, own_ray=True) == "finished"
        assert TUNE_LOGGERS_OFF not in os.environ
        monkeypatch.setenv(TUNE_LOGGERS_OFF, "0")  # the user wants Tune's logs
        assert run_tuner(plan(tmp_path, "asked"), resume=False, own_ray=True) == "finished"
        assert os.environ[TUNE_LOGGERS_OFF] == "0"
    finally:
        stop_ray()
    for name in ("sweep", "asked"):  # the trials ran, in folders of their own
        assert len(list((tmp_path / f"{name}-ran").iterdir())) == 2
        assert len(list((tmp_path / name).glob("probe_*"))) == 2
    assert tune_logs(tmp_path / "sweep") == []
    asked = tune_logs(tmp_path / "asked")
    for name in TUNE_LOG_FILES:  # what Tune writes when it is asked to: two trials' worth
        assert sum(found.startswith(name) for found in asked) == 2, (name, asked)


def test_the_switch_is_on_while_any_sweep_runs_and_off_after_the_last(monkeypatch):
    monkeypatch.delenv(TUNE_LOGGERS_OFF, raising=False)
    first_in, second_out, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first_sweep() -> None:
        with without_tune_loggers():
            first_in.set()
            second_out.wait(10)
            seen["first, after the second ended"] = os.environ.get(TUNE_LOGGERS_OFF)
        first_out.set()

    worker = threading.Thread(target=first_sweep)
    worker.start()
    assert first_in.wait(10)
    with without_tune_loggers():  # a second sweep of the process, overlapping the first
        seen["second"] = os.environ.get(TUNE_LOGGERS_OFF)
    second_out.set()
    worker.join(10)
    assert first_out.is_set()
    assert seen == {"second": "1", "first, after the second ended": "1"}
    assert TUNE_LOGGERS_OFF not in os.environ


@pytest.mark.parametrize("value", ["0", "1"])
def test_a_value_the_user_set_is_left_as_it_is(monkeypatch, value):
    monkeypatch.setenv(TUNE_LOGGERS_OFF, value)
    with without_tune_loggers():
        assert os.environ[TUNE_LOGGERS_OFF] == value
    assert os.environ[TUNE_LOGGERS_OFF] == value
