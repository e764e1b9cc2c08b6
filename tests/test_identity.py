"""Experiment identity: the hash scheme is pinned, and covers exactly what changes a result."""

from __future__ import annotations

from pathlib import Path

from sparsetune.config import DataConfig, TrainConfig, TrialConfig
from sparsetune.identity import canonical_json, dense_key, trial_hash


def config(**changes) -> TrialConfig:
    values = dict(
        model="lenet5",
        data=DataConfig(name="fashion-mnist", subset=10000),
        train=TrainConfig(epochs=4),
        method="magnitude",
        params={"c_fc": 1.5, "rounds": 2},
        seed=0,
    )
    return TrialConfig(**(values | changes))


def test_golden_hashes():
    # Changing these orphans every dense-cache entry and MLflow tag that users already have:
    # change the scheme only on purpose, and say so in the release notes.
    assert dense_key(config()) == "8ed9e5a317f092e3"
    assert trial_hash(config()) == "b7f24345021f2e6c"


def test_where_and_how_a_trial_runs_is_not_part_of_its_hash():
    base = trial_hash(config())
    assert trial_hash(config(seed=7)) == base
    assert trial_hash(config(device="cpu")) == base
    moved = DataConfig(name="fashion-mnist", subset=10000, data_dir=Path("/elsewhere"))
    assert trial_hash(config(data=moved)) == base
    assert dense_key(config(data=moved)) == dense_key(config())


def test_the_seed_keys_the_dense_stage():
    assert dense_key(config(seed=1)) != dense_key(config())


def test_the_dense_stage_is_shared_by_every_method_and_parameter():
    assert dense_key(config(method="dense", params={})) == dense_key(config())
    assert dense_key(config(params={"c_fc": 0.5})) == dense_key(config())
    assert dense_key(config(train=TrainConfig(epochs=5))) != dense_key(config())


def test_defaults_do_not_change_the_hash_but_other_values_do():
    assert trial_hash(config(params={"c_fc": 1.5, "rounds": 2, "c_conv": 1.0})) == trial_hash(
        config()
    )
    assert trial_hash(config(params={"c_fc": 1.6, "rounds": 2})) != trial_hash(config())
    assert trial_hash(config(method="dense", params={})) != trial_hash(config())


def test_canonical_json_ignores_key_order():
    assert canonical_json({"b": 1, "a": [1, 2]}) == canonical_json({"a": [1, 2], "b": 1})
