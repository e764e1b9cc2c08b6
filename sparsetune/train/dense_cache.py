"""The dense stage, trained once per (model, data, recipe, seed) and shared by every trial.

An entry is a folder `<root>/dense/<key>/` holding the initial and trained weights (safetensors),
the rewind checkpoints theta_j taken during that same training (lottery tickets rewind to them,
so no trial ever trains the dense model a second time), and `meta.json`. A file lock makes
concurrent trials that need the same entry train it once: the first trains, the others wait, then
read. The entry is written under a temporary name and renamed into place in one step, so no
reader ever sees a torn entry.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from filelock import FileLock
from safetensors.torch import load_file, save_file

# Where the dense training keeps theta_j for rewinding (Frankle et al. 2020: a few hundred to a few
# thousand iterations for deep nets; j = 0, the initialisation, is always there). A fixed grid keeps
# the dense key free of the lottery's knobs, so every rewinding trial shares one dense training.
REWIND_ITERATIONS = (100, 200, 500, 1000, 2000)


@dataclass(frozen=True)
class DenseCheckpoint:
    init: dict[str, torch.Tensor]  # theta_0, before any training
    final: dict[str, torch.Tensor]  # after the dense recipe
    metrics: dict[str, float] = field(default_factory=dict)
    # theta_j by training iteration j (optimiser steps), for the j in REWIND_ITERATIONS reached
    rewind: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)

    def weights_at(self, iteration: int) -> dict[str, torch.Tensor]:
        """theta_j: the initial weights for j = 0, else the checkpoint taken after j steps."""
        if iteration == 0:
            return self.init
        if iteration not in self.rewind:
            taken = ", ".join(str(j) for j in sorted(self.rewind)) or "none"
            raise ValueError(
                f"rewind_iteration: the dense stage has no checkpoint at iteration {iteration} "
                f"(taken: 0, {taken}); its training is shorter, or pick one of those"
            )
        return self.rewind[iteration]


@dataclass(frozen=True)
class CachedDense:
    checkpoint: DenseCheckpoint
    key: str
    path: Path
    trained_here: bool  # False when it was read from the cache


class DenseCache:
    def __init__(self, root: Path):
        self.root = Path(root).expanduser()

    def entry(self, key: str) -> Path:
        return self.root / "dense" / key

    def get_or_train(self, key: str, train: Callable[[], DenseCheckpoint]) -> CachedDense:
        path = self.entry(key)
        if (path / "meta.json").exists():
            return CachedDense(self._load(path), key, path, trained_here=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            if (path / "meta.json").exists():  # another trial trained it while we waited
                return CachedDense(self._load(path), key, path, trained_here=False)
            checkpoint = train()
            self._store(path, checkpoint)
        return CachedDense(checkpoint, key, path, trained_here=True)

    @staticmethod
    def _load(path: Path) -> DenseCheckpoint:
        meta = json.loads((path / "meta.json").read_text())
        return DenseCheckpoint(
            init=load_file(path / "init.safetensors"),
            final=load_file(path / "final.safetensors"),
            metrics=meta["metrics"],
            rewind={
                int(j): load_file(path / f"rewind-{j}.safetensors")
                for j in meta.get("rewind_iterations", [])
            },
        )

    @staticmethod
    def _store(path: Path, checkpoint: DenseCheckpoint) -> None:
        staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        save_file(_contiguous(checkpoint.init), staging / "init.safetensors")
        save_file(_contiguous(checkpoint.final), staging / "final.safetensors")
        for iteration, state in checkpoint.rewind.items():
            save_file(_contiguous(state), staging / f"rewind-{iteration}.safetensors")
        meta = {
            "metrics": checkpoint.metrics,
            "rewind_iterations": sorted(checkpoint.rewind),
            "created": time.time(),
            "pid": os.getpid(),
        }
        (staging / "meta.json").write_text(json.dumps(meta, indent=2))
        shutil.rmtree(path, ignore_errors=True)  # a stale entry without meta.json
        os.replace(staging, path)


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().cpu().contiguous() for name, tensor in state.items()}
