"""deploy/rayjob.yaml stays in step with the CLI: its entrypoint is a `sparsetune search` that
joins the cluster (`--address auto`), and every option in it is one that `search` has.
deploy/cronjob.yaml runs `sparsetune sweep` on the spec its ConfigMap mounts, a valid spec."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer
import yaml

from sparsetune.cli import app
from sparsetune.cli.options import given_options
from sparsetune.search.options import SweepConfig

MANIFEST = Path(__file__).resolve().parents[1] / "deploy" / "rayjob.yaml"


def _documents() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(MANIFEST.read_text())}


def _search_command():
    return typer.main.get_command(app).commands["search"]


def test_the_rayjob_runs_sparsetune_search_on_the_cluster():
    job = _documents()["RayJob"]
    words = shlex.split(job["spec"]["entrypoint"])
    assert words[:2] == ["sparsetune", "search"]
    assert "--address auto" in " ".join(words)
    assert "--storage" in words

    known = {name for param in _search_command().params for name in param.opts}
    given = [word for word in words[2:] if word.startswith("--")]
    assert set(given) <= known, set(given) - known

    # Parsed as the CLI parses it, and valid as a sweep (without running anything).
    context = _search_command().make_context("search", words[2:])
    sweep = SweepConfig.model_validate(given_options(context, SweepConfig))
    assert sweep.address == "auto" and sweep.storage_dir == Path("/mnt/shared/sparsetune")
    assert sweep.gpus_per_trial == 0.25


def test_every_pod_mounts_the_shared_volume_and_sends_the_token():
    documents = _documents()
    claim = documents["PersistentVolumeClaim"]
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    cluster = documents["RayJob"]["spec"]["rayClusterSpec"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        pod = group["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            name = mounts["/mnt/shared"]
            assert volumes[name]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
            env = {e["name"]: e for e in container["env"]}
            assert env["RAY_AUTH_MODE"]["value"] == "token" and "RAY_AUTH_TOKEN" in env
    gpus = [
        c["resources"]["limits"].get("nvidia.com/gpu")
        for group in cluster["workerGroupSpecs"]
        for c in group["template"]["spec"]["containers"]
    ]
    assert all(gpus), "the worker groups hold the GPUs the trials ask for"


CRONJOB = MANIFEST.with_name("cronjob.yaml")


def test_the_cronjob_runs_sparsetune_sweep_on_its_mounted_spec(tmp_path):
    from sparsetune.search.spec import load_spec

    documents = {doc["kind"]: doc for doc in yaml.safe_load_all(CRONJOB.read_text())}
    cron = documents["CronJob"]["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    pod = cron["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    words = shlex.split(container["command"][-1])
    at = words.index("sparsetune")
    assert words[at + 1] == "sweep"
    spec_path = Path(words[at + 2].rstrip(";"))

    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    (spec_volume,) = [n for n, v in volumes.items() if "configMap" in v]
    assert spec_path.parent == Path(mounts[spec_volume])
    config_map = documents["ConfigMap"]
    assert volumes[spec_volume]["configMap"]["name"] == config_map["metadata"]["name"]
    assert volumes["shared"]["persistentVolumeClaim"]["claimName"] == "sparsetune-shared"

    # The spec is valid as `sparsetune sweep` reads it (nothing runs), and keeps its sweeps on
    # the shared volume.
    (tmp_path / spec_path.name).write_text(config_map["data"][spec_path.name])
    loaded = load_spec(tmp_path / spec_path.name)
    assert loaded.out.is_relative_to(mounts["shared"])
    assert loaded.spec.new_sweep == "daily"
