"""Experiment identity: canonical JSON -> content hash.

A trial's hash covers what changes its result (model, data, recipe, method and the parameters
that differ from the method's defaults) and leaves out where or how it runs (seed, device, data
folder). The dense stage has a key of its own that depends only on model, data, recipe and seed,
so every trial that prunes the same dense network shares one training of it. A trial that starts
from `--weights FILE` adds the file's content hash to both (not its path: two files never share an
entry); without weights the keys are as they were. Golden-hash tests pin this scheme: changing
it orphans every cache entry and MLflow tag that users already have.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from sparsetune.catalog import IMAGEFOLDER_PREFIX, NPZ_PREFIX
from sparsetune.config import TrialConfig

HASH_LENGTH = 16


def canonical_json(value: Any) -> str:
    """Key-sorted, whitespace-free JSON: equal values always give equal strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def content_hash(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:HASH_LENGTH]


def file_hash(path: Path) -> str:
    """Content hash of a file (sha256, shortened like the other hashes)."""
    stat = path.stat()
    return _file_hash(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=32)
def _file_hash(path: str, size: int, mtime_ns: int) -> str:  # size, mtime: a changed file rehashes
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:HASH_LENGTH]


def _weights_identity(config: TrialConfig) -> dict[str, Any]:
    return {} if config.weights is None else {"weights": file_hash(config.weights)}


@lru_cache(maxsize=8)
def folder_listing_hash(folder: str) -> str:
    """Hash of a folder's file listing (relative path, size, modification time): a changed,
    added or removed file changes it, without reading every image. Once per process."""
    root = Path(folder)
    listing = sorted(
        (str(path.relative_to(root)), path.stat().st_size, path.stat().st_mtime_ns)
        for path in root.rglob("*")
        if path.is_file()
    )
    return content_hash(listing)


def _data_content(name: str) -> dict[str, Any]:
    """User data read from a file or a folder: what is in it joins the identity, so a dense stage
    trained on an overwritten file is never reused. A factory is known by its import path only."""
    if name.startswith(NPZ_PREFIX):
        return {"content": file_hash(Path(name.removeprefix(NPZ_PREFIX)))}
    if name.startswith(IMAGEFOLDER_PREFIX):
        return {"content": folder_listing_hash(name.removeprefix(IMAGEFOLDER_PREFIX))}
    return {}


def _data_identity(config: TrialConfig) -> dict[str, Any]:
    values = config.data.model_dump(mode="json", exclude={"data_dir"}, exclude_defaults=True)
    return values | {"name": config.data.name} | _data_content(config.data.name)


def dense_key(config: TrialConfig) -> str:
    """Key of the dense pre-training stage: model, data, training recipe and seed."""
    return content_hash(
        {
            "stage": "dense",
            "model": config.model,
            "data": _data_identity(config),
            "train": config.train.model_dump(mode="json", exclude_defaults=True),
            "seed": config.seed,
        }
        | _weights_identity(config)
    )


def trial_hash(config: TrialConfig) -> str:
    """Hash of a trial's configuration, seed excluded (repeats of a config share it)."""
    return content_hash(
        {
            "model": config.model,
            "data": _data_identity(config),
            "train": config.train.model_dump(mode="json", exclude_defaults=True),
            "method": config.method,
            "params": config.params,
        }
        | _weights_identity(config)
    )
