"""The application layer's typed options for one configuration (`sparsetune prune`)."""

from __future__ import annotations

from pydantic import Field

from sparsetune.config import (
    DEFAULT_CACHE_DIR,
    DEFAULT_DATA_DIR,
    DEFAULT_VAL_SIZE,
    DatasetName,
    Frozen,
    MethodName,
    ModelName,
    UserPath,
)
from sparsetune.validation import register_for_messages


class PruneOptions(Frozen):
    """`sparsetune prune`'s options; the trial itself is then validated as a TrialConfig."""

    model: ModelName
    dataset: DatasetName
    method: MethodName

    out: UserPath | None = None
    cache_dir: UserPath = DEFAULT_CACHE_DIR
    data_dir: UserPath = DEFAULT_DATA_DIR
    epochs: int | None = Field(None, ge=1, description="dense training epochs")
    subset: int | None = Field(None, ge=1)
    val_size: int = Field(DEFAULT_VAL_SIZE, ge=1)


register_for_messages(PruneOptions)
