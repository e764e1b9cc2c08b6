"""`--weights FILE`: a model the user already trained is the dense stage (not trained again),
and a model that does not fit the data or a file that does not fit the model is one line, exit 2,
nothing written."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from cli_helpers import SYNTHETIC_RUN, run_cli, run_sweep_cli, sweep_rows
from safetensors.torch import load_file, save_file

from sparsetune.app.checks import DenseStage, narrowed_space, space_for_run
from sparsetune.app.errors import BadInput
from sparsetune.config import DataConfig, TrialConfig
from sparsetune.identity import dense_key, trial_hash
from sparsetune.models import build_model
from sparsetune.models.weights import read_state_dict
from sparsetune.search.options import SweepConfig
from sparsetune.search.space import SearchSpace

# One round of global magnitude pruning to half, no retraining: the ticket's survivors are then
# exactly the dense stage's weights.
NO_RETRAIN = ["--set", "criterion=global", "--set", "sparsity=0.5", "--set", "rounds=1"]
NO_RETRAIN += ["--set", "retrain_epochs=0"]


def lenet300_state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return build_model("lenet300", (1, 28, 28), 10).state_dict()


def one_line_refusal(result, tmp_path) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sparsetune: error: "), result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()
    return lines[0]


def prune(tmp_path, *args: str, env=None):
    return run_cli(
        "prune",
        *args,
        "--out",
        str(tmp_path / "out"),
        "--cache-dir",
        str(tmp_path / "cache"),
        cwd=tmp_path,
        env=env,
    )


def test_prune_starts_from_the_weights_without_training_the_dense_stage(tmp_path):
    weights = lenet300_state(seed=7)
    torch.save({"state_dict": weights, "epoch": 12}, tmp_path / "trained.pt")
    result = prune(
        tmp_path, *SYNTHETIC_RUN, "--weights", "trained.pt", "--epochs", "3", *NO_RETRAIN
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Three dense epochs would each print a line: none trained.
    assert "dense: epoch" not in result.stderr
    assert f"dense from --weights {tmp_path / 'trained.pt'} (not trained)" in result.stderr
    assert "magnitude starts from your weights" in result.stderr
    summary = json.loads((tmp_path / "out" / "result.json").read_text())
    assert summary["weights"] == str(tmp_path / "trained.pt")
    # The pruned network is the file's network: every surviving weight is the file's value.
    ticket = load_file(tmp_path / "out" / "round-1.safetensors")
    for name in ("fc1.weight", "fc2.weight", "fc3.weight"):
        mask = ticket[f"mask.{name}"].bool()
        assert torch.equal(ticket[f"weight.{name}"][mask], weights[name][mask])
        assert 0 < mask.float().mean() < 1
    # The dense cache entry is the file's weights, with theta_0 a fresh seeded initialisation.
    (entry,) = [path for path in (tmp_path / "cache" / "dense").iterdir() if path.is_dir()]
    final = load_file(entry / "final.safetensors")
    assert all(torch.equal(final[name], weights[name]) for name in weights)
    init = load_file(entry / "init.safetensors")
    assert all(torch.equal(init[name], lenet300_state(seed=0)[name]) for name in weights)
    assert json.loads((entry / "meta.json").read_text())["rewind_iterations"] == []


def test_a_file_whose_keys_do_not_fit_is_one_line(tmp_path):
    weights = lenet300_state(seed=7)
    weights["head.weight"] = weights.pop("fc3.weight")
    save_file(weights, tmp_path / "other.safetensors")
    line = one_line_refusal(
        prune(tmp_path, *SYNTHETIC_RUN, "--weights", "other.safetensors"), tmp_path
    )
    assert f"--weights {tmp_path / 'other.safetensors'}: its keys do not fit the model" in line
    assert "missing fc3.weight; unexpected head.weight" in line


def test_a_file_that_is_no_checkpoint_is_one_line(tmp_path):
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    line = one_line_refusal(prune(tmp_path, *SYNTHETIC_RUN, "--weights", "notes.pt"), tmp_path)
    assert "not a weights-only torch checkpoint" in line


def test_a_missing_file_is_one_line(tmp_path):
    line = one_line_refusal(prune(tmp_path, *SYNTHETIC_RUN, "--weights", "none.pt"), tmp_path)
    assert line.startswith("sparsetune: error: --weights: ") and "no such file" in line


def test_lottery_rewinding_past_theta_0_is_refused(tmp_path):
    torch.save(lenet300_state(seed=7), tmp_path / "trained.pt")
    args = ["--method", "lottery", "--set", "rewind_iteration=100"]
    line = one_line_refusal(
        prune(tmp_path, *SYNTHETIC_RUN, *args, "--weights", "trained.pt"), tmp_path
    )
    assert "rewind_iteration 100 needs theta_100 from a dense training" in line


def test_a_torchvision_model_that_cannot_take_the_data_is_one_line(tmp_path):
    # The report: this ended in a 46-line traceback.
    args = ["--model", "torchvision.models:resnet18", "--dataset", "synthetic"]
    line = one_line_refusal(prune(tmp_path, *args), tmp_path)
    assert "--model torchvision.models:resnet18: it cannot take the data's input of shape " in line
    assert "(1, 28, 28)" in line and "to have 3 channels" in line


def test_a_model_of_other_classes_is_one_line(tmp_path):
    (tmp_path / "my_models.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            def imagenet_head():
                return nn.Sequential(nn.Flatten(), nn.Linear(784, 1000))
            """
        )
    )
    args = ["--model", "my_models:imagenet_head", "--dataset", "synthetic"]
    line = one_line_refusal(prune(tmp_path, *args, env={"PYTHONPATH": str(tmp_path)}), tmp_path)
    assert "--model my_models:imagenet_head: its output has 1000 classes, the data has 10" in line


def test_the_dense_key_holds_the_file_content(tmp_path):
    torch.save(lenet300_state(seed=7), tmp_path / "a.pt")
    torch.save(lenet300_state(seed=8), tmp_path / "b.pt")
    (tmp_path / "copy.pt").write_bytes((tmp_path / "a.pt").read_bytes())

    def config(weights):
        return TrialConfig(
            model="lenet300", data=DataConfig(name="synthetic"), method="dense", weights=weights
        )

    plain, a, b, copy = (
        config(w) for w in (None, tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "copy.pt")
    )
    assert len({dense_key(plain), dense_key(a), dense_key(b)}) == 3
    assert len({trial_hash(plain), trial_hash(a), trial_hash(b)}) == 3
    # The content, not the path: a copy shares the entry of its original.
    assert dense_key(copy) == dense_key(a)
    assert set(read_state_dict(tmp_path / "a.pt")) == set(lenet300_state(seed=0))


def test_a_search_space_rewinds_to_theta_0_under_weights(tmp_path):
    torch.save(lenet300_state(seed=7), tmp_path / "a.pt")
    space = SearchSpace(
        methods={
            "lottery": {"rewind_iteration": {"choices": [0, 100, 500]}, "rounds": 2},
            "magnitude": {"rounds": 1},
        }
    )
    sweep = SweepConfig(model="lenet300", weights=tmp_path / "a.pt")
    pinned = space_for_run(sweep, space)
    assert pinned.methods["lottery"]["rewind_iteration"].value == 0
    assert pinned.methods["magnitude"] == space.methods["magnitude"]
    long_dense = DenseStage.of(space.train.model_copy(update={"epochs": 20}), 5000)
    assert narrowed_space(space, long_dense) == (space, None)
    fixed = SearchSpace(methods={"lottery": {"rewind_iteration": 500}})
    with pytest.raises(BadInput, match="fixes lottery's rewind_iteration at 500"):
        space_for_run(sweep, fixed)


WEIGHTS_SPACE = """
train: {optimizer: sgd, lr: 0.05, epochs: 3, batch_size: 128}
methods:
  lottery:
    rewind_iteration: {choices: [0, 100]}
    prune_fraction: 0.5
    rounds: 1
"""


@pytest.mark.slow
def test_search_starts_every_trial_from_the_weights(tmp_path):
    weights = lenet300_state(seed=7)
    save_file(weights, tmp_path / "trained.safetensors")
    result, out = run_sweep_cli(
        tmp_path, WEIGHTS_SPACE, 2, "weights", "--weights", str(tmp_path / "trained.safetensors")
    )
    weights_path = tmp_path / "trained.safetensors"
    assert f"from --weights {weights_path}" in result.stderr
    assert "dense: epoch" not in result.stderr
    assert "under --weights, lottery rewinds the survivors to theta_0" in result.stderr
    (entry,) = [path for path in (tmp_path / "cache" / "dense").iterdir() if path.is_dir()]
    final = load_file(entry / "final.safetensors")
    assert all(torch.equal(final[name], weights[name]) for name in weights)
    rows = sweep_rows(out)
    assert [row["status"] for row in rows] == ["ok", "ok"]
    assert all(json.loads(row["params"])["rewind_iteration"] == 0 for row in rows)


def test_a_sweep_spec_reads_weights_relative_to_its_folder(tmp_path):
    from sparsetune.search.spec import load_spec

    (tmp_path / "specs").mkdir()
    torch.save(lenet300_state(seed=7), tmp_path / "specs" / "trained.pt")
    spec = tmp_path / "specs" / "nightly.yaml"
    spec.write_text("model: lenet300\ndataset: synthetic\ntrials: 2\nweights: trained.pt\n")
    loaded = load_spec(spec)
    config = loaded.sweep_config("lenet300", loaded.base_dir("lenet300"))
    assert config.weights == tmp_path / "specs" / "trained.pt"


@pytest.mark.slow
def test_a_trained_torchvision_resnet18_is_pruned_from_the_command_line(tmp_path):
    import numpy as np
    import torchvision

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 160)
    images = rng.normal(size=(160, 3, 32, 32)) + labels[:, None, None, None]
    np.savez(
        tmp_path / "rgb.npz",
        x_train=images[:120].astype("float32"),
        y_train=labels[:120],
        x_test=images[120:].astype("float32"),
        y_test=labels[120:],
    )
    torch.manual_seed(3)
    weights = torchvision.models.resnet18(num_classes=4).state_dict()
    save_file({k: v.contiguous() for k, v in weights.items()}, tmp_path / "resnet.safetensors")
    args = ["--model", "torchvision:resnet18", "--dataset", "npz:rgb.npz", "--val-size", "40"]
    result = prune(tmp_path, *args, "--weights", "resnet.safetensors", "--epochs", "2", *NO_RETRAIN)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "dense: epoch" not in result.stderr and "(not trained)" in result.stderr
    ticket = load_file(tmp_path / "out" / "round-1.safetensors")
    for name in ("conv1.weight", "layer4.1.conv2.weight", "fc.weight"):
        mask = ticket[f"mask.{name}"].bool()
        assert torch.equal(ticket[f"weight.{name}"][mask], weights[name][mask])
    assert json.loads((tmp_path / "out" / "result.json").read_text())["compression"] > 1.9
