"""`sparsetune.session()`: sweeps of one process on one local Ray, kept up between them, each next
sweep's trials in worker processes readied (started, the trial's modules imported) before it
began. Real sweeps in a script of their own: two in a session, then the same sweep without one;
the three give the same numbers."""

from __future__ import annotations

import contextlib
from datetime import datetime

import pytest
from cli_helpers import MAGNITUDE_GLOBAL_SPACE, sweep_runs
from python_script import script_json

import sparsetune
from sparsetune.app.errors import BadInput

pytestmark = pytest.mark.slow

SESSION_SCRIPT = """
import json, sys, time
from pathlib import Path
import ray
import sparsetune
from sparsetune.app.errors import BadInput

space, folder = sys.argv[1], Path(sys.argv[2])

def sweep(name):
    return sparsetune.search(
        "lenet300", data="synthetic", trials=2, space=space, out=folder / name,
        cache_dir=folder / "cache", experiment=name, val_size=500, max_concurrent=1, seed=0,
        quiet=True, enqueue="none",
    )

report = {"starts": {}}
with sparsetune.session(gpus=0):
    for name in ("first", "second"):
        if name == "second":
            time.sleep(8)  # a notebook's pause: the readied worker finishes its imports
        report["starts"][name] = time.time()
        sweep(name)
        report[f"ray_up_after_{name}"] = ray.is_initialized()
    try:
        sparsetune.search("lenet300", data="synthetic", address="auto", out=folder / "cluster")
    except BadInput as error:
        report["address_refused"] = str(error)
    with sparsetune.session(gpus=0):  # inside another: that one serves
        report["nested_up"] = ray.is_initialized()
    report["up_after_nested"] = ray.is_initialized()
report["ray_up_after_session"] = ray.is_initialized()
report["starts"]["alone"] = time.time()
sweep("alone")
report["ray_up_after_alone"] = ray.is_initialized()
ray.init(num_cpus=1, include_dashboard=False)
try:
    with sparsetune.session(gpus=0):
        pass
except BadInput as error:
    report["ray_already_up"] = str(error)
print(json.dumps(report))
"""
NUMBERS = ("val_acc", "val_loss", "compression", "remaining_weights")


def test_sweeps_in_a_session_start_in_readied_workers_with_the_same_numbers(tmp_path):
    (tmp_path / "space.yaml").write_text(MAGNITUDE_GLOBAL_SPACE)
    report = script_json(
        SESSION_SCRIPT, str(tmp_path / "space.yaml"), str(tmp_path), cwd=tmp_path, timeout=900
    )

    assert report["ray_up_after_first"] and report["ray_up_after_second"]  # kept up
    assert report["nested_up"] and report["up_after_nested"]
    assert not report["ray_up_after_session"]  # the session stopped its Ray
    assert not report["ray_up_after_alone"]  # down when the call returns, its results written
    assert report["address_refused"].startswith("address=auto: the sweeps of sparsetune.session()")
    assert not (tmp_path / "cluster").exists()
    assert report["ray_already_up"].startswith("Ray is already running in this process")

    def trials(name: str):
        client, _, children = sweep_runs(tmp_path / name, name)
        assert len(children) == 2
        children.sort(key=lambda child: child.info.start_time)
        numbers = [
            {
                key: [(m.step, m.value) for m in client.get_metric_history(c.info.run_id, key)]
                for key in NUMBERS
            }
            for c in children
        ]
        return children, numbers

    second, second_numbers = trials("second")
    for child in second:  # its process had loaded the trial's code before the sweep began
        loaded = datetime.fromisoformat(child.data.tags["worker_loaded"]).timestamp()
        assert loaded < report["starts"]["second"]
    alone, alone_numbers = trials("alone")
    for child in alone:  # no session: a new worker loads it for the sweep's first trial
        loaded = datetime.fromisoformat(child.data.tags["worker_loaded"]).timestamp()
        assert loaded > report["starts"]["alone"]
    _, first_numbers = trials("first")
    assert first_numbers[0]["val_acc"]
    # Same seed, same trials: the numbers of readied workers are those of new ones, to the bit.
    assert first_numbers == second_numbers == alone_numbers


def test_a_session_asks_for_gpus_this_machine_has():
    import torch

    available = torch.cuda.device_count()
    for gpus in (available + 1, -1, 1.5, True):
        with pytest.raises(BadInput, match=rf"gpus={gpus!r}: this machine has {available} GPU"):
            with sparsetune.session(gpus=gpus):
                pass


def test_a_spec_of_several_local_sweeps_runs_them_in_one_session():
    from types import SimpleNamespace

    from sparsetune.app.scheduled_sweep import _one_local_ray

    def step(address=None, device="cpu"):
        return SimpleNamespace(sweep=SimpleNamespace(address=address, device=device))

    def shares_ray(steps) -> bool:
        return not isinstance(_one_local_ray(steps), contextlib.nullcontext)

    assert shares_ray([step(), step()])
    assert not shares_ray([step()])  # one sweep starts and stops its own Ray, as `search` does
    assert not shares_ray([step(), step(address="auto")])  # a cluster's sweep joins it
    assert not shares_ray([])
