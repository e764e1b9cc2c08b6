"""Finding and reading a ticket: the masks and squashed weights one trial round saved.

A ticket is a `round-N.safetensors` file (`sparsetune.trial.tickets.write_ticket`): tensors
`mask.<name>` (bool) and `weight.<name>` (the plain state dict, pruned weights already zero), and a
header (`sparsetune.export.header`) naming the model, its input shape and class count, and the
round's metrics. A folder stands for its final ticket: the round that `result.json` names (a
`sparsetune prune --out` folder), else the highest round-N.safetensors in it (a trial folder, or
the `ticket/` artifacts of an MLflow run).

The model is built from the header's name, or from what the caller gives as `model=`: an
`nn.Module` instance (deep-copied: its architecture is used, its weights replaced by the file's),
a callable returning one, or a name or import path overriding the header's. A ticket of a model
given to `sparsetune.prune`/`search` as a Python object names it `python-<Class>-<hash>`
(`sparsetune.search.objects`), which only the process that registered it knows: elsewhere the
caller must give the model.

Opening a file runs no code of the file's choosing. A header that names user code to build its
model (`package.module:factory`) is built only when the caller says to trust it
(`trust_code=True`, `--trust-code`), or gives `model=`; registered names and torchvision's and
timm's builders need no trust (`header.check_trusted`). Even then the module is imported from the
installed packages and PYTHONPATH, never from the working folder or the file's own folder that
Python may have put on `sys.path` (`python -m`, `-c`, a notebook). A model named by the header is
first built on the meta device, which allocates nothing, and checked against the file's tensor
shapes; it is built for real only when they agree, so no header makes sparsetune allocate more
than the file itself holds.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn.utils import parametrize

from sparsetune.catalog import factory_keywords
from sparsetune.export.header import check_trusted, excerpt, read_file
from sparsetune.export.structured import swap_changes
from sparsetune.models import MODELS, build_model
from sparsetune.pruning.masking import attach_masks
from sparsetune.results import read_record
from sparsetune.validation import check_path_kind

ROUND_FILE = re.compile(r"round-(\d+)\.safetensors")
# The form of the names `sparsetune.search.objects` gives Python objects (`_name`: "python-",
# a label of at most 40 of these characters, "-", a 12-digit hex content hash); the search layer
# is above this one, so the form is repeated here (a test checks that the two agree).
GENERATED_NAME = re.compile(r"python-[A-Za-z0-9_.]{1,40}-[0-9a-f]{12}")

# What `model=` may be: an instance, a callable returning one, or a name or import path.
ModelSource = nn.Module | Callable[..., nn.Module] | str


def find_ticket(path: Path) -> Path:
    """The ticket file `path` stands for (see the module docstring); one-line ValueError if none."""
    path = Path(path)
    if path.is_file():
        if path.name == "init.safetensors":
            raise ValueError(
                f"{path}: holds a trial's initial weights, not a ticket; pass a "
                "round-N.safetensors file or the folder that holds it"
            )
        return path
    if not path.is_dir():
        if path.exists():  # a FIFO, a device, a socket: named, never opened
            check_path_kind(path, "file")
        raise ValueError(f"{path}: no such file or folder")
    result = path / "result.json"
    if result.is_file():  # a `sparsetune prune --out` folder names its final round
        try:
            final = json.loads(read_record(result)).get("round")
        except (ValueError, AttributeError, RecursionError):
            final = None
        if isinstance(final, int) and (path / f"round-{final}.safetensors").is_file():
            return path / f"round-{final}.safetensors"
    rounds = {
        int(match.group(1)): child
        for child in path.iterdir()
        if (match := ROUND_FILE.fullmatch(child.name)) and child.is_file()
    }
    if not rounds:
        raise ValueError(
            f"{path}: no round-N.safetensors ticket in this folder; pass a `sparsetune prune "
            "--out` folder, a trial folder or a ticket file"
        )
    return rounds[max(rounds)]


@dataclass(frozen=True)
class Ticket:
    """One round's ticket, read back: its header, plain weights and binary masks."""

    path: Path
    info: dict[str, Any]
    weights: dict[str, torch.Tensor]  # the plain (squashed) state dict: original key names
    masks: dict[str, torch.Tensor]  # bool, by weight name ("fc1.weight")
    # The caller's `model=` (see the module docstring); None: the header's name.
    model: ModelSource | None = field(default=None, repr=False, compare=False)
    # Whether the header's `package.module:factory` may be imported (see the module docstring).
    trust_code: bool = field(default=False, repr=False, compare=False)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.info["input_shape"])

    def fresh_model(self) -> nn.Module:
        """A new model of the ticket's architecture (the caller's `model=`, else the header's
        name) that fits the ticket's weights, with whatever weights it was built with."""
        shapes = {key: tuple(value.shape) for key, value in self.weights.items()}
        return fitting_model(self.info, shapes, self.path, self.model, trust_code=self.trust_code)

    def plain_model(self) -> nn.Module:
        """A fresh instance of the original class with the ticket's weights and no masks, in
        eval mode; its forward equals the masked model's (the weights are squashed)."""
        model = self.fresh_model()
        load_fitting(model, self.weights, self.path, self.info, self.model)
        return model.eval()

    def masked_model(self) -> nn.Module:
        """The plain model with the ticket's masks attached (in eval mode): training it keeps
        every pruned weight at exactly zero."""
        model = self.plain_model()
        check_weights(model, list(self.masks), self.path)
        attach_masks(model, list(self.masks)).update(self.masks)
        return model


def check_weights(model: nn.Module, names: list[str], path: Path) -> None:
    """One-line ValueError when a name the file masks is not a weight (a parameter) of `model`:
    a mask can only sit on a parameter."""
    parameters = dict(model.named_parameters())
    stray = [name for name in names if name not in parameters]
    if stray:
        raise ValueError(
            f"{path}: it masks {excerpt(stray[0])}, which is not a weight of the model; use the "
            "file as sparsetune wrote it"
        )


def new_model(
    info: dict[str, Any],
    model: ModelSource | None = None,
    path: Path | None = None,
    *,
    trust_code: bool = False,
) -> nn.Module:
    """A new model for the file at `path` whose header is `info`: built from `model` when given
    (see the module docstring), else from the header's name. One-line ValueError if it cannot
    be built: an unknown name, a user factory that is not importable here or that fails, user
    code named by the header without `trust_code`, or a Python object's name from another
    process."""
    if model is None:
        check_buildable(info, path)
        check_trusted(info, path, trust_code)
        with imports_for_a_file(path):
            try:
                return build_model(info["model"], tuple(info["input_shape"]), info["num_classes"])
            except ValueError as error:  # an unknown name, an import or a factory that fails
                raise ValueError(f"{path}: {error}" if path is not None else str(error)) from None
    if isinstance(model, str):
        return build_model(model, tuple(info["input_shape"]), info["num_classes"])
    if isinstance(model, nn.Module):
        if any(parametrize.is_parametrized(module) for module in model.modules()):
            raise ValueError(
                f"model=<{type(model).__name__} object> has masks attached "
                "(parametrizations); pass the model without them (load with masks=False)"
            )
        try:
            return copy.deepcopy(model).cpu()
        except Exception as error:
            problem = (str(error).strip().splitlines() or [""])[0]
            raise ValueError(
                f"model=<{type(model).__name__} object> cannot be copied ({type(error).__name__}: "
                f"{problem}); pass a callable returning a new instance instead"
            ) from None
    if callable(model):
        label = getattr(model, "__name__", type(model).__name__)
        try:
            keywords = factory_keywords(model, tuple(info["input_shape"]), info["num_classes"])
            built = model(**keywords)
        except Exception as error:  # the user's code failed: one line naming it
            problem = (str(error).strip().splitlines() or [""])[0]
            raise ValueError(
                f"model={label}: calling it raised {type(error).__name__}: {problem}"
            ) from None
        if not isinstance(built, nn.Module):
            raise ValueError(
                f"model={label} returned a {type(built).__name__}, not a torch.nn.Module"
            )
        return built
    raise ValueError(
        f"model=<{type(model).__name__} object>: give a torch.nn.Module instance, a callable "
        "returning one, or a model name or import path 'package.module:factory'"
    )


def check_buildable(info: dict[str, Any], path: Path | None = None) -> None:
    """One-line ValueError when the header names a Python object's generated name that this
    process has not registered (the ticket was made in another process): only the caller can
    say what that model was."""
    name = info["model"]
    if isinstance(name, str) and GENERATED_NAME.fullmatch(name) and name not in MODELS:
        where = f"{path}: " if path is not None else ""
        raise ValueError(
            f"{where}its model {name} was a Python object given to sparsetune in another "
            "process, which cannot be rebuilt here; pass model= (an instance of the same class, "
            "or the factory that built it), e.g. sparsetune.load(path, model=Net())"
        )


def fitting_model(
    info: dict[str, Any],
    shapes: Mapping[str, Sequence[int]],
    path: Path,
    model: ModelSource | None = None,
    *,
    trust_code: bool = False,
    changed: dict[str, Any] | None = None,
) -> nn.Module:
    """A new model (see `new_model`) whose state dict has exactly the keys and `shapes` of the
    file at `path` (header `info`), its weights as built; with `changed` (a structured file's
    layers by module path), those layers swapped in. A model the header names is first built on
    the meta device and checked, so a file that does not fit is refused before anything is
    allocated. One-line ValueError naming the file and the first difference."""
    if model is None or isinstance(model, str):
        blank = _on_meta(info, model, path, trust_code)
        if blank is not None:
            _fit(blank, shapes, path, info, model, changed)
    return _fit(
        new_model(info, model, path, trust_code=trust_code), shapes, path, info, model, changed
    )


def _on_meta(
    info: dict[str, Any], model: str | None, path: Path, trust_code: bool
) -> nn.Module | None:
    """The model the header (or `model`, a name) names, built on the meta device: shapes
    without storage. None when its factory cannot build there (a builder that reads a value
    back, e.g. `tensor.item()`): the real build then decides."""
    if model is None:
        check_buildable(info, path)
        check_trusted(info, path, trust_code)
    name = info["model"] if model is None else model
    # The caller's own name imports as the caller's code does; the header's, as a file's.
    imports = imports_for_a_file(path) if model is None else contextlib.nullcontext()
    with torch.device("meta"), imports:
        try:
            return build_model(name, tuple(info["input_shape"]), info["num_classes"])
        except ValueError:
            return None


def _fit(
    built: nn.Module,
    shapes: Mapping[str, Sequence[int]],
    path: Path,
    info: dict[str, Any],
    model: ModelSource | None,
    changed: dict[str, Any] | None,
) -> nn.Module:
    """`built` checked against the file's `shapes` (the layers it does not change first, then
    with the changed layers swapped in); returns it."""
    skip = tuple(f"{name}." for name in changed or {})
    mismatch = first_mismatch(shapes_of(built), shapes, skip=skip)
    if mismatch:
        raise misfit(path, info, model, mismatch)
    if changed:
        try:
            swap_changes(built, changed)
        except ValueError as error:
            hint = "; pass the class or factory the file was made from" if model is not None else ""
            raise ValueError(f"{path}: {error}{hint}") from None
        mismatch = first_mismatch(shapes_of(built), shapes)
        if mismatch:
            raise misfit(path, info, model, mismatch)
    return built


def shapes_of(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """The shapes of `model`'s state dict, by key."""
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


@contextlib.contextmanager
def imports_for_a_file(path: Path | None) -> Iterator[None]:
    """Import what a file's header names from the installed packages and PYTHONPATH only:
    while inside, `sys.path` lacks the working folder (`""`, ".", or its absolute path, which
    `python -m`, `python -c` and notebooks put first) and the file's own folder, unless
    PYTHONPATH lists them. A `helpers.py` lying beside a downloaded file, or in the folder it
    is opened from, is never what a header's name imports. `path` None: the working folder only.
    """

    def resolved(entry: object) -> str | None:
        return os.path.realpath(entry or ".") if isinstance(entry, str) else None

    listed = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    explicit = {resolved(entry) for entry in listed if entry}
    unsafe = {resolved("")} | ({resolved(str(Path(path).parent))} if path is not None else set())
    saved = list(sys.path)
    sys.path[:] = [e for e in saved if resolved(e) in explicit or resolved(e) not in unsafe]
    try:
        yield
    finally:
        sys.path[:] = saved + [entry for entry in sys.path if entry not in saved]


def load_fitting(
    built: nn.Module,
    state: dict[str, torch.Tensor],
    path: Path,
    info: dict[str, Any],
    model: ModelSource | None,
) -> None:
    """Load `state` (the tensors of the file at `path`, whose header is `info`) into `built`,
    the model made from `model`, strictly; a one-line ValueError naming the file and the first
    mismatch (a key missing from the file, a key the model lacks, or a shape) otherwise."""
    mismatch = first_mismatch(shapes_of(built), {k: tuple(v.shape) for k, v in state.items()})
    if mismatch:
        raise misfit(path, info, model, mismatch)
    try:
        built.load_state_dict(state)
    except RuntimeError as error:  # e.g. a dtype torch cannot copy: its last line
        raise misfit(path, info, model, str(error).strip().splitlines()[-1].strip()) from None


def misfit(path: Path, info: dict[str, Any], model: ModelSource | None, problem: str) -> ValueError:
    """The one-line error for a file whose tensors do not fit the model built for it."""
    if model is None or isinstance(model, str):
        name = excerpt(model or info["model"], 80)
        return ValueError(f"{path}: its tensors do not fit {name} ({problem})")
    label = (
        f"<{type(model).__name__} object>"
        if isinstance(model, nn.Module)
        else getattr(model, "__name__", type(model).__name__)
    )
    return ValueError(
        f"{path}: its tensors do not fit model={label} ({problem}); pass the class or factory "
        "the file was made from"
    )


def first_mismatch(
    expected: Mapping[str, Sequence[int]],
    found: Mapping[str, Sequence[int]],
    skip: tuple[str, ...] = (),
) -> str | None:
    """The first difference between the shapes of the model's state dict, `expected`, and of
    the file's tensors, `found` (by key), in words; None when they agree. Keys starting with
    one of `skip` are not compared."""
    expected = {k: tuple(v) for k, v in expected.items() if not k.startswith(skip)}
    found = {k: tuple(v) for k, v in found.items() if not k.startswith(skip)}
    missing = [key for key in expected if key not in found]
    if missing:
        return f"the model has {missing[0]!r}, the file does not; {len(missing)} missing in all"
    unexpected = [key for key in found if key not in expected]
    if unexpected:
        return (
            f"the file has {excerpt(unexpected[0], quote=True)}, the model does not; "
            f"{len(unexpected)} unexpected in all"
        )
    for key, shape in expected.items():
        if found[key] != shape:
            return f"{key} is {list(found[key])} in the file, {list(shape)} in the model"
    return None


def read_ticket(
    path: Path, model: ModelSource | None = None, *, trust_code: bool = False
) -> Ticket:
    """The ticket at `path` (a file or a folder, see `find_ticket`), its header and tensor list
    checked before a tensor is read (`header.read_file`); `model`, when given, is the
    architecture its `plain_model` and `masked_model` are built from, and `trust_code` lets a
    header's `package.module:factory` be imported for them (see the module docstring). Reading
    builds no model."""
    path = find_ticket(path)
    info = read_file(path).info
    if info["format"] != "ticket":
        raise ValueError(
            f"{path}: is an exported {info['format']} file, not a ticket; load it with "
            "sparsetune.load, or export from the ticket it came from"
        )
    tensors = load_file(path)  # safetensors: tensors only, nothing is unpickled
    masks = {k.removeprefix("mask."): v.bool() for k, v in tensors.items() if k.startswith("mask.")}
    weights = {k.removeprefix("weight."): v for k, v in tensors.items() if k.startswith("weight.")}
    return Ticket(path, info, weights, masks, model, trust_code)
