"""A round's ticket file: its masks and trained weights, with a header that says how to rebuild
the model and what the round scored (`sparsetune.export.header`), so that `sparsetune export` and
`sparsetune.load` need the ticket file alone. The initial weights are saved once per trial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from sparsetune.atomic import atomic_file
from sparsetune.export.header import encode_header
from sparsetune.pruning.masking import MaskSet, squashed_state_dict


def write_ticket(
    workdir: Path,
    round_index: int,
    *,
    init: dict[str, torch.Tensor],
    masks: MaskSet,
    model: nn.Module,
    header: dict[str, Any],
) -> Path:
    """Write `round-<round_index>.safetensors` (and `init.safetensors`, theta_0, if missing)
    under `workdir`; returns the round's path."""
    workdir.mkdir(parents=True, exist_ok=True)
    initial = workdir / "init.safetensors"
    if not initial.exists():
        _atomic_save(init, initial)
    tensors = {f"mask.{name}": mask for name, mask in masks.state().items()}
    tensors |= {f"weight.{name}": value for name, value in squashed_state_dict(model).items()}
    path = workdir / f"round-{round_index}.safetensors"
    _atomic_save(tensors, path, metadata=encode_header(header))
    return path


def _atomic_save(
    tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None
) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_file(path) as staging:
        save_file(tensors, staging, metadata=metadata)
