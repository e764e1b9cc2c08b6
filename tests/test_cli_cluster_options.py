"""`--address`, `--storage` and `--gpus-per-trial`: bad values get one line and exit code 2 with
nothing written, and `--storage` lays the sweep out as docs/cluster.md says."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
from cli_helpers import SYNTHETIC_RUN, assert_one_error_line, run_cli

from sparsetune.search.options import SweepConfig


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens once the probe is closed


NO_HEAD = f"127.0.0.1:{_closed_port()}"
NO_CLIENT_SERVER = f"ray://127.0.0.1:{_closed_port()}"

CASES = [
    # (id, arguments, extra environment, words the one line must contain)
    ("ray-client-no-port", ["--address", "ray://head"], {}, ["--address", "ray://HOST:PORT"]),
    (
        "no-client-server-there",
        ["--address", NO_CLIENT_SERVER],
        {},
        ["--address", NO_CLIENT_SERVER, "no Ray Client server answers", "--ray-client-server-port"],
    ),
    ("no-port", ["--address", "head"], {}, ["--address", "HOST:PORT", "'head'"]),
    ("port-out-of-range", ["--address", "head:70000"], {}, ["--address", "HOST:PORT"]),
    ("no-head-there", ["--address", NO_HEAD], {}, ["--address", NO_HEAD, "no Ray head answers"]),
    # auto reads RAY_ADDRESS first: pointed at a closed port, the answer does not depend on
    # whatever other Ray runs on this machine.
    ("auto-no-head", ["--address", "auto"], {"RAY_ADDRESS": NO_HEAD}, ["--address auto", NO_HEAD]),
    ("unknown-filesystem", ["--storage", "ftp://host/x"], {}, ["--storage", "ftp://", "s3://"]),
    ("uri-without-bucket", ["--storage", "s3://"], {}, ["--storage", "no bucket"]),
    ("cache-dir-uri", ["--cache-dir", "s3://bucket/cache"], {}, ["--cache-dir", "not a URI"]),
    ("out-uri", ["--out", "gs://bucket/sweep"], {}, ["--out", "not a URI"]),
    ("gpus-above-one", ["--gpus-per-trial", "1.5"], {}, ["--gpus-per-trial", "whole number"]),
    ("gpus-negative", ["--gpus-per-trial", "-1"], {}, ["--gpus-per-trial", "greater than"]),
    (
        "gpus-on-cpu-device",
        ["--gpus-per-trial", "0.25", "--device", "cpu"],
        {},
        ["--gpus-per-trial 0.25 with --device cpu"],
    ),
]
if not torch.cuda.is_available():
    CASES.append(
        (
            "gpus-without-cuda",
            ["--gpus-per-trial", "0.25"],
            {},
            ["--gpus-per-trial 0.25", "no CUDA device", "--address"],
        )
    )


@pytest.mark.parametrize("case_id, arguments, env, expected", CASES, ids=[c[0] for c in CASES])
def test_cluster_options_refuse_bad_values_in_one_line(tmp_path, case_id, arguments, env, expected):
    if "--out" not in arguments:
        arguments = [*arguments, "--out", str(tmp_path / "sweep")]
    if "--cache-dir" not in arguments:
        arguments = [*arguments, "--cache-dir", str(tmp_path / "cache")]

    result = run_cli("search", *SYNTHETIC_RUN, *arguments, cwd=tmp_path, env=env, timeout=120)

    assert_one_error_line(result, expected)
    assert list(tmp_path.iterdir()) == []  # nothing written


def _sweep(**options) -> SweepConfig:
    return SweepConfig(model="lenet300", dataset="synthetic", experiment="exp", **options)


@pytest.mark.parametrize("storage", ["/mnt/shared/st", "file:///mnt/shared/st"])
def test_a_storage_folder_holds_the_sweep_the_cache_and_rays_results(storage):
    sweep = _sweep(storage=storage)
    root = Path("/mnt/shared/st")
    assert sweep.sweep_dir == root / "exp"
    assert sweep.cache_dir == root / "cache"
    assert sweep.ray_storage(sweep.sweep_dir) == str(root / "exp" / "ray")


def test_out_and_cache_dir_win_over_a_storage_folder(tmp_path):
    sweep = _sweep(storage="/mnt/shared/st", out=tmp_path / "here", cache_dir=tmp_path / "c")
    assert sweep.sweep_dir == tmp_path / "here"
    assert sweep.cache_dir == tmp_path / "c"
    assert sweep.ray_storage(sweep.sweep_dir) == str(tmp_path / "here" / "ray")


def test_a_storage_uri_holds_rays_results_only(tmp_path):
    sweep = _sweep(storage="s3://bucket/sweeps/", out=tmp_path / "here")
    assert sweep.ray_storage(sweep.sweep_dir) == "s3://bucket/sweeps/exp/ray"
    assert sweep.sweep_dir == tmp_path / "here"
    assert sweep.cache_dir == SweepConfig.model_fields["cache_dir"].default  # still a folder


def test_a_recorded_sweep_names_the_storage_folders_it_used():
    """What `sweep.json` and the resume state hold: validated again, the same folders."""
    sweep = _sweep(storage="/mnt/shared/st")
    again = SweepConfig.model_validate(sweep.model_dump(mode="json"))
    assert (again.sweep_dir, again.cache_dir) == (sweep.sweep_dir, sweep.cache_dir)
    assert again.cache_dir == Path("/mnt/shared/st/cache")


@pytest.mark.parametrize("address", ["auto", "10.0.0.5:6379", "head-0.ray.svc:6379", "[::1]:6379"])
def test_address_forms_that_ray_accepts(address):
    assert _sweep(address=address).address == address
