"""The `sparsetune` entry of a safetensors header: what a file holds and how to rebuild its model,
checked whole before anything is built or allocated.

safetensors headers carry string-to-string metadata only, so the description is one JSON object
under the key "sparsetune". Every file sparsetune writes has one: a ticket ("format": "ticket",
written by each trial round) and the three export formats ("dense", "sparse", "structured").
Common keys: `model` (registered name or "package.module:factory"), `input_shape`, `num_classes`,
`architecture`, and the round's metrics (`val_acc`, `test_acc`, `compression`, `flops_ratio`).

A file read back may be anything (a download, a file changed by hand), so `read_file` checks it
in one place before a tensor is allocated: the JSON against a pydantic model per format (types,
positive and bounded sizes, structured layers within the allow-lists), then the tensors that
safetensors' own header lists (names, dtypes and shapes, read without loading a byte of data)
against what the format says they are. Any failure is one `ValueError` line naming the file and
what is wrong: the documented error of `sparsetune.load` (docs/export.md). Whether a header's
model may be built without the caller's trust is `check_trusted`. No torch here: the CLI reads
`EXPORT_FORMATS` before it validates input.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from sparsetune.catalog import MODELS, TIMM_PREFIX, is_import_path
from sparsetune.results import short_reason
from sparsetune.validation import check_path_kind

HEADER_KEY = "sparsetune"
EXPORT_FORMATS = ("dense", "sparse", "structured")
FORMATS = ("ticket", *EXPORT_FORMATS)

# Bounds of a sane header. Every tensor a file's model gets is also checked against the file's
# own tensors before it is allocated (`formats.load`), so these only keep nonsense out early.
MAX_CLASSES = 1_000_000
MAX_INPUT_RANK = 4  # features; C x L; C x H x W; C x T x H x W
MAX_INPUT_VALUES = 2**26  # values in one input example (3 x 4096 x 4096 is 2**25.6)
MAX_TENSOR_RANK = 8
MAX_TENSOR_VALUES = 2**40
MAX_LAYER_SIZE = 2**31  # one layer's features, channels or kernel extent
MAX_LAYERS = 100_000

# The structured format's allow-lists, by name (`sparsetune.export.structured` maps them to
# torch's classes and functions): an `nn` layer's class name -> the constructor arguments read
# from (and set on) an instance; the torch functions and tensor methods a `Call` layer may apply.
_CONV_ARGS = (
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "dilation",
    "groups",
    "padding_mode",
)
_MAX_POOL_ARGS = ("kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode")
_AVG_POOL_ARGS = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
_NORM_ARGS = ("num_features", "eps", "momentum", "affine", "track_running_stats")
LAYER_ARGS: dict[str, tuple[str, ...]] = {
    "Linear": ("in_features", "out_features"),
    "Conv1d": _CONV_ARGS,
    "Conv2d": _CONV_ARGS,
    "Conv3d": _CONV_ARGS,
    "BatchNorm1d": _NORM_ARGS,
    "BatchNorm2d": _NORM_ARGS,
    "ReLU": ("inplace",),
    "ReLU6": ("inplace",),
    "LeakyReLU": ("negative_slope", "inplace"),
    "ELU": ("alpha", "inplace"),
    "GELU": ("approximate",),
    "SiLU": ("inplace",),
    "Sigmoid": (),
    "Tanh": (),
    "Softmax": ("dim",),
    "LogSoftmax": ("dim",),
    "Identity": (),
    "Flatten": ("start_dim", "end_dim"),
    "Dropout": ("p", "inplace"),
    "Dropout2d": ("p", "inplace"),
    "MaxPool1d": _MAX_POOL_ARGS,
    "MaxPool2d": _MAX_POOL_ARGS,
    "AvgPool1d": _AVG_POOL_ARGS,
    "AvgPool2d": (*_AVG_POOL_ARGS, "divisor_override"),
    "AdaptiveAvgPool1d": ("output_size",),
    "AdaptiveAvgPool2d": ("output_size",),
}
WITH_BIAS = frozenset({"Linear", "Conv1d", "Conv2d", "Conv3d"})  # `bias` is a constructor flag
CALL_FUNCTIONS = frozenset(
    {
        *(f"torch.{name}" for name in ("relu", "sigmoid", "tanh", "flatten", "softmax")),
        *(f"torch.{name}" for name in ("log_softmax", "max_pool1d", "max_pool2d", "avg_pool1d")),
        *(
            f"torch.nn.functional.{name}"
            for name in (
                "relu",
                "relu6",
                "leaky_relu",
                "elu",
                "gelu",
                "silu",
                "sigmoid",
                "tanh",
                "softmax",
                "log_softmax",
                "max_pool1d",
                "max_pool2d",
                "avg_pool1d",
                "avg_pool2d",
                "adaptive_avg_pool1d",
                "adaptive_avg_pool2d",
            )
        ),
    }
)
CALL_METHODS = frozenset(
    {
        "flatten",
        "view",
        "reshape",
        "contiguous",
        "relu",
        "sigmoid",
        "tanh",
        "softmax",
        "log_softmax",
        "squeeze",
        "unsqueeze",
        "mean",
    }
)
# Arguments that are a layer's size (a positive int) or an extent (a positive int, or one per
# spatial dimension): each must be one, or the layer would allocate nonsense.
_SIZES = frozenset({"in_features", "out_features", "in_channels", "out_channels", "num_features"})
_EXTENTS = frozenset({"kernel_size", "stride", "dilation", "groups"})


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


def excerpt(text: Any, limit: int = 60, *, quote: bool = False) -> str:
    """A name taken from a file, for a message: as it is when it is a plain dotted name that
    fits (unless `quote`), else quoted and cut short (never a line break, never more than
    `limit` characters)."""
    if not quote and isinstance(text, str) and len(text) <= limit and _PLAIN.fullmatch(text):
        return text
    text = repr(text)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


# --- the header's JSON, per format -----------------------------------------------------------


Count = Annotated[int, Field(ge=0)]
Text = Annotated[str, StringConstraints(max_length=1000)]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=300)]
TensorName = Annotated[str, StringConstraints(min_length=1, max_length=300)]
Metric = Annotated[float, Field(allow_inf_nan=False)] | None


class _Header(BaseModel):
    """What every sparsetune file's header says. Other keys (a later version's) are kept."""

    model_config = ConfigDict(strict=True, extra="allow")

    format: str
    model: ModelName
    input_shape: Annotated[
        list[Annotated[int, Field(ge=1, le=MAX_INPUT_VALUES)]],
        Field(min_length=1, max_length=MAX_INPUT_RANK),
    ]
    num_classes: Annotated[int, Field(ge=1, le=MAX_CLASSES)]
    dataset: Text | None = None
    method: Text | None = None
    config_hash: Text | None = None
    architecture: Text | None = None
    round: Count | None = None
    val_acc: Metric = None
    test_acc: Metric = None
    compression: Metric = None
    flops_ratio: Metric = None
    masked: Annotated[list[TensorName], Field(max_length=MAX_LAYERS)] | None = None

    @model_validator(mode="after")
    def _input_is_bounded(self) -> _Header:
        if math.prod(self.input_shape) > MAX_INPUT_VALUES:
            raise ValueError(f"input_shape: more than {MAX_INPUT_VALUES} values in one example")
        return self


class TicketHeader(_Header):
    format: Literal["ticket"]


class DenseHeader(_Header):
    format: Literal["dense"]


TensorShape = Annotated[
    list[Annotated[int, Field(ge=1)]], Field(min_length=1, max_length=MAX_TENSOR_RANK)
]


class SparseHeader(_Header):
    format: Literal["sparse"]
    sparse: Annotated[dict[TensorName, TensorShape], Field(max_length=MAX_LAYERS)]

    @model_validator(mode="after")
    def _shapes_are_bounded(self) -> SparseHeader:
        for name, shape in self.sparse.items():
            if math.prod(shape) > MAX_TENSOR_VALUES:
                raise ValueError(f"sparse: {excerpt(name)} has more than 2**40 values")
        return self


def _layer_list(layers: Any) -> Any:
    for index, spec in enumerate(layers):
        check_layer(spec, index)
    return layers


def _layer_table(layers: Any) -> Any:
    for name, spec in layers.items():
        if not re.fullmatch(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*", name):
            raise ValueError(f"{excerpt(name)} is not a module path")
        check_layer(spec, name)
    return layers


class StructuredHeader(_Header):
    format: Literal["structured"]
    layers: Annotated[list[Any], Field(min_length=1, max_length=MAX_LAYERS)] | None = None
    changed_layers: (
        Annotated[dict[TensorName, Any], Field(min_length=1, max_length=MAX_LAYERS)] | None
    ) = None
    parameters: Count | None = None
    dense_parameters: Count | None = None

    @model_validator(mode="after")
    def _one_description(self) -> StructuredHeader:
        if (self.layers is None) == (self.changed_layers is None):
            raise ValueError("needs either a `layers` list or a `changed_layers` table")
        if self.layers is not None:
            _layer_list(self.layers)
        else:
            _layer_table(self.changed_layers)
        return self


_HEADERS = {
    "ticket": TicketHeader,
    "dense": DenseHeader,
    "sparse": SparseHeader,
    "structured": StructuredHeader,
}


def _json_value(value: Any, depth: int = 0) -> bool:
    """A constructor or call argument the format stores: a JSON scalar or a short list of them."""
    if value is None or isinstance(value, (bool, str)):
        return not isinstance(value, str) or len(value) <= 100
    if isinstance(value, int):
        return abs(value) <= 2**62
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return depth < 3 and len(value) <= 16 and all(_json_value(v, depth + 1) for v in value)
    return False


def _extent(value: Any) -> bool:
    """A positive size, or one per spatial dimension."""
    items = value if isinstance(value, list) else [value]
    return 1 <= len(items) <= 3 and all(
        isinstance(item, int) and not isinstance(item, bool) and 1 <= item <= MAX_LAYER_SIZE
        for item in items
    )


def check_layer(spec: Any, index: int | str) -> None:
    """One structured layer as the allow-lists allow it (see `LAYER_ARGS`): a known type, only
    its known arguments, JSON values, positive sizes. ValueError in the words `structured`'s
    rebuild uses ("disallowed type", "unknown arguments", "malformed")."""
    where = f"layer {index}"
    if not isinstance(spec, dict):
        raise ValueError(f"{where} is not an object")
    kind = spec.get("type")
    if kind == "SelectFeatures":
        size = spec.get("size")
        if set(spec) != {"type", "size"} or not _extent(size) or isinstance(size, list):
            raise ValueError(f"{where} is malformed (SelectFeatures takes a positive size)")
        return
    if kind == "Call":
        if not set(spec) <= {"type", "function", "method", "args", "kwargs"}:
            raise ValueError(f"{where} is malformed (unknown keys)")
        if "method" in spec:
            if "function" in spec or spec["method"] not in CALL_METHODS:
                raise ValueError(f"{where} calls a disallowed method")
        elif spec.get("function") not in CALL_FUNCTIONS:
            raise ValueError(f"{where} calls a disallowed function")
        args, kwargs = spec.get("args", []), spec.get("kwargs", {})
        if not isinstance(args, list) or not _json_value(args):
            raise ValueError(f"{where} is malformed (its args are not a short JSON list)")
        if not isinstance(kwargs, dict) or not all(
            isinstance(key, str) and len(key) <= 100 and _json_value(value)
            for key, value in kwargs.items()
        ):
            raise ValueError(f"{where} is malformed (its kwargs are not JSON values by name)")
        return
    if not isinstance(kind, str) or kind not in LAYER_ARGS:
        raise ValueError(f"{where} has the disallowed type {excerpt(kind, 40, quote=True)}")
    if not set(spec) <= {"type", "args"}:
        raise ValueError(f"{where} is malformed (unknown keys)")
    args = spec.get("args", {})
    if not isinstance(args, dict):
        raise ValueError(f"{where} is malformed (its args are not an object)")
    allowed = {*LAYER_ARGS[kind], "bias"} if kind in WITH_BIAS else set(LAYER_ARGS[kind])
    unknown = sorted(excerpt(key, 40, quote=True) for key in set(args) - allowed)
    if unknown:
        raise ValueError(f"{where} ({kind}) has unknown arguments [{', '.join(unknown[:3])}]")
    for name, value in args.items():
        if not _json_value(value):
            raise ValueError(f"{where} is malformed ({name} is not a JSON value the format has)")
        if name in _SIZES and (not _extent(value) or isinstance(value, list)):
            raise ValueError(f"{where} is malformed ({name} must be a positive int)")
        if name in _EXTENTS and not _extent(value):
            raise ValueError(f"{where} is malformed ({name} must be positive)")


def check_info(info: Any, path: Path) -> dict[str, Any]:
    """`info` (the decoded JSON of a file's header) as one of the four formats; one-line
    ValueError naming the file and the first problem otherwise. Returns `info` unchanged (the
    models are strict: nothing is converted)."""
    if not isinstance(info, dict) or info.get("format") not in FORMATS:
        found = info.get("format") if isinstance(info, dict) else None
        raise ValueError(
            f"{path}: unknown sparsetune format {excerpt(found, 40, quote=True)}; expected one of "
            f"{', '.join(FORMATS)}"
        )
    missing = [key for key in ("model", "input_shape", "num_classes") if key not in info]
    if missing:
        raise ValueError(f"{path}: its sparsetune header lacks {', '.join(missing)}")
    try:
        _HEADERS[info["format"]].model_validate(info)
    except ValidationError as error:
        raise ValueError(
            f"{path}: its sparsetune header is damaged ({short_reason(error)}); use the file as "
            "sparsetune wrote it"
        ) from None
    return info


# --- the tensors, against the header ---------------------------------------------------------

_FLOATS = frozenset({"F16", "BF16", "F32", "F64"})
_INTEGERS = frozenset({"U8", "U16", "U32", "U64", "I8", "I16", "I32", "I64"})


@dataclass(frozen=True)
class TensorEntry:
    dtype: str  # safetensors' name: "F32", "BOOL", "U8", ...
    shape: tuple[int, ...]


@dataclass(frozen=True)
class FileHeader:
    """A sparsetune file's checked header, and its tensors as safetensors lists them."""

    path: Path
    info: dict[str, Any]
    tensors: dict[str, TensorEntry]

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shapes of the state dict the file loads as, by key, without loading a tensor:
        a ticket's `weight.*`, a sparse file's whole tensors and its table's shapes, else every
        tensor."""
        fmt = self.info["format"]
        if fmt == "ticket":
            return {
                key.removeprefix("weight."): entry.shape
                for key, entry in self.tensors.items()
                if key.startswith("weight.")
            }
        if fmt == "sparse":
            shapes = {
                key.removeprefix("dense."): entry.shape
                for key, entry in self.tensors.items()
                if key.startswith("dense.")
            }
            return {**shapes, **{k: tuple(v) for k, v in self.info["sparse"].items()}}
        return {key: entry.shape for key, entry in self.tensors.items()}


def _problem(path: Path, what: str) -> ValueError:
    return ValueError(
        f"{path}: its tensors do not match its header ({what}); use the file as sparsetune wrote it"
    )


def _check_tensors(path: Path, info: dict[str, Any], tensors: dict[str, TensorEntry]) -> None:
    fmt = info["format"]
    if fmt == "ticket":
        stray = [key for key in tensors if not key.startswith(("mask.", "weight."))]
        if stray:
            raise _problem(path, f"{excerpt(stray[0])} is neither a mask nor a weight")
        weights = {
            k.removeprefix("weight."): v for k, v in tensors.items() if k.startswith("weight.")
        }
        if not weights:
            raise ValueError(f"{path}: an incomplete ticket (no weights for any layer)")
        for key, entry in tensors.items():
            if not key.startswith("mask."):
                continue
            name = key.removeprefix("mask.")
            if name not in weights:
                raise ValueError(f"{path}: an incomplete ticket (no weights for {excerpt(name)})")
            if entry.dtype not in ("BOOL", "U8") or entry.shape != weights[name].shape:
                raise _problem(path, f"the mask of {excerpt(name)} is not a bool of its shape")
    elif fmt == "sparse":
        stray = [key for key in tensors if not key.startswith(("dense.", "values.", "indices."))]
        if stray:
            raise _problem(path, f"{excerpt(stray[0])} is not dense., values. or indices.")
        table = info["sparse"]
        listed = {k.partition(".")[2] for k in tensors if k.startswith(("values.", "indices."))}
        unlisted = sorted(listed - set(table))
        if unlisted:
            raise _problem(path, f"{excerpt(unlisted[0])} has sparse entries but no shape")
        for name, shape in table.items():
            values, index = tensors.get(f"values.{name}"), tensors.get(f"indices.{name}")
            if values is None or index is None:
                raise ValueError(f"{path}: the sparse entries of {excerpt(name)} are damaged")
            if (
                len(values.shape) != 1
                or values.shape != index.shape
                or values.shape[0] > math.prod(shape)
                or values.dtype not in _FLOATS
                or index.dtype not in _INTEGERS
            ):
                raise ValueError(
                    f"{path}: the sparse entries of {excerpt(name)} are damaged (values and "
                    "indices must be two lists of one length, at most the tensor's size)"
                )
            if f"dense.{name}" in tensors:
                raise _problem(path, f"{excerpt(name)} is stored both whole and sparse")
    masked = info.get("masked") or []
    shapes = FileHeader(path, info, tensors).state_shapes()
    absent = [name for name in masked if name not in shapes]
    if fmt != "structured" and absent:
        raise _problem(path, f"`masked` names {excerpt(absent[0])}, which the file lacks")


def read_file(path: Path) -> FileHeader:
    """The checked header and tensor list of the sparsetune file at `path`; one-line ValueError
    when it is not a regular safetensors file sparsetune wrote, or its header is damaged or
    disagrees with its tensors. Reads the header only: no tensor is loaded."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    check_path_kind(path, "file", must_exist=True)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {}
            for key in handle.keys():
                piece = handle.get_slice(key)
                tensors[key] = TensorEntry(str(piece.get_dtype()), tuple(piece.get_shape()))
    except (SafetensorError, OSError) as error:
        problem = (str(error).strip().splitlines() or [type(error).__name__])[0][:80]
        raise ValueError(
            f"{path}: not a safetensors file ({problem}); pass a ticket a sweep or "
            "`sparsetune prune` wrote (a .safetensors file), or copy it again if it was cut short"
        ) from None
    raw = metadata.get(HEADER_KEY)
    if raw is None:
        raise ValueError(
            f"{path}: has no sparsetune header (not written by sparsetune, or by a version "
            "before tickets described themselves); re-run the trial to get a ticket"
        )
    try:
        info = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise ValueError(f"{path}: its sparsetune header is not valid JSON") from None
    check_info(info, path)
    _check_tensors(path, info, tensors)
    return FileHeader(path, info, tensors)


def read_header(path: Path) -> dict[str, Any]:
    """The checked `sparsetune` header of a safetensors file (see `read_file`)."""
    return read_file(path).info


# --- trust ------------------------------------------------------------------------------------

_BUILDER = re.compile(r"[A-Za-z][A-Za-z0-9_]*")  # a public name: no `_private`, no `__dunder__`
# The model modules of the libraries whose builders work as they are (`catalog.SHORT_FORMS`).
_LIBRARY_MODELS = re.compile(r"(torchvision|timm)\.models(\.[A-Za-z][A-Za-z0-9_]*)*")


def needs_trust(name: str) -> bool:
    """Whether building the model a header names runs code outside installed libraries: an
    import path `package.module:factory`. Registered names (sparsetune's models, an installed
    plugin's, a Python object registered in this process) and torchvision's and timm's builders
    (`torchvision:NAME`, `timm:NAME`, or a public name in `torchvision.models` or `timm.models`
    and their submodules, e.g. `timm.models.resnet:resnet18`) do not."""
    if not is_import_path(name) or name in MODELS or name.startswith(TIMM_PREFIX):
        return False
    library, _, builder = name.partition(":")
    if library == "torchvision" or _LIBRARY_MODELS.fullmatch(library):
        return not _BUILDER.fullmatch(builder)
    return True


def check_trusted(info: dict[str, Any], path: Path | None, trust_code: bool) -> None:
    """One-line ValueError when the header at `path` names user code to build its model and the
    caller has not said to trust it (`trust_code=True`, `--trust-code`)."""
    name = info["model"]
    if trust_code or not needs_trust(name):
        return
    where = f"{path}: " if path is not None else ""
    raise ValueError(
        f"{where}its model is built by user code {excerpt(name, 80, quote=True)}; opening a file "
        "does not run code unless you pass trust_code=True (--trust-code) or model=..."
    )
