"""The dense stage, trained once per (model, data, recipe, seed) and shared by every trial.

An entry is a folder `<root>/dense/<key>/` holding the initial and trained weights (safetensors),
the rewind checkpoints theta_j taken during that same training (lottery tickets rewind to them,
so no trial ever trains the dense model a second time), and `meta.json`. A file lock makes
concurrent trials that need the same entry train it once: the first trains, the others wait, then
read. The entry is written under a temporary name and renamed into place in one step, so no
reader ever sees a torn entry.

`meta.json`, written last, records each weight file's size and sha256; a reader checks every file
it reads against them (on the bytes it then decodes, so nothing changes in between). An entry
that fails (a file cut short, bytes overwritten in place, `meta.json` broken, a rewind checkpoint
missing, an entry from before the checksums) is never used: it is trained again and replaced,
with one warning line naming the entry, the file and what is wrong. A disk that flips bits must
not become "the pruned network is worse than expected".
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from filelock import FileLock
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load, save

from sparsetune.atomic import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

# Where the dense training keeps theta_j for rewinding (Frankle et al. 2020: a few hundred to a few
# thousand iterations for deep nets; j = 0, the initialisation, is always there). A fixed grid keeps
# the dense key free of the lottery's knobs, so every rewinding trial shares one dense training.
REWIND_ITERATIONS = (100, 200, 500, 1000, 2000)


def dense_steps(train_size: int, batch_size: int, epochs: int) -> int:
    """The optimiser steps of a dense training: `epochs` passes over `train_size` examples in
    batches of `batch_size`, the last batch of each pass possibly smaller (`train.loop.fit`)."""
    return epochs * math.ceil(train_size / batch_size)


def rewind_points(steps: int | None) -> tuple[int, ...]:
    """The j with a theta_j after a dense training of `steps` optimiser steps: 0 (theta_0) and
    every point of REWIND_ITERATIONS it reaches. None: no training at all (`--weights`), so 0
    only."""
    return (0, *(j for j in REWIND_ITERATIONS if steps is not None and j <= steps))


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


class DamagedEntry(Exception):
    """A cache entry that must not be used: `file` (a name in the entry) and what is wrong."""

    def __init__(self, file: str, reason: str):
        super().__init__(f"{file}: {reason}")


class _FileRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class _Meta(BaseModel):
    """What `meta.json` holds; read back through this model, so a crafted or broken one is a
    damaged entry rather than a KeyError far away."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    metrics: dict[str, float]
    rewind_iterations: list[int]
    files: dict[str, _FileRecord]  # every weight file of the entry, by name
    created: float
    pid: int
    sha256: str  # of the rest of meta.json (`_digest`)


class DenseCache:
    def __init__(self, root: Path):
        self.root = Path(root).expanduser()

    def entry(self, key: str) -> Path:
        return self.root / "dense" / key

    def get_or_train(self, key: str, train: Callable[[], DenseCheckpoint]) -> CachedDense:
        path = self.entry(key)
        damaged = False
        if (path / "meta.json").exists():
            checkpoint = self._read(path, key, warn=True)
            if checkpoint is not None:
                return CachedDense(checkpoint, key, path, trained_here=False)
            damaged = True
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            # Another trial may have trained (or replaced a damaged entry) while we waited; a
            # damaged entry found above was warned about once already.
            if (path / "meta.json").exists():
                checkpoint = self._read(path, key, warn=not damaged)
                if checkpoint is not None:
                    return CachedDense(checkpoint, key, path, trained_here=False)
            checkpoint = train()
            self._store(path, checkpoint)
        return CachedDense(checkpoint, key, path, trained_here=True)

    @classmethod
    def _read(cls, path: Path, key: str, warn: bool) -> DenseCheckpoint | None:
        """The entry's checkpoint, every file checked; None (with a warning) if it is damaged."""
        try:
            return cls._load(path)
        except DamagedEntry as damage:
            if warn:
                log.warning("dense cache entry %s is damaged (%s); retraining", key, damage)
            return None

    @staticmethod
    def _load(path: Path) -> DenseCheckpoint:
        meta = _read_meta(path)
        rewind_files = {j: f"rewind-{j}.safetensors" for j in meta.rewind_iterations}
        names = ["init.safetensors", "final.safetensors", *rewind_files.values()]
        unlisted = [name for name in names if name not in meta.files]
        if unlisted:
            raise DamagedEntry("meta.json", f"no checksum for {unlisted[0]}")
        return DenseCheckpoint(
            init=_read_weights(path, "init.safetensors", meta.files["init.safetensors"]),
            final=_read_weights(path, "final.safetensors", meta.files["final.safetensors"]),
            metrics=meta.metrics,
            rewind={
                j: _read_weights(path, name, meta.files[name]) for j, name in rewind_files.items()
            },
        )

    @staticmethod
    def _store(path: Path, checkpoint: DenseCheckpoint) -> None:
        staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            _write_entry(staging, checkpoint)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)  # no half-written folder stays behind
            raise
        # A damaged or stale entry (no meta.json) moves aside first, so that the new one takes its
        # name in one rename and a reader never finds half of either.
        old = path.with_name(f".{path.name}.{os.getpid()}.old")
        if path.exists() or path.is_symlink():
            _remove(old)
            os.replace(path, old)
        os.replace(staging, path)
        _remove(old)


def _remove(path: Path) -> None:
    """Remove what is at `path` (a folder, a file, a link), if anything."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _write_entry(folder: Path, checkpoint: DenseCheckpoint) -> None:
    """Every weight file, then `meta.json` with their sizes and sha256s, last."""
    states = {"init.safetensors": checkpoint.init, "final.safetensors": checkpoint.final}
    states |= {f"rewind-{j}.safetensors": state for j, state in checkpoint.rewind.items()}
    files = {}
    for name, state in states.items():
        data = save(_contiguous(state))
        atomic_write_bytes(folder / name, data)
        files[name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    body = {
        "metrics": checkpoint.metrics,
        "rewind_iterations": sorted(checkpoint.rewind),
        "files": files,
        "created": time.time(),
        "pid": os.getpid(),
    }
    meta = body | {"sha256": _digest(body)}
    atomic_write_text(folder / "meta.json", json.dumps(meta, indent=2))


_MAX_META_BYTES = 1 << 20  # a real one is a few hundred bytes; never read a huge file whole


def _read_meta(path: Path) -> _Meta:
    """`meta.json`, checked: JSON of the expected shape, and its own sha256 (over the rest of
    it) matching, so that a metric changed in place is caught like a weight changed in place."""
    try:
        size = (path / "meta.json").stat().st_size
        if size > _MAX_META_BYTES:
            raise DamagedEntry("meta.json", f"{size} bytes, too large for a cache record")
        record = json.loads((path / "meta.json").read_bytes())
    except FileNotFoundError:
        raise DamagedEntry("meta.json", "missing") from None
    except OSError as error:
        raise DamagedEntry("meta.json", f"cannot be read ({error.strerror})") from None
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError are ValueErrors
        raise DamagedEntry("meta.json", "not valid JSON") from None
    try:
        meta = _Meta.model_validate(record)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        raise DamagedEntry("meta.json", f"{where}: {first['msg']}"[:120]) from None
    if _digest({name: value for name, value in record.items() if name != "sha256"}) != meta.sha256:
        raise DamagedEntry("meta.json", "sha256 mismatch: bytes changed in place")
    return meta


def _digest(body: dict) -> str:
    """sha256 of a JSON object, canonically written (floats round-trip exactly through JSON)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _read_weights(path: Path, name: str, record: _FileRecord) -> dict[str, torch.Tensor]:
    """A weight file, decoded from the very bytes whose size and sha256 were checked."""
    try:
        data = (path / name).read_bytes()
    except FileNotFoundError:
        raise DamagedEntry(name, "missing") from None
    except OSError as error:
        raise DamagedEntry(name, f"cannot be read ({error.strerror})") from None
    if len(data) != record.bytes:
        raise DamagedEntry(name, f"{len(data)} bytes, {record.bytes} expected")
    if hashlib.sha256(data).hexdigest() != record.sha256:
        raise DamagedEntry(name, "sha256 mismatch: bytes changed in place")
    try:
        return load(data)
    except SafetensorError as error:  # its checksum matched: written damaged
        raise DamagedEntry(name, f"not a safetensors file ({error})") from None


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().cpu().contiguous() for name, tensor in state.items()}
