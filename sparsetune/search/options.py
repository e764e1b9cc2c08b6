"""`sparsetune search`'s options, and the cluster settings among them (`--address`, `--storage`).

They live with the search layer that runs them: the objective and sampler names are checked
against this layer's own tables. No Ray, Optuna or torch is imported here, so a whole sweep is
validated before any heavy library loads.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, get_args

from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator

from sparsetune.catalog import DATASETS, MODELS, short_name
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
from sparsetune.search.choices import EARLY_STOPS, SAMPLERS, check_sampler, resolve_early_stop
from sparsetune.search.objectives import OBJECTIVES, REQUIRED_OPTION, get_objective
from sparsetune.tracking import TRACKING_ENV
from sparsetune.validation import PathKind, check_path_kind, register_for_messages


def _check_objective(name: str) -> str:
    return get_objective(name).name


ObjectiveName = Annotated[str, AfterValidator(_check_objective)]


# -- what an option's field says besides its type: read by the CLI and by the resume check ------
# A field's `description` is its help text; `json_schema_extra` may add these marks.
IDENTITY = "identity"  # the option belongs to the sweep's identity: a resume cannot change it
SHOWN_DEFAULT = "shown_default"  # how help describes a default computed later (None here)
FLAG = "flag"  # the flag, where it is not the field's name (`params` is `--set key=value`)
CHOICES = "choices"  # the closed set of values, shown and completed as such (Literal: its own)


def marks(
    *,
    identity: bool = False,
    shown_default: str | None = None,
    flag: str | None = None,
    choices: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A field's `json_schema_extra`: `identity` for an option a resume cannot change,
    `shown_default` for the help's words on a default computed when the option is None, `flag`
    for a flag not named after the field, `choices` for a string that takes one of a few names
    (checked by the field's own validator; the CLI shows and completes them)."""
    extra = {
        IDENTITY: identity or None,
        SHOWN_DEFAULT: shown_default,
        FLAG: flag,
        CHOICES: list(choices) if choices else None,
    }
    return {name: value for name, value in extra.items() if value is not None}


def later_default(description: str, shown_default: str, **constraints: Any) -> Any:
    """A field that defaults to None, its value worked out when the options are used (`out`:
    a folder named after the experiment); `shown_default` says in help what it will be."""
    return Field(
        None,
        description=description,
        json_schema_extra=marks(shown_default=shown_default),
        **constraints,
    )


def mark(field: Any, name: str) -> Any:
    """The value of mark `name` on a pydantic field (None when absent)."""
    extra = field.json_schema_extra
    return extra.get(name) if isinstance(extra, dict) else None


def identity_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of `model` marked as the sweep's identity, in declaration order."""
    return tuple(name for name, field in model.model_fields.items() if mark(field, IDENTITY))


def one_of(names: Sequence[str]) -> str:
    """ "a, b or c": the names a help text offers."""
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


# Help that names what can be chosen reads the catalog, so a plugin's names appear in it too.
MODEL_HELP = (
    f"{', '.join(MODELS.names())}, package.module:factory (called with those of input_shape "
    "and num_classes it takes), or torchvision:NAME"
)
DEFAULT_DATASET = "fashion-mnist"

# Options that `search` and `prune` share (`app.options.PruneOptions`), declared once here.
ModelOption = Annotated[ModelName, Field(description=MODEL_HELP)]
DatasetOption = Annotated[
    DatasetName,
    Field(
        description=f"{', '.join(DATASETS.names())}, npz:FILE, imagefolder:FOLDER or "
        "package.module:factory returning (train, test) (docs/data.md)"
    ),
]
DataDirOption = Annotated[UserPath, Field(description="torchvision data folder")]
SubsetOption = Annotated[int | None, Field(ge=1, description="train on this many examples")]
# Not an identity option: both data paths give the same examples in the same order.
MemoryBudgetOption = Annotated[
    float | None,
    Field(
        gt=0,
        allow_inf_nan=False,
        description=DataConfig.model_fields["memory_budget_gb"].description,
    ),
]
CacheDirOption = Annotated[UserPath, Field(description="dense-model cache")]
ValSizeOption = Annotated[int, Field(ge=1, description="validation examples held out of train")]
DeviceOption = Annotated[Device, Field(description=one_of(get_args(Device)))]
# numpy's and Optuna's samplers take seeds below 2**32 (torch would take more, and a negative
# seed it wraps around: -1 would silently be another seed): one range for every seed option.
SEED_LIMIT = 2**32
SeedOption = Annotated[int, Field(ge=0, lt=SEED_LIMIT)]
# Ray queues trials that it cannot place: more than a sweep could ever run is a typo, not a plan.
MAX_TRIALS = 100_000


def checked_paths(kinds: dict[str, PathKind], uri_fix: str = "") -> Any:
    """A field validator for the fields named in `kinds`: each path, when given, is of its kind
    (`validation.check_path_kind`: a file, or a folder) or not there yet, and is made absolute
    (trials run in other folders); a URI is refused (`uri_fix` says where one may go). A
    validator, not part of the fields' types: a sweep spec anchors its relative paths first."""

    def check(value: Path | None, info: Any) -> Path | None:
        if value is None:
            return None
        if looks_like_uri(value):
            raise ValueError(
                f"{value}: a folder path is needed here, not a URI (it is read and written as "
                f"files){uri_fix}"
            )
        return check_path_kind(value, kinds[info.field_name]).resolve()

    return field_validator(*kinds)(check)


# MLflow's tracking stores by URI scheme (a SQLAlchemy URI may name a driver after "+":
# postgresql+psycopg2://); its file store (a plain path, file:) is retired in MLflow 3, which
# refuses it unless MLFLOW_ALLOW_FILE_STORE is set.
TRACKING_SCHEMES = (
    "sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks", "databricks-uc", "uc"
)  # fmt: skip
_ANY_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):")
SQLITE_PREFIX = "sqlite:///"
TRACKING_HELP = "sqlite:///PATH (a file MLflow creates), or http(s)://HOST:PORT of a server"


def check_tracking_uri(uri: str) -> str:
    """`--tracking-uri`: a scheme MLflow stores runs at, checked without MLflow. A SQLite file
    must be a file (not a folder, a FIFO or a device), and its path is made absolute: trials
    run in other folders, and a relative path would give each its own database."""
    match = _ANY_SCHEME.match(uri)
    scheme = match["scheme"].lower().partition("+")[0] if match else ""
    if scheme in ("", "file"):
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("1", "true"):
            raise ValueError(
                f"{uri}: MLflow's file store (a plain path or file:) is retired in MLflow 3; "
                f"use {TRACKING_HELP}"
            )
        rest = uri.split(":", 1)[1] if scheme else uri
        path = Path(rest[2:] if scheme and rest.startswith("//") else rest).expanduser()
        try:
            return str(check_path_kind(path.resolve(), "folder"))
        except ValueError as error:
            raise ValueError(f"{uri}: the file store {error}") from None
    if scheme not in TRACKING_SCHEMES:
        raise ValueError(f"{uri}: MLflow stores no runs at {scheme}:; use {TRACKING_HELP}")
    if scheme != "sqlite":
        return uri
    path, _, query = uri.removeprefix(SQLITE_PREFIX).partition("?")
    if not uri.startswith(SQLITE_PREFIX) or path in ("", ":memory:"):
        raise ValueError(
            f"{uri}: names no database file, and trials in other processes cannot see an "
            "in-memory one; use sqlite:///PATH (e.g. sqlite:///runs/mlflow.db)"
        )
    # sqlite:////abs/x.db is absolute; sqlite:///x.db is relative to the current folder
    database = Path(path).expanduser().resolve()
    try:
        check_path_kind(database, "file")
    except ValueError as error:
        raise ValueError(f"{uri}: the database {error}") from None
    return f"{SQLITE_PREFIX}{database}" + (f"?{query}" if query else "")


def sqlite_file(uri: str | None) -> Path | None:
    """The database file of a `sqlite:///PATH` tracking URI (None for other stores)."""
    if uri is None or not uri.startswith(SQLITE_PREFIX):
        return None
    return Path(uri.removeprefix(SQLITE_PREFIX).partition("?")[0])


TrackingUriOption = Annotated[str, AfterValidator(check_tracking_uri)]
RAY_ADDRESS_ENV = "RAY_ADDRESS"


def tracking_uri_from_environment(data: Any) -> Any:
    """A model validator (mode="before"): options that leave `tracking_uri` out take
    $MLFLOW_TRACKING_URI, as MLflow's own tools do, checked here so that a bad value is refused
    by its name before anything is written. A key given as None (a recorded sweep's default
    store) stays None: the environment never moves a sweep that exists."""
    uri = os.environ.get(TRACKING_ENV, "").strip()
    if not isinstance(data, dict) or "tracking_uri" in data or not uri:
        return data
    try:
        checked = check_tracking_uri(uri)
    except ValueError as error:
        raise ValueError(
            f"--tracking-uri from ${TRACKING_ENV}: {error}; fix or unset {TRACKING_ENV}, or "
            "pass --tracking-uri"
        ) from None
    return {**data, "tracking_uri": checked}


def address_from_environment(data: Any) -> Any:
    """A model validator (mode="before"): a new sweep that leaves `address` out joins the cluster
    $RAY_ADDRESS names, as `ray.init()` does, as `--address auto`. A Ray job's entrypoint has it
    set (`ray job submit -- sparsetune sweep spec.yaml` runs on the cluster), and so does a
    RayJob's. An http(s) value is a Jobs API server (what `ray job submit` reads), not a cluster
    to join: left alone. A key given as None (a recorded sweep) stays None."""
    address = os.environ.get(RAY_ADDRESS_ENV, "").strip()
    if not isinstance(data, dict) or "address" in data or not address:
        return data
    if address.lower().startswith(("http://", "https://")):
        return data
    return {**data, "address": "auto"}


def existing_weights(path: Path | None) -> Path | None:
    """`--weights`: an existing file, made absolute (trials may run in another folder). A field
    validator, not part of the type: a sweep spec anchors its relative path first."""
    if path is None:
        return None
    if not path.exists():
        raise ValueError(f"{path}: no such file; pass a .safetensors file or a torch checkpoint")
    return check_path_kind(path, "file").resolve()


WeightsOption = Annotated[
    UserPath | None,
    Field(
        description="start from this trained model (.safetensors, or a torch state dict): it is "
        "the dense stage, not trained again (docs: 'Your own model')"
    ),
]


class SweepConfig(Frozen):
    """Everything `sparsetune search` needs, checked before any folder or run is created.

    The one declaration of the sweep's options: `sparsetune search`'s flags are generated from
    these fields (name, type, help = description, default), a sweep spec's keys are these fields
    (`search.spec`), and the fields marked `identity` are what a resume may not change
    (`search.state`). Fields are in the order `--help` lists them."""

    model: ModelOption = Field(json_schema_extra=marks(identity=True))
    weights: WeightsOption = Field(None, json_schema_extra=marks(identity=True))
    objective: ObjectiveName = Field(
        "pareto",
        description=one_of(list(OBJECTIVES)),
        json_schema_extra=marks(identity=True, choices=list(OBJECTIVES)),
    )
    min_compression: float | None = Field(
        None,
        ge=1,
        allow_inf_nan=False,
        description="max-acc: the least compression X (e.g. 10)",
        json_schema_extra=marks(identity=True),
    )
    max_drop: float | None = Field(
        None,
        ge=0,
        le=100,
        description="max-compression: most accuracy points below the dense model (e.g. 1)",
        json_schema_extra=marks(identity=True),
    )
    sampler: str = Field(
        "auto",
        description=f"{one_of(SAMPLERS)} (docs/search.md)",
        json_schema_extra=marks(choices=SAMPLERS),
    )
    early_stop: str = Field(
        "auto",
        description="auto (asha for one objective, else off), " + ", ".join(EARLY_STOPS[1:]),
        json_schema_extra=marks(choices=EARLY_STOPS),
    )
    budget_minutes: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="end the sweep after M minutes (running rounds finish)",
    )
    budget_epochs: int | None = Field(
        None,
        gt=0,
        description="start no trial once E training epochs are spent or planned (the dense "
        "stage not counted; docs/search.md)",
    )
    enqueue: str = Field(
        "auto",
        min_length=1,
        description="configurations to try first: a YAML file, 'paper' (the papers' settings), "
        "'auto' (those of them that fit the space, in a sweep of at least twice as many trials) "
        "or 'none'",
    )
    dataset: DatasetOption = Field(DEFAULT_DATASET, json_schema_extra=marks(identity=True))
    data_dir: DataDirOption = Field(DEFAULT_DATA_DIR, json_schema_extra=marks(identity=True))
    subset: SubsetOption = Field(None, json_schema_extra=marks(identity=True))
    memory_budget_gb: MemoryBudgetOption = None
    trials: int = Field(
        8,
        ge=1,
        le=MAX_TRIALS,
        description=f"number of trials (at most {MAX_TRIALS:,})",
        json_schema_extra=marks(identity=True),
    )
    max_concurrent: int = Field(2, ge=1, description="trials running at once")
    cpus_per_trial: float = Field(
        1.0,
        gt=0,
        allow_inf_nan=False,
        description="CPUs reserved per trial (at most what one machine has: this one, or the "
        "largest node of --address)",
    )
    space: UserPath | None = later_default(
        "search-space YAML", "the model's built-in space, else one generated from its layers"
    )
    methods: list[str] | None = Field(None, description="restrict to these methods")
    out: UserPath | None = later_default("sweep folder", "./sparsetune-runs/<experiment>")
    experiment: str | None = later_default(
        "experiment name", "<model>-<dataset>-<objective>", min_length=1
    )
    tracking_uri: TrackingUriOption | None = later_default(
        f"MLflow tracking URI: {TRACKING_HELP}",
        f"${TRACKING_ENV}, else a sqlite file in the sweep folder",
    )
    # The dense stage trained for a sweep is found again in its cache: another cache is another
    # dense model (trained anew, or a different one), so a resume cannot change it.
    cache_dir: CacheDirOption = Field(DEFAULT_CACHE_DIR, json_schema_extra=marks(identity=True))
    seed: SeedOption = Field(
        0,
        description="seed of the sampler and of training (0 to 2**32-1)",
        json_schema_extra=marks(identity=True),
    )
    epochs: int | None = Field(
        None,
        ge=0,
        description="dense training epochs",
        json_schema_extra=marks(identity=True, shown_default="the space's"),
    )
    val_size: ValSizeOption = Field(DEFAULT_VAL_SIZE, json_schema_extra=marks(identity=True))
    device: DeviceOption = Field("auto", json_schema_extra=marks(identity=True))
    address: str | None = later_default(
        "join a running Ray cluster: auto, HOST:PORT of its head, or ray://HOST:PORT of its Ray "
        "Client server, which runs the sweep on the head (docs/cluster.md)",
        f"auto where ${RAY_ADDRESS_ENV} is set (a Ray job), else start a local Ray",
    )
    storage: str | None = Field(
        None,
        min_length=1,
        description="a folder every node reaches (holds the sweep folder, cache and Ray results "
        "unless --out / --cache-dir say otherwise), or a URI (s3://, gs://, ...) for Ray's "
        "results only",
        json_schema_extra=marks(identity=True),
    )
    gpus_per_trial: float | None = later_default(
        "GPUs reserved per trial; fractions share one (0.25: four trials a GPU)",
        "1 where --device resolves to cuda, else 0",
        ge=0,
        allow_inf_nan=False,
    )

    _weights_exist = field_validator("weights")(existing_weights)
    _path_kinds = checked_paths(
        {"space": "file", "data_dir": "folder", "cache_dir": "folder", "out": "folder"},
        uri_fix="; put a URI in --storage for Ray's results only",
    )

    @field_validator("enqueue", mode="before")
    @classmethod
    def _none_is_no_points(cls, enqueue: Any) -> Any:
        # None: a Python caller's "no points", and what sweeps recorded before `auto` hold.
        return "none" if enqueue is None else enqueue

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

    @model_validator(mode="before")
    @classmethod
    def _from_environment(cls, data: Any) -> Any:
        return address_from_environment(tracking_uri_from_environment(data))

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
            name=self.dataset,
            data_dir=self.data_dir,
            subset=self.subset,
            val_size=self.val_size,
            memory_budget_gb=self.memory_budget_gb,
        )

    @property
    def experiment_name(self) -> str:
        names = (short_name(self.model), short_name(self.dataset), self.objective)
        return self.experiment or "-".join(names)

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
