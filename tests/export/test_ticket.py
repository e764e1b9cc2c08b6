"""Tickets describe themselves: a round-N.safetensors file alone rebuilds the trial's model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import INPUT_SHAPE
from safetensors.torch import load_file, save_file

from sparsetune.export import find_ticket, read_ticket
from sparsetune.export.header import read_header
from sparsetune.identity import trial_hash
from sparsetune.pruning.masking import find_masks


def test_the_ticket_header_names_the_model_and_the_rounds_metrics(magnitude_trial):
    for result in magnitude_trial.results:
        info = read_header(result.ticket_path)
        assert info["format"] == "ticket" and info["round"] == result.round
        assert (info["model"], info["input_shape"], info["num_classes"]) == (
            "lenet300",
            list(INPUT_SHAPE),
            10,
        )
        assert info["method"] == "magnitude" and info["dataset"] == "synthetic"
        assert info["config_hash"] == trial_hash(magnitude_trial.config)
        for key in ("val_acc", "test_acc", "compression", "flops_ratio", "architecture"):
            assert info[key] == getattr(result, key), key
    # The tensors are what they were: masks and the squashed plain state dict, nothing else.
    names = set(load_file(magnitude_trial.results[-1].ticket_path))
    layers = ("fc1", "fc2", "fc3")
    assert names == {f"mask.{layer}.weight" for layer in layers} | {
        f"weight.{layer}.{kind}" for layer in layers for kind in ("weight", "bias")
    }


def test_a_folder_stands_for_its_final_round(magnitude_trial, tmp_path):
    final = magnitude_trial.results[-1].ticket_path
    assert final.name == "round-2.safetensors"
    assert find_ticket(magnitude_trial.workdir) == final  # the highest round
    # A `prune --out` folder: result.json names the final round, whatever else lies there.
    folder = tmp_path / "run"
    shutil.copytree(magnitude_trial.workdir, folder)
    (folder / "round-7.safetensors").write_bytes(b"a later, unrelated file")
    (folder / "result.json").write_text(json.dumps({"round": 1}))
    assert find_ticket(folder) == folder / "round-1.safetensors"
    assert find_ticket(final) == final


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda tmp: tmp / "missing", "no such file or folder"),
        (lambda tmp: tmp, "no round-N.safetensors ticket in this folder"),
    ],
    ids=["missing", "empty-folder"],
)
def test_find_ticket_refuses_in_one_line(tmp_path, make, words):
    with pytest.raises(ValueError, match=words):
        find_ticket(make(tmp_path))


def test_files_that_are_not_tickets_are_refused_with_the_reason(magnitude_trial, tmp_path):
    with pytest.raises(ValueError, match="initial weights, not a ticket"):
        read_ticket(magnitude_trial.workdir / "init.safetensors")
    plain = tmp_path / "round-1.safetensors"
    save_file({"w": torch.zeros(2)}, plain)
    with pytest.raises(ValueError, match="has no sparsetune header"):
        read_ticket(plain)
    junk = tmp_path / "round-2.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a safetensors file"):
        read_ticket(junk)


def test_the_masked_model_of_a_ticket_is_the_trials_model(magnitude_trial):
    ticket = read_ticket(magnitude_trial.workdir)
    model = ticket.masked_model()
    masks = find_masks(model)
    live = magnitude_trial.context.masks
    assert list(masks) == list(live)
    for name in live:
        assert torch.equal(masks[name].bool(), live[name].bool())
    inputs = magnitude_trial.splits.val.x[:64]
    assert torch.equal(model(inputs), magnitude_trial.context.model(inputs))


def test_writing_a_ticket_imports_no_torch_for_the_header():
    """The CLI reads `EXPORT_FORMATS` before it validates input: that must stay light."""
    code = (
        "import sys\nimport sparsetune.export.header, sparsetune.export\n"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
