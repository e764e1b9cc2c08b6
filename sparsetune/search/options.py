"""`sparsetune search`'s options, and the cluster settings among them (`--address`, `--storage`).

They live with the search layer that runs them: the objective and sampler names are checked
against this layer's own tables. No Ray, Optuna or torch is imported here, so a whole sweep is
validated before any heavy library loads.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator, model_validator

from sparsetune.config import (
    DEFAULT_CACHE_DIR,
    DEFAULT_DATA_DIR,
    DEFAULT_VAL_SIZE,
    DataConfig,
    DatasetName,
    Device,
    Frozen,
    ModelName,
    UserPath,
)
from sparsetune.search.choices import check_sampler, resolve_early_stop
from sparsetune.search.objectives import REQUIRED_OPTION, get_objective
from sparsetune.validation import register_for_messages


def _check_objective(name: str) -> str:
    return get_objective(name).name


ObjectiveName = Annotated[str, AfterValidator(_check_objective)]


class SweepConfig(Frozen):
    """Everything `sparsetune search` needs, checked before any folder or run is created."""

    model: ModelName
    dataset: DatasetName
    objective: ObjectiveName = "pareto"
    min_compression: float | None = Field(None, ge=1, description="max-acc: the least compression")
    max_drop: float | None = Field(
        None, ge=0, le=100, description="max-compression: most accuracy points below dense"
    )
    sampler: str = "auto"
    early_stop: str = "auto"
    budget_minutes: float | None = Field(None, gt=0, description="end the sweep after this long")
    enqueue: str | None = Field(None, min_length=1, description="points to try first, or 'paper'")
    trials: int = Field(8, ge=1)
    max_concurrent: int = Field(2, ge=1)
    cpus_per_trial: float = Field(1.0, gt=0)
    space: UserPath | None = None
    methods: list[str] | None = None
    data_dir: UserPath = DEFAULT_DATA_DIR
    subset: int | None = Field(None, ge=1)
    val_size: int = Field(DEFAULT_VAL_SIZE, ge=1)
    epochs: int | None = Field(None, ge=0, description="dense training epochs")
    out: UserPath | None = None
    experiment: str | None = Field(None, min_length=1)
    tracking_uri: str | None = None
    cache_dir: UserPath = DEFAULT_CACHE_DIR
    seed: int = 0
    device: Device = "auto"
    address: str | None = None
    storage: str | None = Field(None, min_length=1, description="a path or URI every node reaches")
    gpus_per_trial: float | None = Field(None, ge=0, description="GPUs per trial; 0.25 packs 4")

    @field_validator("address")
    @classmethod
    def _known_address_form(cls, address: str | None) -> str | None:
        return None if address is None else check_ray_address(address)

    @field_validator("storage")
    @classmethod
    def _known_storage_form(cls, storage: str | None) -> str | None:
        return None if storage is None else check_storage(storage)

    @field_validator("gpus_per_trial")
    @classmethod
    def _whole_above_one(cls, gpus: float | None) -> float | None:
        # Ray shares a GPU between trials only below one: 1.5 GPUs is no placement it can make.
        if gpus is not None and gpus > 1 and not gpus.is_integer():
            raise ValueError(f"above 1 it must be a whole number of GPUs (got {gpus:g})")
        return gpus

    @model_validator(mode="after")
    def _options_fit_the_objective(self) -> SweepConfig:
        for option in ("min_compression", "max_drop"):
            needed_by = [name for name, needs in REQUIRED_OPTION.items() if needs == option]
            flag = "--" + option.replace("_", "-")
            if getattr(self, option) is not None and self.objective not in needed_by:
                raise ValueError(f"{flag} applies to --objective {needed_by[0]} only")
            if getattr(self, option) is None and self.objective in needed_by:
                example = "10" if option == "min_compression" else "1"
                raise ValueError(f"--objective {self.objective} needs {flag} (e.g. {example})")
        check_sampler(self.sampler)
        resolve_early_stop(self.early_stop, get_objective(self.objective))
        for option in ("out", "cache_dir"):
            value = getattr(self, option)
            if value is not None and looks_like_uri(value):
                flag = "--" + option.replace("_", "-")
                raise ValueError(
                    f"{flag} {value}: a folder path is needed here, not a URI (trials read and "
                    "write it as files); put a URI in --storage for Ray's results only"
                )
        folder = self.storage_dir
        if folder is not None:
            # Set here, not derived on each read: the recorded sweep (sweep.json, the resume
            # state) then names the folders it used, and a resumed run finds the same ones.
            if "cache_dir" not in self.model_fields_set:
                object.__setattr__(self, "cache_dir", folder / "cache")
            if self.out is None:
                object.__setattr__(self, "out", folder / self.experiment_name)
        if self.gpus_per_trial and self.device == "cpu":
            raise ValueError(
                f"--gpus-per-trial {self.gpus_per_trial:g} with --device cpu: trials would "
                "hold GPUs they never use; drop one of the two"
            )
        return self

    def data_config(self) -> DataConfig:
        return DataConfig(
            name=self.dataset, data_dir=self.data_dir, subset=self.subset, val_size=self.val_size
        )

    @property
    def experiment_name(self) -> str:
        return self.experiment or f"{self.model}-{self.dataset}-{self.objective}"

    @property
    def storage_dir(self) -> Path | None:
        """`--storage` when it is a folder (a plain path or file://), else None."""
        if self.storage is None:
            return None
        if self.storage.startswith("file://"):
            return Path(self.storage.removeprefix("file://")).expanduser().resolve()
        if "://" in self.storage:
            return None
        return Path(self.storage).expanduser().resolve()

    @property
    def sweep_dir(self) -> Path:
        return (self.out or Path("sparsetune-runs") / self.experiment_name).resolve()

    def ray_storage(self, sweep_dir: Path) -> str:
        """Ray Tune's `storage_path`: the sweep folder's `ray/`, or under a URI `--storage`."""
        if self.storage is not None and self.storage_dir is None:
            return f"{self.storage.rstrip('/')}/{self.experiment_name}/ray"
        return str(sweep_dir / "ray")


# The address forms: Ray's "auto" (RAY_ADDRESS, else a cluster started on this machine) and
# HOST:PORT (the head's GCS), and Ray Client's ray://HOST:PORT, under which the sweep's driver
# runs on the head (sparsetune/search/client.py).
_HOST_PORT = re.compile(r"^(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})$")
RAY_CLIENT_PREFIX = "ray://"
URI_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):/")
# Filesystems that pyarrow (Ray Tune's storage layer) resolves from a URI; file:// is a folder.
STORAGE_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")


def is_ray_client(address: str | None) -> bool:
    return bool(address) and address.startswith(RAY_CLIENT_PREFIX)


def check_ray_address(address: str) -> str:
    if address == "auto":
        return address
    host_port = address.removeprefix(RAY_CLIENT_PREFIX)
    match = _HOST_PORT.match(host_port)
    if match is None or not 0 < int(match["port"]) < 65536:
        raise ValueError(
            "expected auto, HOST:PORT of the head node (e.g. 10.0.0.5:6379) or "
            "ray://HOST:PORT of its Ray Client server (e.g. ray://10.0.0.5:10001)"
        )
    return address


def check_storage(storage: str) -> str:
    match = URI_SCHEME.match(storage)
    if match is None or "://" not in storage:
        return storage  # a folder path
    scheme = match["scheme"].lower()
    if scheme not in STORAGE_SCHEMES:
        raise ValueError(
            f"unknown filesystem {scheme}://; use a folder every node reaches or a "
            f"URI of {', '.join(s + '://' for s in STORAGE_SCHEMES)}"
        )
    if not storage.split("://", 1)[1].strip("/"):
        raise ValueError("the URI names no bucket or folder, e.g. s3://bucket/sweeps")
    return storage


def looks_like_uri(path: Path | str) -> bool:
    """True for "s3://b/x", also after pathlib turned it into "s3:/b/x"."""
    return URI_SCHEME.match(str(path)) is not None


register_for_messages(SweepConfig)
