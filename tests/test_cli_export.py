"""`sparsetune export`: a ticket from a path or an MLflow run id to a model file, optionally
registered in MLflow's model registry; bad input as one line, exit code 2 and nothing written."""

from __future__ import annotations

import json
import os

import mlflow
import numpy as np
import pytest
import torch
from cli_helpers import SYNTHETIC_RUN, run_cli
from mlflow.tracking import MlflowClient

import sparsetune
from sparsetune.config import DataConfig
from sparsetune.data import load_splits
from sparsetune.models import build_model
from sparsetune.pruning.masking import attach_masks, squashed_state_dict
from sparsetune.trial.tickets import write_ticket

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    """A `sparsetune prune` run recorded in MLflow: L0 with neuron gates on LeNet-300-100, which
    removes input pixels and neurons. On 2,000 examples (test_cli_prune's structured test uses
    7,500): lambda is per example, so it is 10x smaller here, and a faster gate rate closes
    gates in the fewer steps."""
    root = tmp_path_factory.mktemp("prune")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    result = run_cli(
        "prune",
        *SYNTHETIC_RUN,
        "--method",
        "l0",
        "--epochs",
        "1",
        *("--subset", "2000", "--set", "epochs=2"),
        *("--set", "gate_lr_factor=300", "--set", "l0_lambda=0.001"),
        "--out",
        str(root / "run"),
        "--cache-dir",
        str(root / "cache"),
        "--tracking-uri",
        uri,
        "--json",
        cwd=root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root, uri, json.loads(result.stdout)


@pytest.fixture(scope="module")
def unstructured_ticket(tmp_path_factory):
    """An unstructured ticket, as a trial writes it (and its `init.safetensors`): LeNet-300-100
    with half of fc1's and fc2's weights masked at random, the output layer whole. Every row and
    column keeps some weights, so nothing can be removed."""
    torch.manual_seed(0)
    model = build_model("lenet300", (1, 28, 28), 10)
    init = squashed_state_dict(model)
    masks = attach_masks(model, ["fc1.weight", "fc2.weight"])
    masks.update({name: torch.rand(mask.shape) > 0.5 for name, mask in masks.items()})
    header = {"format": "ticket", "model": "lenet300", "input_shape": [1, 28, 28]}
    header |= {"num_classes": 10, "method": "magnitude", "dataset": "synthetic"}
    workdir = tmp_path_factory.mktemp("magnitude")
    return write_ticket(workdir, 1, init=init, masks=masks, model=model, header=header)


def test_a_run_id_exports_and_registers_a_model_that_mlflow_loads(pruned, tmp_path, monkeypatch):
    root, uri, summary = pruned
    out = tmp_path / "models" / "lenet300-small.safetensors"  # a folder that does not exist yet
    result = run_cli(
        "export",
        summary["run_id"],
        "--format",
        "structured",
        "--out",
        str(out),
        "--register",
        "lenet300-ticket",
        "--tracking-uri",
        uri,
        "--json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    written = json.loads(result.stdout)
    assert written["out"] == str(out) and written["bytes"] == os.path.getsize(out)
    assert written["format"] == "structured" and written["model"] == "lenet300"
    assert written["architecture"] == summary["architecture"]
    assert written["compression"] == pytest.approx(summary["compression"])
    assert written["source"] == f"run {summary['run_id']} round-{summary['round']}.safetensors"
    registered = written["registered"]
    assert registered["name"] == "lenet300-ticket" and registered["version"] == 1
    assert registered["run_id"] == summary["run_id"]  # logged into the ticket's own run

    smaller = sparsetune.load(out)
    units = [int(n) for n in summary["architecture"].split("-")]
    linear = [tuple(m.weight.shape) for m in smaller if isinstance(m, torch.nn.Linear)]
    assert linear[0][1] == units[0] < 784  # the input pixels the run removed are gone
    ticket = sparsetune.load(root / "run")  # the masked model, from the ticket itself
    inputs = load_splits(DataConfig(name="synthetic", val_size=500)).test.x[:64]
    with torch.no_grad():
        expected = ticket(inputs)
        torch.testing.assert_close(smaller(inputs), expected, rtol=0, atol=1e-5)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    from_registry = mlflow.pytorch.load_model("models:/lenet300-ticket/1")
    with torch.no_grad():
        torch.testing.assert_close(from_registry(inputs), expected, rtol=0, atol=1e-5)
    predictions = mlflow.pyfunc.load_model("models:/lenet300-ticket/1").predict(inputs[:5].numpy())
    assert np.asarray(predictions).shape == (5, 10)

    client = MlflowClient(uri)
    version = client.get_model_version("lenet300-ticket", "1")
    assert version.tags["architecture"] == summary["architecture"]
    assert version.tags["export_format"] == "structured"
    assert version.run_id == summary["run_id"]
    run = client.get_run(summary["run_id"])
    assert run.data.tags["architecture"] == summary["architecture"]
    assert run.info.status == "FINISHED"
    assert not (tmp_path / "mlruns").exists()  # nothing landed in the working folder


def test_a_prune_folder_exports_as_sparse_at_the_reported_memory_footprint(pruned, tmp_path):
    root, _, summary = pruned
    out = tmp_path / "ticket-sparse.safetensors"
    result = run_cli(
        "export", str(root / "run"), "--format", "sparse", "--out", str(out), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = result.stdout.strip()
    assert line.startswith(f"wrote {out}: sparse, {os.path.getsize(out):,} bytes"), line
    assert f"architecture {summary['architecture']}" in line
    assert os.path.getsize(out) == summary["memory_footprint_bytes"]
    assert (
        json.loads((root / "run" / "result.json").read_text())["memory_footprint_bytes"]
        == (summary["memory_footprint_bytes"])
    )


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        (["{missing}", "--format", "dense"], ["SOURCE", "no such file or folder", "run id"]),
        (["{ticket}", "--format", "onnx"], ["--format 'onnx'", "dense, sparse, structured"]),
        (["{ticket}", "--format", "structured"], ["no neuron or channel", "--format sparse"]),
        (
            ["{ticket}", "--format", "dense", "--out", "{tmp}/file.txt/model.safetensors"],
            ["--out", "is a file, not a folder"],
        ),
        (["{ticket}", "--format", "dense", "--out", "{tmp}"], ["--out", "is a folder"]),
        (
            ["{ticket}", "--format", "dense", "--out", "{tmp}/pipe"],
            ["--out", "is a named pipe (FIFO), not a file"],
        ),
        (
            ["{ticket}", "--format", "sparse", "--out", "{ticket}"],
            ["--out", "is the source ticket itself"],
        ),
        (
            ["{ticket}", "--format", "sparse", "--out", "{tmp}/link.safetensors"],
            ["--out", "is the source ticket itself"],
        ),
        (["{init}", "--format", "dense"], ["initial weights, not a ticket"]),
        (["{tmp}", "--format", "dense"], ["no round-N.safetensors ticket"]),
        (["0" * 32, "--format", "dense"], ["is a run id", "--tracking-uri"]),
        (
            ["{ticket}", "--format", "dense", "--register", "net", "--tracking-uri", "bogus://x"],
            ["--tracking-uri bogus://x", "MLflow stores no runs at bogus:"],
        ),
        (
            ["0" * 32, "--format", "dense", "--tracking-uri", "sqlite:///{tmp}/none.db"],
            ["no MLflow database", "none.db"],
        ),
        (
            ["0" * 32, "--format", "dense", "--tracking-uri", "{uri}"],
            [f"run {'0' * 32} at sqlite", "not found"],
        ),
    ],
    ids=[
        "missing",
        "format",
        "nothing-removable",
        "out-under-file",
        "out-is-folder",
        "out-is-fifo",
        "out-is-the-source",
        "out-links-to-the-source",
        "init",
        "no-tickets",
        "run-id-no-uri",
        "register-bogus-uri",
        "run-id-no-db",
        "unknown-run",
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    pruned, unstructured_ticket, tmp_path, monkeypatch, arguments, words
):
    (tmp_path / "file.txt").write_text("a file, not a folder")
    os.mkfifo(tmp_path / "pipe")  # `--out` a FIFO: replacing it would replace whatever it is
    (tmp_path / "link.safetensors").symlink_to(unstructured_ticket)
    source = unstructured_ticket.read_bytes()
    values = {
        "missing": tmp_path / "nope" / "round-1.safetensors",
        "ticket": unstructured_ticket,
        "init": unstructured_ticket.parent / "init.safetensors",
        "tmp": tmp_path,
        "uri": pruned[1],
    }
    arguments = [argument.format(**values) for argument in arguments]
    if "--out" not in arguments:
        arguments += ["--out", str(tmp_path / "out" / "model.safetensors")]
    before = sorted(tmp_path.rglob("*"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the subprocess inherits os.environ
    result = run_cli("export", *arguments, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sparsetune: error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, not even a folder
    assert unstructured_ticket.read_bytes() == source  # the source ticket is as it was
