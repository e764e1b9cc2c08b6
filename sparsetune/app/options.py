"""The application layer's typed options: one configuration (`sparsetune prune`) and the MLflow
UI (`sparsetune ui`).

The one declaration of these commands' options: their flags are generated from these fields
(name, type, help = description, default), as `search`'s are from `SweepConfig`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from sparsetune.catalog import METHODS, short_name
from sparsetune.config import (
    DEFAULT_CACHE_DIR,
    DEFAULT_DATA_DIR,
    DEFAULT_VAL_SIZE,
    Frozen,
    MethodName,
    UserPath,
)
from sparsetune.search.options import (
    DEFAULT_DATASET,
    TRACKING_ENV,
    TRACKING_HELP,
    CacheDirOption,
    DataDirOption,
    DatasetOption,
    DeviceOption,
    MemoryBudgetOption,
    ModelOption,
    SeedOption,
    SubsetOption,
    TrackingUriOption,
    ValSizeOption,
    WeightsOption,
    checked_paths,
    existing_weights,
    later_default,
    marks,
    one_of,
    tracking_uri_from_environment,
)
from sparsetune.tracking.ui import DEFAULT_PORT
from sparsetune.validation import register_for_messages


class PruneOptions(Frozen):
    """`sparsetune prune`'s options; the trial itself is then validated as a TrialConfig."""

    model: ModelOption
    method: MethodName = Field(
        "magnitude",
        description=one_of(METHODS.names()),
        json_schema_extra=marks(choices=METHODS.names()),
    )
    dataset: DatasetOption = DEFAULT_DATASET
    params: dict[str, Any] = Field(
        {},
        description="a method parameter as key=value (YAML value); repeat for more",
        json_schema_extra=marks(flag="--set"),
    )
    epochs: int | None = later_default(
        "dense epochs; the method's *epochs knobs scale with them", "the paper's", ge=1
    )
    subset: SubsetOption = None
    memory_budget_gb: MemoryBudgetOption = None
    data_dir: DataDirOption = DEFAULT_DATA_DIR
    out: UserPath | None = later_default(
        "output folder", "./sparsetune-runs/prune-<model>-<method>"
    )
    cache_dir: CacheDirOption = DEFAULT_CACHE_DIR
    tracking_uri: TrackingUriOption | None = later_default(
        f"record an MLflow run there: {TRACKING_HELP}", f"${TRACKING_ENV}, else no MLflow"
    )
    experiment: str = Field("sparsetune-prune", description="MLflow experiment")
    val_size: ValSizeOption = DEFAULT_VAL_SIZE
    seed: SeedOption = Field(0, description="seed of initialisation and training (0 to 2**32-1)")
    device: DeviceOption = "auto"
    weights: WeightsOption = None

    _weights_exist = field_validator("weights")(existing_weights)

    @model_validator(mode="before")
    @classmethod
    def _tracking_env(cls, data: Any) -> Any:
        return tracking_uri_from_environment(data)

    _path_kinds = checked_paths({"data_dir": "folder", "cache_dir": "folder", "out": "folder"})

    @property
    def folder(self) -> Path:
        """Where the run's tickets and result.json go."""
        default = f"prune-{short_name(self.model)}-{self.method}"
        return (self.out or Path("sparsetune-runs") / default).resolve()


class UiOptions(Frozen):
    """`sparsetune ui`'s options: which store to serve, and where."""

    out: UserPath | None = later_default("sweep folder", "the one sweep under ./sparsetune-runs")
    tracking_uri: str | None = Field(
        None, description="MLflow store URI to serve instead (e.g. sqlite:///path/mlflow.db)"
    )
    port: int = Field(DEFAULT_PORT, ge=1, le=65535, description="port to listen on")
    host: str = Field(
        "127.0.0.1", description="interface to bind (0.0.0.0 opens it to the network)"
    )


register_for_messages(PruneOptions)
register_for_messages(UiOptions)
