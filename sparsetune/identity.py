"""Experiment identity: canonical JSON -> content hash.

A trial's hash covers what changes its result (model, data, recipe, method and the parameters
that differ from the method's defaults) and leaves out where or how it runs (seed, device, data
folder). The dense stage has a key of its own that depends only on model, data, recipe and seed,
so every trial that prunes the same dense network shares one training of it. Golden-hash tests pin
this scheme: changing it orphans every cache entry and MLflow tag that users already have.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sparsetune.config import TrialConfig

HASH_LENGTH = 16


def canonical_json(value: Any) -> str:
    """Key-sorted, whitespace-free JSON: equal values always give equal strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def content_hash(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:HASH_LENGTH]


def _data_identity(config: TrialConfig) -> dict[str, Any]:
    return config.data.model_dump(mode="json", exclude={"data_dir"}, exclude_defaults=True) | {
        "name": config.data.name
    }


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
    )
