"""Typed, frozen configuration, validated at the edge.

The bottom layer: it imports only the catalog (names) and the error formatter. Every field has a
type and a range; unknown keys are rejected. Checking names and validating `DataConfig` and
`TrainConfig` import no torch. A `TrialConfig`'s method parameters are validated by the method's
own `Config`, resolved through the catalog: that imports the method's module, and so torch.
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

from sparsetune.catalog import (
    METHODS,
    check_dataset_name,
    check_model_name,
    method_config_class,
)
from sparsetune.validation import describe_validation_error, register_for_messages

# Expanded here: pydantic does not run validators on defaults, so "~" would stay literal.
DEFAULT_DATA_DIR = Path(
    os.environ.get("SPARSETUNE_DATA_DIR", "~/.cache/sparsetune/data")
).expanduser()
DEFAULT_CACHE_DIR = Path(
    os.environ.get("SPARSETUNE_CACHE_DIR", "~/.cache/sparsetune/cache")
).expanduser()
# Examples held out of the published train part for validation: the only data a search sees.
DEFAULT_VAL_SIZE = 5000

Device = Literal["auto", "cpu", "cuda"]

# Names are checked against the catalog, which imports nothing heavy: a registered name is
# looked up in a table; "package.module:factory" is imported now, so a typo fails here.
ModelName = Annotated[str, AfterValidator(check_model_name)]
DatasetName = Annotated[str, AfterValidator(check_dataset_name)]
MethodName = Annotated[str, AfterValidator(METHODS.check)]
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
    val_size: int = Field(
        DEFAULT_VAL_SIZE, ge=1, description="examples held out of train for validation"
    )
    split_seed: int = 0
    synthetic: SyntheticOptions = SyntheticOptions()
    # Not part of any identity (exclude=True keeps it out of model_dump, which the hashes read):
    # both paths train on the same examples in the same order (docs/data.md).
    memory_budget_gb: float | None = Field(
        None,
        gt=0,
        exclude=True,
        description="own data larger than this (GB, decoded as float32) streams from disk "
        "through a DataLoader instead of being held in memory; default: "
        "$SPARSETUNE_MEMORY_BUDGET_GB, else a quarter of the machine's memory",
    )


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
    # A trained model to start from: it is the dense stage (sparsetune.models.weights).
    weights: UserPath | None = None

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
        if self.weights is not None:
            check_weights_fit_method(self.weights, self.method, validated)
            object.__setattr__(self, "weights", self.weights.resolve())
        return self

    def method_config(self) -> Any:
        return method_config_class(self.method).model_validate(self.params)


def check_weights_fit_method(weights: Path, method: str, method_config: Any) -> None:
    """A weights file exists, and the method needs no checkpoint that only a dense training
    makes: theta_j for j > 0 (lottery's `rewind_iteration`)."""
    if not weights.is_file():
        raise ValueError(
            f"weights: {weights}: no such file; pass a .safetensors file or a torch checkpoint"
        )
    rewind = getattr(method_config, "rewind_iteration", 0)
    if rewind:
        raise ValueError(
            f"method {method}: rewind_iteration {rewind} needs theta_{rewind} from a dense "
            "training, and --weights skips it; use rewind_iteration=0 (a fresh seeded theta_0) "
            "or drop --weights"
        )


for _model in (SyntheticOptions, DataConfig, TrainConfig, TrialConfig):
    register_for_messages(_model)
