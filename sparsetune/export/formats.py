"""A ticket written as a dense, sparse or structured model file, and `load` for all of them.

Every file is safetensors with a `sparsetune` header (`sparsetune.export.header`): "format", the
model's name, input shape and class count, its architecture string and the round's metrics.
safetensors stores raw tensors and a JSON header and never unpickles: reading a file cannot run
code, the guarantee `torch.load(..., weights_only=True)` gives for pickles, without a pickle at all.
Nothing here calls `torch.load`. The one import a file can cause is the model's factory (a
registered sparsetune model, or the user's own `package.module:factory` that it names).

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
from sparsetune.export.header import EXPORT_FORMATS, encode_header, read_header
from sparsetune.export.structured import describe, describe_changes, rebuild, rebuild_changes
from sparsetune.export.ticket import Ticket, find_ticket, new_model, read_ticket
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

    def write(self, out: Path) -> Path:
        """Write the file atomically: a partial file never appears at `out`."""
        out = Path(out)
        data = self.to_bytes()
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
    fresh = new_model(ticket.info)
    if (
        type(small) is type(fresh)
        and dict(small.named_modules()).keys() == dict(fresh.named_modules()).keys()
    ):  # the model's own class with narrower layers: only those are described
        changes, tensors = describe_changes(small, fresh)
        extra: dict[str, Any] = {"changed_layers": changes}
        build = lambda: rebuild_changes(new_model(ticket.info), changes, tensors)  # noqa: E731
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
    return _ENCODERS[format](ticket)


def export_ticket(source: Path | str, format: str, out: Path | str) -> Export:
    """Write the ticket at `source` (a round-N.safetensors file, or a folder: see
    `sparsetune.export.ticket.find_ticket`) to `out` in `format`; returns what was written."""
    export = encode(read_ticket(Path(source)), format)
    export.write(Path(out))
    return export


def memory_footprint(source: Path | str) -> int:
    """Bytes of the ticket's sparse file: nonzero values and their indices, plus the tensors
    kept whole and the header. What `sparsetune prune` reports as `memory_footprint_bytes`."""
    return encode(read_ticket(Path(source)), "sparse").size


def _decode_sparse(path: Path, tensors: dict[str, torch.Tensor], info: dict) -> dict:
    state = {k.removeprefix("dense."): v for k, v in tensors.items() if k.startswith("dense.")}
    shapes = info.get("sparse")
    if not isinstance(shapes, dict):
        raise ValueError(f"{path}: a sparse file without its table of shapes")
    for name, shape in shapes.items():
        try:
            values, index = tensors[f"values.{name}"], tensors[f"indices.{name}"].long()
            flat = torch.zeros(math.prod(shape), dtype=values.dtype)
            flat[index] = values
        except (KeyError, IndexError, RuntimeError) as error:
            raise ValueError(f"{path}: the sparse entries of {name} are damaged: {error}") from None
        state[name] = flat.view(shape)
    return state


def _attach_from_zeros(model: nn.Module, names: list[str]) -> None:
    """Masks equal to the weights' zero pattern: fine-tuning then keeps every zero."""
    keep = {name: model.get_parameter(name).detach() != 0 for name in names}
    attach_masks(model, names).update(keep)


def load(path: Path | str, masks: bool = False) -> nn.Module:
    """A ready model (eval mode) from a dense, sparse or structured file, a ticket
    (round-N.safetensors), or a folder of tickets (its final one).

    Dense, sparse and tickets give an instance of the original class (built by name, so a user
    model by import path works where that import does); structured gives the smaller Sequential
    of a chain, or the original class with narrower layers.
    With `masks=True` each prunable weight gets a mask (a ticket's own masks; else the weight's
    zero pattern), so that training the model keeps every pruned weight at exactly zero.
    """
    path = Path(path)
    if path.is_dir():
        path = find_ticket(path)
    info = read_header(path)
    if info["format"] == "ticket":
        ticket = read_ticket(path)
        return ticket.masked_model() if masks else ticket.plain_model()
    tensors = load_file(path)  # safetensors: no pickle, see the module docstring
    if info["format"] == "structured" and "changed_layers" in info:
        model = rebuild_changes(new_model(info), info["changed_layers"], tensors)
        names = prunable_parameters(model)
    elif info["format"] == "structured":
        model = rebuild(info.get("layers"), tensors)
        names = prunable_parameters(model)
    else:
        state = tensors if info["format"] == "dense" else _decode_sparse(path, tensors, info)
        model = new_model(info)
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            last = str(error).strip().splitlines()[-1]
            raise ValueError(f"{path}: its tensors do not fit {info['model']} ({last})") from None
        names = list(info.get("masked") or prunable_parameters(model))
    if masks:
        _attach_from_zeros(model, names)
    return model.eval()
