"""Typed, frozen configuration, validated at the edge.

Every field has a type and a range; unknown keys are rejected. Nothing here imports torch: the CLI
validates a whole sweep before any heavy library loads. Method parameters are validated by the
method's own `Config` (see `sparsetune.pruning`), which this module resolves lazily.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

# Expanded here: pydantic does not run validators on defaults, so "~" would stay literal.
DEFAULT_DATA_DIR = Path(
    os.environ.get("SPARSETUNE_DATA_DIR", "~/.cache/sparsetune/data")
).expanduser()
DEFAULT_CACHE_DIR = Path(
    os.environ.get("SPARSETUNE_CACHE_DIR", "~/.cache/sparsetune/cache")
).expanduser()

Device = Literal["auto", "cpu", "cuda"]


# Names are checked against their registries; the imports stay inside so that validating a
# name never loads torch (the registries resolve lazily).
def _check_model(name: str) -> str:
    # A registered name, or "package.module:factory" (imported now, so a typo fails here).
    from sparsetune.models import check_model_name

    return check_model_name(name)


def _check_dataset(name: str) -> str:
    from sparsetune.data import DATASETS

    return DATASETS.check(name)


def _check_method(name: str) -> str:
    from sparsetune.pruning import METHODS

    return METHODS.check(name)


def _check_objective(name: str) -> str:
    from sparsetune.search.objectives import get_objective

    return get_objective(name).name


ModelName = Annotated[str, AfterValidator(_check_model)]
DatasetName = Annotated[str, AfterValidator(_check_dataset)]
MethodName = Annotated[str, AfterValidator(_check_method)]
ObjectiveName = Annotated[str, AfterValidator(_check_objective)]
UserPath = Annotated[Path, AfterValidator(Path.expanduser)]


class Frozen(BaseModel):
    """Base of every config: immutable, and unknown keys are an error rather than a silent no-op."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticOptions(Frozen):
    """Shape of the `synthetic` dataset: seeded Gaussian class prototypes plus noise."""

    input_shape: tuple[int, ...] = (1, 28, 28)
    num_classes: int = Field(10, ge=2)
    # Sized so the default 5,000-example validation split still leaves 3,000 to train on;
    # noise 6 keeps the task learnable but short of 100% for LeNet-300-100.
    train_size: int = Field(8000, ge=10)
    test_size: int = Field(1000, ge=10)
    noise: float = Field(6.0, ge=0)

    @field_validator("input_shape")
    @classmethod
    def _positive_dims(cls, shape: tuple[int, ...]) -> tuple[int, ...]:
        if not shape or any(d <= 0 for d in shape):
            raise ValueError("every dimension must be a positive integer, e.g. [1, 28, 28]")
        return shape


class DataConfig(Frozen):
    name: DatasetName
    data_dir: UserPath = DEFAULT_DATA_DIR
    subset: int | None = Field(None, ge=1, description="train on this many examples only")
    val_size: int = Field(5000, ge=1, description="examples held out of train for validation")
    split_seed: int = 0
    synthetic: SyntheticOptions = SyntheticOptions()


class TrainConfig(Frozen):
    """A training recipe: the dense stage uses it as is; methods derive their retraining from it."""

    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.05, gt=0, le=10)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0, le=1)
    schedule: Literal["constant", "step", "cosine"] = "cosine"
    step_epochs: int = Field(10, ge=1, description="step schedule: epochs between decays")
    step_gamma: float = Field(0.1, gt=0, le=1)
    epochs: int = Field(10, ge=0)
    batch_size: int = Field(128, ge=1)


class TrialConfig(Frozen):
    """One point of the search: model, data, dense recipe, method and its parameters."""

    model: ModelName
    data: DataConfig
    train: TrainConfig = TrainConfig()
    method: MethodName = "magnitude"
    params: dict[str, Any] = {}
    seed: int = 0
    device: Device = "auto"

    @model_validator(mode="after")
    def _valid_params(self) -> TrialConfig:
        # Validate (and normalise) the method's parameters with the method's own Config, so a
        # typo in a key or an out-of-range value fails here, not in the middle of a trial.
        config_class = method_config_class(self.method)
        try:
            validated = config_class.model_validate(self.params)
        except ValidationError as error:
            # Re-raised as a plain message: pydantic would otherwise report the method's field
            # at the top level, next to TrialConfig's keys, and list those as the allowed ones.
            problem = describe_validation_error(error, "params", config_class)
            raise ValueError(f"method {self.method}: {problem}") from None
        params = validated.model_dump(exclude_defaults=True)
        object.__setattr__(self, "params", params)
        return self

    def method_config(self) -> Any:
        return method_config_class(self.method).model_validate(self.params)


def method_config_class(method: str) -> type[BaseModel]:
    from sparsetune.pruning import METHOD_CONFIGS

    return METHOD_CONFIGS[method]


def describe_validation_error(
    error: ValidationError, prefix: str = "", model: type[BaseModel] | None = None
) -> str:
    """One line for the first problem of a pydantic error: field path, what is wrong, the input.
    `model` is the class validated, for listing allowed keys when it is not registered."""
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    where = ".".join(part for part in (prefix, location) if part)
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
        allowed = _allowed_keys(error, model)
        if allowed:
            message += f"; allowed keys: {', '.join(allowed)}"
    elif (
        "input" in first
        and first["loc"]  # a whole-model check: its input is the whole model, not one value
        and first["type"] != "missing"
        and repr(first["input"]) not in message
    ):
        message += f" (got {first['input']!r})"
    return f"{where}: {message}" if where else message


def _allowed_keys(error: ValidationError, model: type[BaseModel] | None) -> list[str]:
    model = model or _MODELS_BY_TITLE.get(error.title)
    if model is None:
        return []
    location = error.errors()[0]["loc"][:-1]
    for part in location:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)


_MODELS_BY_TITLE: dict[str, type[BaseModel]] = {}


def register_for_messages(model: type[BaseModel]) -> type[BaseModel]:
    """Let `describe_validation_error` list the allowed keys of `model` on an unknown key."""
    _MODELS_BY_TITLE[model.__name__] = model
    return model


for _model in (SyntheticOptions, DataConfig, TrainConfig, TrialConfig):
    register_for_messages(_model)


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
    val_size: int = Field(5000, ge=1)


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
    val_size: int = Field(5000, ge=1)
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
        from sparsetune.search.choices import check_sampler, resolve_early_stop
        from sparsetune.search.objectives import REQUIRED_OPTION, get_objective

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
register_for_messages(PruneOptions)
