"""The `sparsetune` entry of a safetensors header: what a file holds and how to rebuild its model.

safetensors headers carry string-to-string metadata only, so the description is one JSON object
under the key "sparsetune". Every file sparsetune writes has one: a ticket ("format": "ticket",
written by each trial round) and the three export formats ("dense", "sparse", "structured").
Common keys: `model` (registered name or "package.module:factory"), `input_shape`, `num_classes`,
`architecture`, and the round's metrics (`val_acc`, `test_acc`, `compression`, `flops_ratio`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

HEADER_KEY = "sparsetune"
EXPORT_FORMATS = ("dense", "sparse", "structured")
FORMATS = ("ticket", *EXPORT_FORMATS)


def _finite(value: Any) -> Any:
    """JSON has no infinity (compression is inf when nothing survives): write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def encode_header(info: dict[str, Any]) -> dict[str, str]:
    """`info` as safetensors metadata. Canonical JSON (sorted keys, no spaces): the same info
    always gives the same bytes, so a file's size can be computed without writing it."""
    return {HEADER_KEY: json.dumps(_finite(info), sort_keys=True, separators=(",", ":"))}


def read_header(path: Path) -> dict[str, Any]:
    """The `sparsetune` header of a safetensors file; one-line ValueError when the file is not
    one sparsetune wrote."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path}: not a safetensors file ({error})") from None
    raw = metadata.get(HEADER_KEY)
    if raw is None:
        raise ValueError(
            f"{path}: has no sparsetune header (not written by sparsetune, or by a version "
            "before tickets described themselves); re-run the trial to get a ticket"
        )
    try:
        info = json.loads(raw)
    except json.JSONDecodeError:
        raise ValueError(f"{path}: its sparsetune header is not valid JSON") from None
    if not isinstance(info, dict) or info.get("format") not in FORMATS:
        found = info.get("format") if isinstance(info, dict) else None
        raise ValueError(
            f"{path}: unknown sparsetune format {found!r}; expected one of {', '.join(FORMATS)}"
        )
    missing = [key for key in ("model", "input_shape", "num_classes") if key not in info]
    if missing:
        raise ValueError(f"{path}: its sparsetune header lacks {', '.join(missing)}")
    return info
