"""Python objects as names: the `model=` and `data=` objects of `sparsetune.prune` and
`sparsetune.search`, registered under a name derived from their content and shipped to Ray workers.

Everything downstream of the options knows models and datasets by name (configs, the dense
cache key, trial hashes, tickets, MLflow). So an object gets a name that says what it is and a
hash of its pickled bytes (`python-Net-1a2b3c4d5e6f`, `python-data-...`): two different objects
never share a dense stage, a trial hash or a ticket's model name, and the same object given again
gets the same name. The name is registered in this process's `MODELS` or `DATASETS`, and the
object is kept as cloudpickle bytes (Ray's, which also ships trainables) in a `Shipped` record
that a sweep's `TrialTemplate` carries; a worker registers it under the same name before it
parses its config.

- An `nn.Module` instance is copied (to the CPU), never touched again: its architecture is the
  model, and its current weights are the dense stage, exactly as `--weights FILE` (not trained;
  methods that need an initialisation use the copy re-initialised by each layer's
  `reset_parameters()` under the trial's seed, see `sparsetune.models.weights`). The weights are
  written to a content-named file in the temporary folder, which `weights=` then names; a worker
  that lacks the file (another node) writes it from the shipped bytes.
- A callable is a factory, called with the keywords among `input_shape` and `num_classes` it
  takes (none for a zero-argument one), as an import path's would be; the dense stage trains.
- `(train, test)` data (tensor pairs or `Dataset`s) is decoded here once into checked tensors
  (`data.sources.from_train_and_test`), and those travel, never the `Dataset` objects; data
  that would stream (larger than the memory budget) is refused with a line saying so.

An object that cloudpickle cannot serialise is a one-line ValueError naming it.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from sparsetune.catalog import DATASETS, MODELS, factory_keywords

PREFIX = "python-"
HASH_LENGTH = 12
# Where an instance's weights are written: a content-named file, the same on every node.
WEIGHTS_FOLDER = Path(tempfile.gettempdir()) / "sparsetune-objects"


@dataclass(frozen=True)
class Shipped:
    """One registered object as a worker rebuilds it: its name, kind and cloudpickle bytes, and
    for an instance the weights file its trials name."""

    name: str
    kind: Literal["instance", "factory", "data"]
    payload: bytes
    weights: Path | None = None


def is_python_object(name: str) -> bool:
    """Whether `name` is that of a Python object given as model= or data= (no command names it)."""
    return name.startswith(PREFIX)


# name -> record, for the objects registered in this process (the driver's, or a worker's).
_REGISTERED: dict[str, Shipped] = {}
# name -> data whose record has no bytes yet (made once, when a sweep first needs them).
_UNPICKLED: dict[str, Any] = {}


def model_name(model: Any) -> tuple[str, Path | None]:
    """Register `model` (an `nn.Module` instance or a callable) and return its name, with the
    weights file that is its dense stage for an instance (None for a factory)."""
    from torch import nn

    if isinstance(model, nn.Module):
        copied = _copied(model)
        payload = _pickled(copied, f"model={_describe(model)}")
        name = _name(type(model).__name__, copied)
        weights = WEIGHTS_FOLDER / f"{name}.safetensors"
        _register(Shipped(name, "instance", payload, weights), copied)
        return name, weights
    if callable(model):
        _check_signature(model)
        payload = _pickled(model, f"model={_describe(model)}")
        name = _name(getattr(model, "__name__", type(model).__name__), model)
        _register(Shipped(name, "factory", payload), model)
        return name, None
    raise ValueError(
        f"model={_describe(model)}: give a name, an import path 'package.module:factory', a "
        "torch.nn.Module instance or a callable returning one"
    )


def data_name(data: Any, memory_budget_gb: float | None = None) -> str:
    """Register `(train, test)` data (pairs of tensors (x, y) or Datasets) and return its name;
    `memory_budget_gb` as the run's `memory_budget_gb=` (None: the default budget)."""
    from sparsetune.data.sources import from_train_and_test
    from sparsetune.data.tensors import TensorSet

    raw = from_train_and_test("data=", data, memory_budget_gb, given=True)
    if not all(isinstance(part, TensorSet) for part in (raw.train, raw.test)):
        raise ValueError(
            "data=: these Datasets are larger than the memory budget and would stream, which "
            "data given as Python objects cannot (it is decoded once and sent to the workers); "
            "pass a factory 'package.module:function' returning them, or raise the budget"
        )
    name = f"{PREFIX}data-{content_hash((raw.train.x, raw.train.y, raw.test.x, raw.test.y))}"
    if name not in _REGISTERED:
        # Tensors always pickle: the bytes are made when a sweep first ships them, not here.
        _register(Shipped(name, "data", b""), raw)
        _UNPICKLED[name] = raw
    return name


def shipped_for(names: Iterable[str]) -> tuple[Shipped, ...]:
    """The records of those of `names` registered here: what a worker needs to rebuild them."""
    for name in names:
        if name in _UNPICKLED:
            record = _REGISTERED[name]
            _REGISTERED[name] = replace(record, payload=_pickled(_UNPICKLED.pop(name), "data="))
    return tuple(_REGISTERED[name] for name in names if name in _REGISTERED)


def register_shipped(records: Iterable[Shipped]) -> None:
    """In a worker: register each record's name as the driver did (once per process), writing
    an instance's weights file where it is missing."""
    from ray import cloudpickle

    for record in records:
        if record.name not in _REGISTERED:
            _register(record, cloudpickle.loads(record.payload))


def _register(record: Shipped, target: Any) -> None:
    if record.kind == "data":
        DATASETS.register(record.name, _loader(target), listed=False)
    elif record.kind == "factory":
        MODELS.register(record.name, _factory(target), listed=False)
    else:
        MODELS.register(record.name, _reinitialised_copies(target), listed=False)
        assert record.weights is not None
        _write_weights(target, record.weights)
    _REGISTERED[record.name] = record


def _loader(raw: Any) -> Callable[[Any], Any]:
    def load_python_data(config: Any) -> Any:  # a dataset loader: (DataConfig) -> RawData
        return raw

    return load_python_data


def _factory(function: Callable[..., Any]) -> Callable[..., Any]:
    """`function` under a name the registry can print; its signature stays visible (the
    keywords it is called with are read from it)."""

    def build_python_model(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    try:
        build_python_model.__signature__ = inspect.signature(function)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        pass
    return build_python_model


def _reinitialised_copies(prototype: Any) -> Callable[[], Any]:
    """A zero-argument factory: a fresh copy of the instance with each layer's parameters drawn
    again by its `reset_parameters()` (seeded by the caller), as a factory's new model would be;
    the instance's own weights are the dense stage (its weights file)."""

    def build_python_model() -> Any:
        model = copy.deepcopy(prototype)
        for module in model.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
        return model

    return build_python_model


def _write_weights(model: Any, path: Path) -> None:
    """The instance's state dict as safetensors (deterministic bytes: the weights' identity is
    the file's hash), written once; tied tensors are saved as copies."""
    if path.is_file():
        return
    from safetensors.torch import save_file

    from sparsetune.atomic import atomic_write_bytes

    state = {key: value.detach().contiguous().clone() for key, value in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as folder:
        scratch = Path(folder) / path.name
        save_file(state, str(scratch))
        atomic_write_bytes(path, scratch.read_bytes())


def _copied(model: Any) -> Any:
    try:
        return copy.deepcopy(model).cpu()
    except Exception as error:
        raise ValueError(_unshippable(f"model={_describe(model)}", error)) from None


def _pickled(value: Any, what: str) -> bytes:
    from ray import cloudpickle

    try:
        return cloudpickle.dumps(value)
    except Exception as error:
        raise ValueError(_unshippable(what, error)) from None


def _unshippable(what: str, error: Exception) -> str:
    problem = (str(error).strip().splitlines() or [""])[0]
    return (
        f"{what} cannot be copied and sent to a worker ({type(error).__name__}: {problem}); "
        "keep unpicklable state (locks, open files, connections) out of it, or pass an import "
        "path 'package.module:factory'"
    )


def _check_signature(function: Callable[..., Any]) -> None:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # some builtins have none: the build check decides
        return
    try:
        signature.bind(**factory_keywords(function, (1,), 2))
    except TypeError:
        raise ValueError(
            f"model={_describe(function)} must be callable with no arguments (or with keywords "
            f"input_shape and num_classes only); its signature is {signature}"
        ) from None


def _name(label: str, value: Any) -> str:
    readable = re.sub(r"[^A-Za-z0-9_.]+", "", label)[:40] or "model"
    return f"{PREFIX}{readable}-{content_hash(value)}"


def content_hash(value: Any) -> str:
    """A hash of `value`'s cloudpickle form with each tensor's bytes in place of its pickled
    storage: torch's pickles of a tensor differ from call to call (a serialisation id), the
    bytes do not, so the same object always gets the same hash."""
    import io

    import torch
    from ray import cloudpickle

    from sparsetune.search.private_api import pickled_class_ids

    digest = hashlib.sha256()

    class Hashing(cloudpickle.Pickler):
        def persistent_id(self, obj: Any) -> str | None:
            if not isinstance(obj, torch.Tensor):
                return None
            tensor = obj.detach().cpu().contiguous()
            digest.update(repr((type(obj).__name__, tuple(tensor.shape), tensor.dtype)).encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
            return "tensor"

    buffer = io.BytesIO()
    Hashing(buffer).dump(value)
    pickled = buffer.getvalue()
    # A class pickled by value (defined in a script or notebook) carries an id that cloudpickle
    # draws at random once per process: left out, so a new process gives the same name.
    for drawn_id in pickled_class_ids():
        pickled = pickled.replace(drawn_id.encode(), b"")
    digest.update(pickled)
    return digest.hexdigest()[:HASH_LENGTH]


def _describe(value: Any) -> str:
    if inspect.isfunction(value) or inspect.isclass(value):
        return value.__name__
    return f"<{type(value).__name__} object>"
