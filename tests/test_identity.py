"""Experiment identity: the hash scheme is pinned, and covers exactly what changes a result."""

from __future__ import annotations

from pathlib import Path

from sparsetune.config import DataConfig, SyntheticOptions, TrainConfig, TrialConfig
from sparsetune.identity import (
    HASH_LENGTH,
    canonical_json,
    content_hash,
    dense_key,
    folder_listing_hash,
    trial_hash,
)
from sparsetune.pruning import METHOD_CONFIGS


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
    # These literal values are the scheme. Changing them orphans every dense-cache entry, run
    # folder and MLflow tag that users already have: change them only on purpose, and say so in
    # the release notes.
    assert dense_key(config()) == "8ed9e5a317f092e3"
    assert trial_hash(config()) == "b7f24345021f2e6c"


def test_the_defaults_left_out_of_the_hashes_are_pinned():
    # Hashes omit default values, so a changed default silently changes what every stored hash
    # means (a cached dense stage would be reused for a different recipe). Change a default only
    # together with the hash scheme.
    assert TrainConfig().model_dump(mode="json") == {
        "optimizer": "sgd",
        "lr": 0.05,
        "momentum": 0.9,
        "weight_decay": 0.0005,
        "schedule": "cosine",
        "step_epochs": 10,
        "step_gamma": 0.1,
        "epochs": 10,
        "batch_size": 128,
    }
    assert DataConfig(name="mnist").model_dump(mode="json", exclude={"data_dir"}) == {
        "name": "mnist",
        "subset": None,
        "val_size": 5000,
        "split_seed": 0,
        "synthetic": {
            "input_shape": [1, 28, 28],
            "num_classes": 10,
            "train_size": 8000,
            "test_size": 1000,
            "noise": 6.0,
        },
    }
    # a new method's defaults belong here too
    assert METHOD_CONFIGS["dense"]().model_dump(mode="json") == {}
    assert METHOD_CONFIGS["magnitude"]().model_dump(mode="json") == {
        "criterion": "std",
        "c_conv": 1.0,
        "c_fc": 1.0,
        "layer_c": {},
        "sparsity": 0.9,
        "layer_sparsity": {},
        "rounds": 3,
        "retrain_epochs": 2,
        "retrain_lr_factor": 0.1,
        "retrain_schedule": "constant",
        "weight_decay": 0.0005,
        "prune_output_layer": True,
    }


def test_golden_canonical_json():
    assert canonical_json({"b": 1.5, "a": [1, "é"], "c": {"y": None, "x": True}}) == (
        '{"a":[1,"\\u00e9"],"b":1.5,"c":{"x":true,"y":null}}'
    )
    assert content_hash({}) == "44136fa355b3678a"  # sha256 of "{}", first 16 hex digits
    assert len(trial_hash(config())) == len(dense_key(config())) == HASH_LENGTH == 16


def test_seed_device_and_data_dir_are_not_part_of_the_trial_hash():
    base = trial_hash(config())
    assert trial_hash(config(seed=7)) == base
    assert trial_hash(config(device="cpu")) == base
    assert trial_hash(config(device="cuda")) == base
    moved = DataConfig(name="fashion-mnist", subset=10000, data_dir=Path("/elsewhere"))
    assert trial_hash(config(data=moved)) == base
    # the dense stage does not depend on where the data live or what runs it either
    assert dense_key(config(data=moved)) == dense_key(config())
    assert dense_key(config(device="cpu")) == dense_key(config())


def test_the_seed_keys_the_dense_stage():
    assert dense_key(config(seed=1)) != dense_key(config())
    assert dense_key(config(seed=1)) == dense_key(config(seed=1, params={"c_fc": 0.7}))


def test_the_dense_stage_is_shared_by_every_method_and_parameter():
    assert dense_key(config(method="dense", params={})) == dense_key(config())
    assert dense_key(config(params={"c_fc": 0.5, "criterion": "global"})) == dense_key(config())


def test_what_changes_the_dense_result_changes_its_key():
    base = dense_key(config())
    assert dense_key(config(train=TrainConfig(epochs=5))) != base
    assert dense_key(config(train=TrainConfig(epochs=4, lr=0.1))) != base
    assert dense_key(config(model="lenet300")) != base
    assert dense_key(config(data=DataConfig(name="fashion-mnist", subset=5000))) != base
    assert dense_key(config(data=DataConfig(name="mnist", subset=10000))) != base
    assert (
        dense_key(config(data=DataConfig(name="fashion-mnist", subset=10000, split_seed=1))) != base
    )


def test_a_param_equal_to_its_default_does_not_change_the_hash():
    base = trial_hash(config())
    assert trial_hash(config(params={"c_fc": 1.5, "rounds": 2, "c_conv": 1.0})) == base
    assert trial_hash(config(params={"rounds": 2, "c_fc": 1.5, "criterion": "std"})) == base
    assert trial_hash(config(params={"c_fc": 1.5, "rounds": 2.0})) == base  # 2.0 is 2


def test_a_different_param_method_or_recipe_changes_the_hash():
    base = trial_hash(config())
    assert trial_hash(config(params={"c_fc": 1.6, "rounds": 2})) != base
    assert trial_hash(config(params={"c_fc": 1.5})) != base  # rounds back to its default, 3
    assert trial_hash(config(params={"c_fc": 1.5, "rounds": 2, "c_conv": 2.0})) != base
    assert trial_hash(config(method="dense", params={})) != base
    assert trial_hash(config(train=TrainConfig(epochs=5))) != base
    assert trial_hash(config(model="lenet300")) != base


def test_synthetic_options_are_part_of_the_data_identity():
    plain = DataConfig(name="synthetic")
    noisier = DataConfig(name="synthetic", synthetic=SyntheticOptions(noise=3.0))
    assert trial_hash(config(data=plain)) != trial_hash(config(data=noisier))
    assert dense_key(config(data=plain)) != dense_key(config(data=noisier))


def test_canonical_json_ignores_key_order():
    assert canonical_json({"b": 1, "a": [1, 2]}) == canonical_json({"a": [1, 2], "b": 1})
    assert canonical_json({"a": [1, 2]}) != canonical_json({"a": [2, 1]})  # lists keep order


def test_data_read_from_a_file_or_folder_is_known_by_its_content(tmp_path):
    """An overwritten .npz, or an image folder with a file added, is other data: its dense stage
    and trials must not share the keys of the old one."""
    data_file = tmp_path / "data.npz"
    data_file.write_bytes(b"first version")
    npz = config(data=DataConfig(name=f"npz:{data_file}"))
    before = (dense_key(npz), trial_hash(npz))
    data_file.write_bytes(b"second version, another size")
    assert dense_key(npz) != before[0] and trial_hash(npz) != before[1]

    folder = tmp_path / "images"
    (folder / "cat").mkdir(parents=True)
    (folder / "cat" / "a.png").write_bytes(b"png")
    images = config(data=DataConfig(name=f"imagefolder:{folder}"))
    key = dense_key(images)
    assert dense_key(config(data=DataConfig(name=f"imagefolder:{tmp_path / 'images'}"))) == key
    (folder / "cat" / "b.png").write_bytes(b"png")
    folder_listing_hash.cache_clear()  # once per process: a new process sees the new listing
    assert dense_key(images) != key
