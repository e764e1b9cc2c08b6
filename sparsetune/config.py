"""Typed, frozen configuration, validated at the edge.

Every field has a type and a range; unknown keys are rejected. Nothing here imports torch: the CLI
validates a whole sweep before any heavy library loads. Method parameters are validated by the
method's own `Config` (see `sparsetune.pruning`), which this module resolves lazily.
"""

from __future__ import annotations

import os
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
        return self

    def data_config(self) -> DataConfig:
        return DataConfig(
            name=self.dataset, data_dir=self.data_dir, subset=self.subset, val_size=self.val_size
        )

    @property
    def experiment_name(self) -> str:
        return self.experiment or f"{self.model}-{self.dataset}-{self.objective}"

    @property
    def sweep_dir(self) -> Path:
        return (self.out or Path("sparsetune-runs") / self.experiment_name).resolve()


register_for_messages(SweepConfig)
register_for_messages(PruneOptions)
