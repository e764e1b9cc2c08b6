"""A ticket written as a dense, sparse or structured model file, and `load` for all of them.

Every file is safetensors with a `sparsetune` header (`sparsetune.export.header`): "format", the
model's name, input shape and class count, its architecture string and the round's metrics.
safetensors stores raw tensors and a JSON header and never unpickles: reading a file cannot run
code, the guarantee `torch.load(..., weights_only=True)` gives for pickles, without a pickle at all.
Nothing here calls `torch.load`. The one import a file can cause is the model's factory: a
registered sparsetune model, torchvision's or timm's builder, or, only when the caller passes
`trust_code=True` (`--trust-code`), the user's own `package.module:factory` that it names
(`sparsetune.export.ticket`). Before a tensor is allocated, the header and the file's tensor
list are checked (`sparsetune.export.header.read_file`) and the model's shapes are compared with
the file's: any damage is one `ValueError` line naming the file.

Layouts (tensor names in the file):
- dense: the squashed plain state dict under the original class's own keys, pruned weights 0:
  `model.load_state_dict(safetensors.torch.load_file(path))` works on a fresh instance.
- sparse: per masked weight, `values.<name>` (its nonzero entries, in the weight's dtype: float32
  for every sparsetune model) and `indices.<name>` (their positions in the flattened weight, in
  the smallest unsigned type that holds numel - 1: uint8, uint16, uint32, else int64), with its
  shape in the header's "sparse" table; every other tensor (biases, BatchNorm) whole, as
  `dense.<key>`. Its size on disk is what sparsetune reports as the memory footprint.
- structured: the physically smaller model of `export.shrink` (neurons and channels that carry
  nothing removed). For a chain (the LeNets) an `nn.Sequential`: its layers as JSON in the
  header's "layers" list and its tensors under the Sequential's own keys. For any other network
  (ResNets, VGG with BatchNorm, torchvision models) the original class with narrower layers: the
  changed layers as JSON by module path in "changed_layers", the tensors under the class's own
  keys (`sparsetune.export.structured`, rebuilt from allow-lists only). Only tickets with
  removable units (empty channels or neurons: e.g. L0 with granularity neuron) have one; an
  unstructured ticket is refused, as it would be no smaller.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save
from torch import nn

from sparsetune.atomic import atomic_write_bytes
from sparsetune.export.header import (
    EXPORT_FORMATS,
    FileHeader,
    check_trusted,
    encode_header,
    excerpt,
    read_file,
)
from sparsetune.export.structured import (
    build_layers,
    describe,
    describe_changes,
    load_strict,
    rebuild,
    rebuild_changes,
)
from sparsetune.export.ticket import (
    ModelSource,
    Ticket,
    check_buildable,
    check_weights,
    find_ticket,
    first_mismatch,
    fitting_model,
    load_fitting,
    read_ticket,
    shapes_of,
)
from sparsetune.pruning.masking import attach_masks, prunable_parameters

NOTHING_TO_REMOVE = (
    "structured: no neuron or channel of this ticket can be removed (unstructured sparsity leaves "
    "every layer its width), so a structured model would be no smaller; use --format sparse, "
    "which stores only the nonzero weights (an L0 run with granularity=neuron removes units)"
)


class Export:
    """One ticket encoded in one format: the tensors and header of the file, and the model the
    file loads as."""

    def __init__(
        self,
        format: str,
        tensors: dict[str, torch.Tensor],
        info: dict[str, Any],
        build: Callable[[], nn.Module],
    ):
        self.format = format
        self.tensors = tensors
        self.info = info
        self._build = build
        self.path: Path | None = None  # set by `write`

    @cached_property
    def model(self) -> nn.Module:
        """What `load` returns for this file (eval mode, no masks): the plain original class for
        dense and sparse, the smaller model for structured."""
        return self._build()

    def to_bytes(self) -> bytes:
        return save(self.tensors, metadata=encode_header(self.info))

    @cached_property
    def size(self) -> int:
        """The file's size in bytes (computed without writing it)."""
        return len(self.to_bytes())

    def write(self, out: Path, data: bytes | None = None) -> Path:
        """Write the file atomically: a partial file never appears at `out`. `data`: the
        file's bytes when the caller has made them already (`to_bytes`)."""
        out = Path(out)
        data = self.to_bytes() if data is None else data
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, data)
        self.path = out
        return out


def index_dtype(numel: int) -> torch.dtype:
    """The smallest unsigned integer type that holds every flat index of `numel` entries."""
    for dtype, count in ((torch.uint8, 2**8), (torch.uint16, 2**16), (torch.uint32, 2**32)):
        if numel <= count:
            return dtype
    return torch.int64


def _header(ticket: Ticket, format: str, **extra: Any) -> dict[str, Any]:
    info = {key: value for key, value in ticket.info.items() if key != "format"}
    return {**info, "format": format, "masked": list(ticket.masks), **extra}


def _dense(ticket: Ticket) -> Export:
    return Export("dense", dict(ticket.weights), _header(ticket, "dense"), ticket.plain_model)


def _sparse(ticket: Ticket) -> Export:
    tensors, shapes = {}, {}
    for key, value in ticket.weights.items():
        if key not in ticket.masks:
            tensors[f"dense.{key}"] = value
            continue
        flat = value.flatten()
        # Nonzero, not "unmasked": a surviving weight that is exactly 0.0 is stored as pruned,
        # which changes nothing in the forward and keeps "stored entries" = "nonzero weights".
        index = flat.nonzero().flatten()
        tensors[f"values.{key}"] = flat[index].contiguous()
        tensors[f"indices.{key}"] = index.to(index_dtype(flat.numel()))
        shapes[key] = list(value.shape)
    return Export("sparse", tensors, _header(ticket, "sparse", sparse=shapes), ticket.plain_model)


def _structured(ticket: Ticket) -> Export:
    from sparsetune.export.shrink import shrink

    try:
        small = shrink(ticket.masked_model(), ticket.input_shape)
    except (ValueError, RuntimeError) as error:
        raise ValueError(f"{error}; use --format sparse, which stores any model") from None
    dense_parameters = sum(value.numel() for value in ticket.plain_model().parameters())
    parameters = sum(value.numel() for value in small.parameters())
    if parameters >= dense_parameters:
        raise ValueError(NOTHING_TO_REMOVE)
    fresh = ticket.fresh_model()
    if (
        type(small) is type(fresh)
        and dict(small.named_modules()).keys() == dict(fresh.named_modules()).keys()
    ):  # the model's own class with narrower layers: only those are described
        changes, tensors = describe_changes(small, fresh)
        extra: dict[str, Any] = {"changed_layers": changes}
        build = lambda: rebuild_changes(ticket.fresh_model(), changes, tensors)  # noqa: E731
    else:  # a chain rebuilt as a Sequential: the layer list alone describes it
        layers, tensors = describe(small)
        extra = {"layers": layers}
        build = lambda: rebuild(layers, tensors)  # noqa: E731
    info = _header(
        ticket,
        "structured",
        **extra,
        parameters=parameters,
        dense_parameters=dense_parameters,
    )
    return Export("structured", tensors, info, build)


_ENCODERS = {"dense": _dense, "sparse": _sparse, "structured": _structured}


def encode(ticket: Ticket, format: str) -> Export:
    """`ticket` in `format`, in memory; ValueError for an unknown format or a structured export
    of a ticket with nothing to remove."""
    if format not in _ENCODERS:
        raise ValueError(f"format {format!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    if ticket.model is None:  # refused now, not when the file's model is first built
        check_buildable(ticket.info, ticket.path)
        check_trusted(ticket.info, ticket.path, ticket.trust_code)
    return _ENCODERS[format](ticket)


def export_ticket(
    source: Path | str,
    format: str,
    out: Path | str,
    *,
    model: ModelSource | None = None,
    trust_code: bool = False,
) -> Export:
    """Write the ticket at `source` (a round-N.safetensors file, or a folder: see
    `sparsetune.export.ticket.find_ticket`) to `out` in `format`; returns what was written.
    The file's model is built (and checked) before the file is written."""
    export = encode(read_ticket(Path(source), model, trust_code=trust_code), format)
    data = export.to_bytes()
    export.model  # noqa: B018 - built now: a ticket that cannot be loaded is never written
    export.write(Path(out), data)
    return export


def memory_footprint(source: Path | str) -> int:
    """Bytes of the ticket's sparse file: nonzero values and their indices, plus the tensors
    kept whole and the header. What `sparsetune prune` reports as `memory_footprint_bytes`.
    Builds no model (so needs no trust: the trial measures its own tickets)."""
    return _sparse(read_ticket(Path(source))).size


def _decode_sparse(path: Path, tensors: dict[str, torch.Tensor], info: dict) -> dict:
    """The state dict of a sparse file whose header and tensor list `read_file` checked and
    whose shapes fit the model: only the indices' range is left to check."""
    state = {k.removeprefix("dense."): v for k, v in tensors.items() if k.startswith("dense.")}
    for name, shape in info["sparse"].items():
        values, index = tensors[f"values.{name}"], tensors[f"indices.{name}"].long()
        numel = math.prod(shape)
        if index.numel() and not (0 <= int(index.min()) and int(index.max()) < numel):
            raise ValueError(
                f"{path}: the sparse entries of {excerpt(name)} are damaged (an index outside "
                f"its {numel} values); use the file as sparsetune wrote it"
            )
        flat = torch.zeros(numel, dtype=values.dtype)
        flat[index] = values
        state[name] = flat.view(shape)
    return state


def _attach_from_zeros(model: nn.Module, names: list[str]) -> None:
    """Masks equal to the weights' zero pattern: fine-tuning then keeps every zero."""
    keep = {name: model.get_parameter(name).detach() != 0 for name in names}
    attach_masks(model, names).update(keep)


def load(
    path: Path | str,
    masks: bool = False,
    model: ModelSource | None = None,
    *,
    trust_code: bool = False,
) -> nn.Module:
    """A ready model (eval mode, on the CPU) from a dense, sparse or structured file, a ticket
    (round-N.safetensors), or a folder of tickets (its final one).

    Dense, sparse and tickets give an instance of the original class; structured gives the
    smaller Sequential of a chain, or the original class with narrower layers.
    The architecture comes from `model` when given: an `nn.Module` instance (deep-copied, never
    changed; its weights are replaced by the file's), a callable returning one (called with the
    keywords among `input_shape` and `num_classes` it takes), or a model name or import path
    overriding the header's. Otherwise it is built from the header's name: a registered model or
    torchvision's or timm's builder; a user factory by import path only with
    `trust_code=True` (opening a file runs no code otherwise), and then from the installed
    packages and PYTHONPATH, never the working folder. A ticket of a Python object
    (`python-...`) from another process needs `model`. A chain's structured file describes its
    whole network and ignores `model`.
    With `masks=True` each prunable weight gets a mask (a ticket's own masks; else the weight's
    zero pattern), so that training the model keeps every pruned weight at exactly zero.

    Raises ValueError, one line naming the file, for anything wrong: not a sparsetune file, a
    damaged header (bad sizes, shapes, class count, layers), tensors that disagree with the
    header or do not fit the model (the first mismatch), untrusted user code. The header and the
    shapes are checked before any tensor is allocated.
    """
    path = Path(path)
    if path.is_dir():
        path = find_ticket(path)
    file = read_file(path)
    info = file.info
    if info["format"] == "ticket":
        ticket = read_ticket(path, model, trust_code=trust_code)
        return ticket.masked_model() if masks else ticket.plain_model()
    if info["format"] == "structured" and info.get("layers") is not None:
        built = _chain(file)
        names = prunable_parameters(built)
    else:
        changed = info.get("changed_layers")
        fresh = fitting_model(
            info, file.state_shapes(), path, model, trust_code=trust_code, changed=changed
        )
        tensors = load_file(path)  # safetensors: no pickle, see the module docstring
        if info["format"] == "structured":
            try:
                load_strict(fresh, tensors)
            except ValueError as error:
                raise ValueError(f"{path}: {error}") from None
            built, names = fresh, prunable_parameters(fresh)
        else:
            state = tensors if info["format"] == "dense" else _decode_sparse(path, tensors, info)
            load_fitting(fresh, state, path, info, model)
            built, names = fresh, list(info.get("masked") or prunable_parameters(fresh))
    if masks:
        check_weights(built, names, path)
        _attach_from_zeros(built, names)
    return built.eval()


def _chain(file: FileHeader) -> nn.Sequential:
    """A chain's structured file as its Sequential: built on the meta device and compared with
    the file's tensors first, then for real."""
    path, layers = file.path, file.info["layers"]
    try:
        with torch.device("meta"):
            blank = build_layers(layers)
        mismatch = first_mismatch(shapes_of(blank), file.state_shapes())
        if mismatch:
            raise ValueError(
                f"structured: its tensors do not fit the layers its header lists ({mismatch})"
            )
        return rebuild(layers, load_file(path))  # safetensors: never a pickle
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
