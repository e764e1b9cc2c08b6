"""Your own data through the real `sparsetune` command: an image folder of real Fashion-MNIST
PNGs pruned and searched end to end, an `.npz` and a factory pruned, and bad data refused with
one line and exit code 2 before anything is written."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import (
    MAGNITUDE_GLOBAL_SPACE,
    assert_one_error_line,
    run_cli,
    sweep_rows,
    sweep_runs,
)
from image_folders import write_fashion_mnist_folder

SMALL = ["--model", "lenet300", "--val-size", "40"]


def prune(tmp_path: Path, dataset: str, *extra: str, env: dict[str, str] | None = None):
    return run_cli(
        "prune",
        *SMALL,
        *("--dataset", dataset, "--method", "magnitude", "--epochs", "1"),
        *("--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")),
        "--json",
        *extra,
        cwd=tmp_path,
        env=env,
    )


def write_npz(path: Path, y_test_offset: int = 0) -> None:
    generator = np.random.default_rng(0)
    y = np.arange(300) % 3
    x = (generator.integers(0, 60, (300, 1, 12, 12)) + (y * 80)[:, None, None, None]).astype(
        np.uint8
    )
    np.savez(path, x_train=x[:240], y_train=y[:240], x_test=x[240:], y_test=y[240:] + y_test_offset)


FACTORIES = """
import torch
from torch.utils.data import TensorDataset

def _part(count, seed):
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(count) % 2
    return torch.randn(count, 20, generator=generator) + 2 * y.view(-1, 1).float(), y

def datasets():
    return TensorDataset(*_part(200, 1)), TensorDataset(*_part(50, 2))

def raises():
    raise OSError("no such bucket: s3://nowhere")

def out_of_range():
    x, y = _part(50, 2)
    return _part(200, 1), (x, y - 2)
"""


@pytest.fixture
def factories(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "my_factories.py").write_text(textwrap.dedent(FACTORIES))
    return {"PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}


@pytest.mark.slow
def test_prune_an_image_folder_of_real_pngs(tmp_path):
    write_fashion_mnist_folder(tmp_path / "images", classes=2, train_per_class=150)
    result = prune(tmp_path, "imagefolder:images")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["method"] == "magnitude" and summary["compression"] > 1
    # T-shirts against trousers: one epoch on 260 images learns it.
    assert summary["test_acc"] > 0.8
    layers = {layer["name"]: layer for layer in summary["layers"]}
    assert layers["fc3"]["shape"] == "2x100"  # two classes, read from the folder
    assert (tmp_path / "run" / "result.json").is_file()


@pytest.mark.slow
def test_prune_an_npz_and_a_factory_of_datasets(tmp_path, factories):
    write_npz(tmp_path / "bands.npz")
    result = prune(tmp_path, "npz:bands.npz", "--subset", "100")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    layers = {layer["name"]: layer for layer in summary["layers"]}
    assert layers["fc1"]["shape"] == "300x144" and layers["fc3"]["shape"] == "3x100"

    (tmp_path / "run").rename(tmp_path / "npz-run")
    result = prune(tmp_path, "my_factories:datasets", env=factories)
    assert result.returncode == 0, result.stderr[-3000:]
    layers = {layer["name"]: layer for layer in json.loads(result.stdout)["layers"]}
    assert layers["fc1"]["shape"] == "300x20" and layers["fc3"]["shape"] == "2x100"


@pytest.mark.slow
@pytest.mark.parametrize("form", ["imagefolder", "factory"])
def test_search_own_data(tmp_path, factories, form):
    """A 2-trial sweep: the trials, in Ray workers, read the data themselves."""
    write_fashion_mnist_folder(tmp_path / "images", classes=2, train_per_class=150)
    dataset = (
        f"imagefolder:{tmp_path / 'images'}" if form == "imagefolder" else "my_factories:datasets"
    )
    (tmp_path / "space.yaml").write_text(MAGNITUDE_GLOBAL_SPACE)
    out = tmp_path / "sweep"
    result = run_cli(
        "search",
        *SMALL,
        *("--dataset", dataset),
        *("--trials", "2", "--max-concurrent", "2", "--seed", "0"),
        *("--space", str(tmp_path / "space.yaml"), "--experiment", "own-data"),
        *("--out", str(out), "--cache-dir", str(tmp_path / "cache")),
        cwd=tmp_path,
        env=factories,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Pareto front" in result.stdout
    assert "2 done, 0 running, 0 failed of 2" in result.stderr

    client, parents, children = sweep_runs(out, "own-data")
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert {"pareto.json", "trials.csv"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id)
    }
    assert parent.data.params["dataset"] == dataset
    rows = sweep_rows(out)
    for child in children:
        assert child.info.status == "FINISHED"
        last = [r for r in rows if r["run_id"] == child.info.run_id][-1]["round"]
        tickets = {a.path for a in client.list_artifacts(child.info.run_id, "ticket")}
        assert {"ticket/init.safetensors", f"ticket/round-{last}.safetensors"} <= tickets
    front = json.loads((out / "pareto.json").read_text())["front"]
    assert front and {row["run_id"] for row in front} <= {c.info.run_id for c in children}
    # The most accurate round seen is on the front, whatever its compression.
    best = max(float(r["val_acc"]) for r in rows if r["status"] == "ok")
    assert max(float(row["val_acc"]) for row in front) == pytest.approx(best)


BAD_DATA = [
    # (id, dataset, words the one line must contain)
    ("factory-raises", "my_factories:raises", ["calling it raised OSError", "s3://nowhere"]),
    ("labels-out-of-range", "my_factories:out_of_range", ["label -2 is out of range", "0..K-1"]),
    ("no-factory", "my_factories:absent", ["has no attribute 'absent'"]),
    ("npz-missing", "npz:{tmp}/nowhere.npz", ["no file", "nowhere.npz"]),
    ("npz-labels", "npz:{tmp}/shifted.npz", ["label", "out of range"]),
    (
        "folder-no-classes",
        "imagefolder:{tmp}/empty",
        ["no class folders in", "one folder per class"],
    ),
    ("folder-empty-class", "imagefolder:{tmp}/hollow", ["class folder coat", "holds no images"]),
    ("folder-unreadable", "imagefolder:{tmp}/broken", ["cannot read image", "0001.png"]),
]


@pytest.mark.parametrize("command", ["prune", "search"])
@pytest.mark.parametrize("case_id, dataset, expected", BAD_DATA, ids=[c[0] for c in BAD_DATA])
def test_bad_data_gets_one_line_and_exit_code_2(
    tmp_path, factories, command, case_id, dataset, expected
):
    (tmp_path / "empty").mkdir()
    write_fashion_mnist_folder(tmp_path / "hollow", classes=1, train_per_class=3, split=False)
    (tmp_path / "hollow" / "coat").mkdir()
    write_npz(tmp_path / "shifted.npz", y_test_offset=-1)
    write_fashion_mnist_folder(tmp_path / "broken", classes=2, train_per_class=3, test_per_class=1)
    (tmp_path / "broken" / "train" / "trouser" / "0001.png").write_bytes(b"\x89PNG broken")
    before = sorted(p.name for p in tmp_path.iterdir())

    result = run_cli(
        command,
        *SMALL,
        *("--dataset", dataset.format(tmp=tmp_path)),
        *("--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")),
        cwd=tmp_path,
        env=factories,
    )

    assert_one_error_line(result, expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
