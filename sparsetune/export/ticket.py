"""Finding and reading a ticket: the masks and squashed weights one trial round saved.

A ticket is a `round-N.safetensors` file (`sparsetune.trial.tickets.write_ticket`): tensors
`mask.<name>` (bool) and `weight.<name>` (the plain state dict, pruned weights already zero), and a
header (`sparsetune.export.header`) naming the model, its input shape and class count, and the
round's metrics. A folder stands for its final ticket: the round that `result.json` names (a
`sparsetune prune --out` folder), else the highest round-N.safetensors in it (a trial folder, or
the `ticket/` artifacts of an MLflow run).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from sparsetune.export.header import read_header
from sparsetune.models import build_model
from sparsetune.pruning.masking import attach_masks

ROUND_FILE = re.compile(r"round-(\d+)\.safetensors")


def find_ticket(path: Path) -> Path:
    """The ticket file `path` stands for (see the module docstring); one-line ValueError if none."""
    path = Path(path)
    if path.is_file():
        if path.name == "init.safetensors":
            raise ValueError(
                f"{path}: holds a trial's initial weights, not a ticket; pass a "
                "round-N.safetensors file or the folder that holds it"
            )
        return path
    if not path.is_dir():
        raise ValueError(f"{path}: no such file or folder")
    result = path / "result.json"
    if result.is_file():  # a `sparsetune prune --out` folder names its final round
        try:
            final = json.loads(result.read_text()).get("round")
        except (json.JSONDecodeError, AttributeError):
            final = None
        if isinstance(final, int) and (path / f"round-{final}.safetensors").is_file():
            return path / f"round-{final}.safetensors"
    rounds = {
        int(match.group(1)): child
        for child in path.iterdir()
        if (match := ROUND_FILE.fullmatch(child.name)) and child.is_file()
    }
    if not rounds:
        raise ValueError(
            f"{path}: no round-N.safetensors ticket in this folder; pass a `sparsetune prune "
            "--out` folder, a trial folder or a ticket file"
        )
    return rounds[max(rounds)]


@dataclass(frozen=True)
class Ticket:
    """One round's ticket, read back: its header, plain weights and binary masks."""

    path: Path
    info: dict[str, Any]
    weights: dict[str, torch.Tensor]  # the plain (squashed) state dict: original key names
    masks: dict[str, torch.Tensor]  # bool, by weight name ("fc1.weight")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.info["input_shape"])

    def plain_model(self) -> nn.Module:
        """A fresh instance of the original class with the ticket's weights and no masks, in
        eval mode; its forward equals the masked model's (the weights are squashed)."""
        model = new_model(self.info)
        model.load_state_dict(self.weights)  # strict: the ticket is this class's state dict
        return model.eval()

    def masked_model(self) -> nn.Module:
        """The plain model with the ticket's masks attached (in eval mode): training it keeps
        every pruned weight at exactly zero."""
        model = self.plain_model()
        attach_masks(model, list(self.masks)).update(self.masks)
        return model


def new_model(info: dict[str, Any]) -> nn.Module:
    """A fresh instance of the model a header names (one-line ValueError if it cannot be built:
    an unknown name, or a user factory that is not importable here)."""
    return build_model(info["model"], tuple(info["input_shape"]), int(info["num_classes"]))


def read_ticket(path: Path) -> Ticket:
    """The ticket at `path` (a file or a folder, see `find_ticket`)."""
    path = find_ticket(path)
    info = read_header(path)
    if info["format"] != "ticket":
        raise ValueError(
            f"{path}: is an exported {info['format']} file, not a ticket; load it with "
            "sparsetune.load, or export from the ticket it came from"
        )
    tensors = load_file(path)  # safetensors: tensors only, nothing is unpickled
    masks = {k.removeprefix("mask."): v.bool() for k, v in tensors.items() if k.startswith("mask.")}
    weights = {k.removeprefix("weight."): v for k, v in tensors.items() if k.startswith("weight.")}
    missing = sorted(set(masks) - set(weights))
    if not weights or missing:
        raise ValueError(f"{path}: an incomplete ticket (no weights for {missing or 'any layer'})")
    return Ticket(path, info, weights, masks)
