"""The result schema: what a trial reports each round, and the columns every writer derives from it.

One owner for the names. The trial driver fills `RoundMetrics`; the Ray report, the MLflow child
run, the progress rows, `trials.csv`, `pareto.json`, the review and `prune --json` all read their
fields from here, so a new metric is added once (a field below) and reaches every record.
No torch here: the CLI and the report read these names without loading it.

The files are read back too (`sparsetune report`, the warm start of `sparsetune sweep`, `ui`,
`--resume`), and a file on disk may be anything: every reader goes through `read_json_record` or
`read_trials_csv`, which check it against the models below (types, required keys, finite
numbers, bounded strings, a size cap) and raise ValueError with a short reason, never quoting
the file.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Json,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)


@dataclass(frozen=True)
class RoundMetrics:
    """The numbers one reported round of a trial produced: a candidate for the Pareto front."""

    round: int
    val_acc: float
    val_loss: float
    test_acc: float
    compression: float  # prunable weights / surviving prunable weights
    flops_ratio: float  # remaining multiply-accumulates of the prunable layers / dense
    remaining_weights: int
    total_weights: int
    architecture: str  # surviving units, e.g. "20-50-800-500"
    seconds: float  # wall time since the trial started
    # Training epochs of the trial up to this round (the shared dense stage excluded): what
    # `--budget-epochs` counts (sparsetune.pruning.epochs).
    epochs_trained: int = 0
    # Bytes of the round's sparse export (nonzero values and their indices): the memory
    # footprint (docs/export.md). None when the round wrote no ticket.
    memory_footprint_bytes: int | None = None

    def metrics(self) -> dict[str, Any]:
        """The flat numbers a tracker or a searcher records for this round."""
        return {name: getattr(self, name) for name in ROUND_METRICS}


ROUND_METRICS: tuple[str, ...] = tuple(field.name for field in fields(RoundMetrics))

# What identifies the trial a round belongs to, next to its metrics in every row.
TRIAL_KEYS = ("trial_id", "method", "params", "key_params", "config_hash", "run_id")
# The numbers a trial's curves (prune's round_curves.png, the resume bookkeeping) are drawn from.
CURVE_KEYS = ("round", "val_acc", "test_acc", "compression", "flops_ratio")
# Numbers MLflow's model registry copies from a ticket's header onto a registered version.
REGISTERED_METRICS = ("val_acc", "test_acc", "compression", "flops_ratio")

# Reading the result files back: typed, bounded, one short reason when a file is not ours.
RECORD_LIMIT = 64 * 2**20  # bytes: a sweep's records are kilobytes; a larger file is not one
EXCERPT = 80  # characters of a reason at most

Finite = Annotated[float, Field(allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Percent = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
# A compression or hypervolume may be +inf (every prunable weight pruned: pruning/metrics.py),
# never NaN, zero or negative.
Compression = Annotated[float, Field(gt=0, allow_inf_nan=True)]
Hypervolume = Annotated[float, Field(ge=0, allow_inf_nan=True)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=1000)]
Long = Annotated[str, StringConstraints(max_length=4096)]  # a path, a URI, an architecture
# Names that become a folder or part of one (`trials/<trial_id>/`, `ray/<ray_name>/`): no
# separators, no `..`.
FolderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")]
TrialId = FolderName  # Ray's trial ids
RunId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
ParamValue = bool | int | Finite | Text | None  # a search space's values are scalars
Params = dict[Name, ParamValue]


class TrialRow(BaseModel):
    """One row of `trials.csv`: a reported round of a trial, or a failed trial (no numbers).
    The field order is the file's column order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trial_id: TrialId
    status: Literal["ok", "failed"]
    feasible: bool | None = None
    round: Count | None = None
    method: Name | None = None
    val_acc: Fraction | None = None
    test_acc: Fraction | None = None
    compression: Compression | None = None
    flops_ratio: NonNegative | None = None
    remaining_weights: Count | None = None
    memory_footprint_bytes: Count | None = None
    architecture: Long | None = None
    seconds: NonNegative | None = None
    epochs_trained: Count | None = None
    config_hash: Name | None = None
    run_id: RunId | None = None
    params: Json[Params] = {}
    error: Annotated[str, StringConstraints(max_length=100_000)] | None = None

    @model_validator(mode="after")
    def _a_round_has_its_numbers(self) -> TrialRow:
        if self.status == "ok":
            missing = [name for name in _ROUND_NUMBERS if getattr(self, name) is None]
            if missing:
                raise ValueError(f"an ok row without {', '.join(missing)}")
        return self


_ROUND_NUMBERS = ("round", "val_acc", "test_acc", "compression")


class FrontRecord(BaseModel):
    """One point of `pareto.json`'s front: errors in percent, as the papers give them. The field
    order is the file's key order."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    val_acc: Fraction
    test_acc: Fraction
    val_error: Percent
    test_error: Percent
    compression: Compression
    flops_ratio: NonNegative
    memory_footprint_bytes: Count | None = None
    method: Name
    params: Params | None = None
    key_params: Params | None = None
    architecture: Long | None = None
    round: Count
    trial_id: TrialId
    run_id: RunId | None = None
    config_hash: Name | None = None


class Objective(BaseModel):
    model_config = ConfigDict(strict=True)

    name: Name | None = None
    metrics: list[Name] = []


class ParetoFile(BaseModel):
    """`pareto.json`: the sweep's header (what was searched, how it went) and its front. Keys
    that no reader computes with are kept as they are (`extra`)."""

    model_config = ConfigDict(extra="allow", strict=True)

    experiment: Text | None = None
    model: Long | None = None
    dataset: Long | None = None
    objective: Objective | None = None
    hypervolume: Hypervolume | None = None
    hypervolume_axes: Text | None = None
    parent_run_id: RunId | None = None
    front: list[FrontRecord]

    @model_validator(mode="before")
    @classmethod
    def _has_a_front(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("front"), list):
            raise ValueError("no 'front' list")
        return data


class SweepRecord(BaseModel):
    """`sweep.json`, the sweep's options as run, as far as a reader outside the search needs
    them (`sparsetune ui`: where it was tracked)."""

    model_config = ConfigDict(extra="allow", strict=True)

    tracking_uri: Long | None = None


# `trials.csv`: one row per (trial, round), failed trials too.
ROW_FIELDS: tuple[str, ...] = tuple(TrialRow.model_fields)
# `pareto.json`: one object per front point.
FRONT_FIELDS: tuple[str, ...] = tuple(FrontRecord.model_fields)

Record = TypeVar("Record")


def short_reason(error: Exception) -> str:
    """What is wrong, in one line of at most EXCERPT characters, without the input's text."""
    if isinstance(error, ValidationError):
        first = error.errors(include_url=False, include_input=False, include_context=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        text = first["msg"].removeprefix("Value error, ")
        if first["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            text = "unknown key"
        elif first["type"] == "string_pattern_mismatch":
            text = "not a name this version writes"
        elif first["type"] == "json_invalid":
            text = text.replace("Invalid JSON", "not readable JSON", 1)
        text = f"{where}: {text}" if where else text
    elif isinstance(error, OSError):
        text = error.strerror or type(error).__name__
    else:
        text = str(error) or type(error).__name__
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT else text[: EXCERPT - 3] + "..."


def read_record(path: Path, limit: int = RECORD_LIMIT) -> bytes:
    """The bytes of a file the package wrote, read back; ValueError (the reason) for anything
    but a regular file of at most `limit` bytes (a FIFO would block, /dev/zero never ends)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError("not a regular file")
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as error:
        raise ValueError(short_reason(error)) from None
    if len(data) > limit:
        raise ValueError(f"larger than {limit // 2**20} MiB")
    return data


def read_json_record(path: Path, schema: type[Record]) -> Record:
    """`path` as `schema` (a pydantic model or dataclass); ValueError with a short reason when
    it is not valid JSON of that shape."""
    data = read_record(path)
    try:
        return TypeAdapter(schema).validate_json(data)
    except ValidationError as error:
        raise ValueError(short_reason(error)) from None


def read_trials_csv(path: Path, schema: type[BaseModel] = TrialRow) -> list[Any]:
    """`trials.csv`'s rows as `schema` (all of a row, or what a reader needs of it); ValueError
    naming the line and the reason for one that is not a row this version writes."""
    try:
        text = read_record(path).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames or []
        if "trial_id" not in header:
            raise ValueError("no trial_id column")
        rows = []
        for raw in reader:
            if None in raw:
                raise ValueError(f"line {reader.line_num}: more values than columns")
            values = {key: value for key, value in raw.items() if value not in ("", None)}
            try:
                rows.append(schema.model_validate(values))
            except ValidationError as error:
                raise ValueError(f"line {reader.line_num}: {short_reason(error)}") from None
    except csv.Error as error:
        raise ValueError(short_reason(error)) from None
    return rows
