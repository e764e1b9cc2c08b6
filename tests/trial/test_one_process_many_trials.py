"""A sweep's worker runs trial after trial in one process, with the data decoded once and shared
(or adopted from the sweep's object store). Nothing may carry over from one trial to the next:
the seed, the masks, the optimizer's state, another dataset's cached splits. Each case runs the
same configuration before and after other trials in this process, and once in a fresh process,
and asks for the same numbers to the last bit."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from trial_helpers import lenet300_trial

from sparsetune.config import DataConfig, SyntheticOptions, TrialConfig
from sparsetune.data import load_splits
from sparsetune.data.shared import adopt_payload, splits_payload
from sparsetune.trial import run_trial

NUMBERS = ("round", "val_acc", "val_loss", "test_acc", "compression", "architecture")
# L0 draws its gates' noise from torch's generator and trains its gates with Adam; magnitude
# prunes (masks) and retrains with SGD and momentum: what leaks first if a seed, a mask or an
# optimizer outlived its trial.
L0 = ("l0", {"l0_lambda": 0.3, "granularity": "neuron", "epochs": 2})
MAGNITUDE = ("magnitude", {"criterion": "global", "sparsity": 0.9, "rounds": 2})


def trial_config(method: tuple[str, dict], data: DataConfig) -> TrialConfig:
    name, params = method
    return lenet300_trial(name, params, data, seed=5)


def numbers(results) -> list[dict]:
    return [{key: getattr(result, key) for key in NUMBERS} for result in results]


def in_a_fresh_process(config: TrialConfig, cache_dir) -> list[dict]:
    script = (
        "import json, sys\n"
        "from sparsetune.config import TrialConfig\n"
        "from sparsetune.trial import run_trial\n"
        "config = TrialConfig.model_validate_json(sys.argv[1])\n"
        f"keys = {NUMBERS!r}\n"
        "results = run_trial(config, cache_dir=sys.argv[2])\n"
        "print(json.dumps([{k: getattr(r, k) for k in keys} for r in results]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, config.model_dump_json(), str(cache_dir)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.slow
def test_trials_in_one_process_give_the_numbers_of_a_fresh_process(small_data, tmp_path):
    other_data = DataConfig(
        name="synthetic",
        val_size=300,
        synthetic=SyntheticOptions(
            input_shape=(1, 28, 28), num_classes=5, train_size=900, test_size=200, noise=3.0
        ),
    )
    cache = tmp_path / "cache"
    l0, magnitude = trial_config(L0, small_data), trial_config(MAGNITUDE, small_data)
    first = {"l0": numbers(run_trial(l0, cache_dir=cache))}
    first["magnitude"] = numbers(run_trial(magnitude, cache_dir=cache))
    run_trial(trial_config(L0, other_data), cache_dir=cache)  # another dataset in between
    assert load_splits(other_data).num_classes == 5 and load_splits(small_data).num_classes == 10
    again = {"l0": numbers(run_trial(l0, cache_dir=cache))}
    again["magnitude"] = numbers(run_trial(magnitude, cache_dir=cache))
    assert len(first["magnitude"]) == 2 and first["magnitude"][-1]["compression"] > 5
    assert again == first
    assert in_a_fresh_process(l0, cache) == first["l0"]
    assert in_a_fresh_process(magnitude, cache) == first["magnitude"]


def test_splits_adopted_from_the_object_store_payload_are_the_decoded_ones(small_data):
    decoded = load_splits(small_data)
    payload = splits_payload(decoded)
    assert payload is not None
    # A worker that holds no splits of a config (here: any config not loaded yet) adopts the
    # payload the driver sent, without a copy.
    shifted = small_data.model_copy(update={"split_seed": 11})
    adopt_payload(shifted, payload)
    adopted = load_splits(shifted)
    for part in ("train", "val", "test"):
        ours, theirs = getattr(adopted, part), getattr(decoded, part)
        assert ours.x.data_ptr() == theirs.x.data_ptr()  # the same memory, not a copy
        assert ours.y.equal(theirs.y)
    assert (adopted.input_shape, adopted.num_classes) == (decoded.input_shape, decoded.num_classes)
    # A process that holds its own splits of that config keeps them.
    adopt_payload(small_data, splits_payload(load_splits(shifted)))
    assert load_splits(small_data) is decoded
