"""`sparsetune prune`: one configuration in-process, its paper's settings by default, `--set`
overrides, `--json`, an optional MLflow run, and bad input as one line with exit code 2."""

from __future__ import annotations

import json

import pytest
from cli_helpers import SYNTHETIC_RUN, run_cli
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow


def test_prune_json_reports_the_final_round_and_records_an_mlflow_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "run"
    result = run_cli(
        "prune",
        *SYNTHETIC_RUN,
        "--method",
        "lottery",
        "--epochs",
        "1",
        "--set",
        "rounds=2",
        "--set",
        "prune_fraction=0.5",
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--tracking-uri",
        uri,
        "--json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert {"method", "val_acc", "test_acc", "compression", "flops_ratio", "architecture"} <= set(
        summary
    )
    assert summary["method"] == "lottery" and summary["round"] == 2
    # --set won over the recipe; the rest of the recipe (output layer at half rate) stayed.
    assert summary["params"]["rounds"] == 2 and summary["params"]["output_rate"] == "half"
    # Two rounds of p = 0.5 leave a quarter of fc1 and fc2, 56% of the output layer.
    layers = {layer["name"]: layer for layer in summary["layers"]}
    assert layers["fc1"]["remaining_pct"] == pytest.approx(25.0, abs=0.01)
    assert layers["fc3"]["remaining_pct"] == pytest.approx(56.25, abs=0.1)
    assert summary["val_acc"] > 0.5
    assert json.loads((out / "result.json").read_text())["run_id"] == summary["run_id"]
    assert (out / "round-2.safetensors").is_file() and (out / "init.safetensors").is_file()
    assert "round 2: val" in result.stderr

    run = MlflowClient(uri).get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["method"] == "lottery" and run.data.params["rounds"] == "2"
    assert run.data.metrics["compression"] == pytest.approx(summary["compression"])
    artifacts = {a.path for a in MlflowClient(uri).list_artifacts(run.info.run_id, "ticket")}
    assert {"ticket/round-2.safetensors", "ticket/init.safetensors"} <= artifacts


def test_prune_prints_epochs_and_the_per_layer_table_and_needs_no_mlflow(tmp_path):
    result = run_cli(
        "prune",
        *SYNTHETIC_RUN,
        "--method",
        "snip",
        "--epochs",
        "2",
        "--set",
        "sparsity=0.8",
        "--out",
        str(tmp_path / "run"),
        "--cache-dir",
        str(tmp_path / "cache"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for word in ("remaining %", "FLOPs remaining %", "fc1", "compression 5.0x"):
        assert word in result.stdout
    # Progress per epoch on stderr, for both phases (an L0 recipe trains for 200 epochs).
    for phase in ("dense", "training"):
        assert f"{phase}: epoch 1/2, loss " in result.stderr
        assert f"{phase}: epoch 2/2, loss " in result.stderr
    assert not list(tmp_path.rglob("*.db"))


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        (["--set", "nope=1"], ["--set", "params.nope", "allowed keys", "c_fc"]),
        (["--set", "c_fc=-1"], ["--set", "params.c_fc", "greater than 0"]),
        (["--set", "c_fc"], ["--set", "key=value"]),
        (["--method", "prune_all"], ["--method", "prune_all", "magnitude"]),
        (["--epochs", "0"], ["--epochs", "greater than or equal to 1"]),
        (
            ["--set", "criterion=layerwise", "--set", "layer_sparsity={fc9: 0.5}"],
            ["--set layer_sparsity: unknown layer(s) fc9", "layers are fc1, fc2, fc3"],
        ),
    ],
    ids=["unknown-key", "out-of-range", "no-equals", "unknown-method", "zero-epochs", "no-layer"],
)
def test_prune_bad_input_is_one_line_and_exit_2(tmp_path, arguments, words):
    out = tmp_path / "run"
    result = run_cli(
        "prune",
        *SYNTHETIC_RUN,
        "--method",
        "magnitude",
        *arguments,
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sparsetune: error: "), result.stderr
    for word in words:
        assert word in lines[0]
    assert not out.exists()
    assert not (tmp_path / "cache").exists()  # refused before any dense training


def test_structured_pruning_exports_a_physically_smaller_model(tmp_path):
    """L0 with neuron gates removes whole input neurons; `prune` writes the network without them
    as a torch.export program that runs on its own and scores what the masked model scored."""
    import torch

    from sparsetune.config import DataConfig
    from sparsetune.data import load_splits

    out = tmp_path / "run"
    result = run_cli(
        "prune",
        *SYNTHETIC_RUN,
        "--method",
        "l0",
        "--epochs",
        "1",
        *("--set", "epochs=2", "--set", "gate_lr_factor=100", "--set", "l0_lambda=0.01"),
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    units = [int(n) for n in summary["architecture"].split("-")]
    assert units[0] < 784 and summary["test_acc"] > 0.5, summary["architecture"]
    assert summary["smaller_model"] == str(out / "smaller-model.pt2")

    smaller = torch.export.load(summary["smaller_model"]).module()
    # The weights are exactly the surviving units: 784-300-100 became units[0]-units[1]-units[2].
    shapes = [tuple(v.shape) for k, v in smaller.state_dict().items() if k.endswith("weight")]
    assert shapes == [(units[1], units[0]), (units[2], units[1]), (10, units[2])]
    test = load_splits(DataConfig(name="synthetic", val_size=500)).test
    with torch.no_grad():
        accuracy = (smaller(test.x).argmax(1) == test.y).float().mean().item()
    assert accuracy == pytest.approx(summary["test_acc"], abs=2e-3)
