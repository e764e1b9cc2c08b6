"""The structured format's layers: a shrunken `nn.Sequential` (`export.shrink`) as a JSON list,
or, for a network that is not a chain (ResNets, BatchNorm between layers), the layers of the
model's own class that shrinking changed, by module path; and back, through allow-lists only.

Each layer becomes `{"type": ..., ...}`: an `nn` layer by class name with its constructor
arguments, `SelectFeatures` with its index count, or `Call` with a function or tensor-method name
and its constant arguments. Rebuilding looks every name up in the tables below and nowhere else
(no `getattr` on a string from the file, no import), so a file can describe a network but never
run code of its choosing; anything outside the tables is a ValueError. The tables hold what
`shrink` produces from a chain-shaped model (the LeNets: Linear, Conv2d, torch.relu,
torch.max_pool2d, `x.flatten(1)`), the layers it narrows in other models (Linear, convolutions,
BatchNorm) and the parameter-free layers a user's `nn.Sequential` commonly has; exact types only,
since a subclass may override `forward`. A changed-layers file rebuilds the model its header names
(`sparsetune.models.build_model`, as the dense format does) and swaps in the described layers.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sparsetune.export.header import CALL_METHODS, LAYER_ARGS, check_layer, excerpt
from sparsetune.export.shrink import Call, SelectFeatures

# Class name -> (class, the constructor arguments read from (and set on) an instance); the
# names and their arguments are `header.LAYER_ARGS`, which the header check reads without torch.
_CLASSES: dict[str, type[nn.Module]] = {
    "Linear": nn.Linear,
    "Conv1d": nn.Conv1d,
    "Conv2d": nn.Conv2d,
    "Conv3d": nn.Conv3d,
    "BatchNorm1d": nn.BatchNorm1d,
    "BatchNorm2d": nn.BatchNorm2d,
    "ReLU": nn.ReLU,
    "ReLU6": nn.ReLU6,
    "LeakyReLU": nn.LeakyReLU,
    "ELU": nn.ELU,
    "GELU": nn.GELU,
    "SiLU": nn.SiLU,
    "Sigmoid": nn.Sigmoid,
    "Tanh": nn.Tanh,
    "Softmax": nn.Softmax,
    "LogSoftmax": nn.LogSoftmax,
    "Identity": nn.Identity,
    "Flatten": nn.Flatten,
    "Dropout": nn.Dropout,
    "Dropout2d": nn.Dropout2d,
    "MaxPool1d": nn.MaxPool1d,
    "MaxPool2d": nn.MaxPool2d,
    "AvgPool1d": nn.AvgPool1d,
    "AvgPool2d": nn.AvgPool2d,
    "AdaptiveAvgPool1d": nn.AdaptiveAvgPool1d,
    "AdaptiveAvgPool2d": nn.AdaptiveAvgPool2d,
}
MODULES: dict[str, tuple[type[nn.Module], tuple[str, ...]]] = {
    name: (layer_class, LAYER_ARGS[name]) for name, layer_class in _CLASSES.items()
}
_WITH_BIAS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)  # `bias` is a flag on the constructor

# What a traced `Call` may apply: torch functions by their public name, tensor methods by name.
FUNCTIONS: dict[str, Any] = {
    "torch.relu": torch.relu,
    "torch.sigmoid": torch.sigmoid,
    "torch.tanh": torch.tanh,
    "torch.flatten": torch.flatten,
    "torch.softmax": torch.softmax,
    "torch.log_softmax": torch.log_softmax,
    "torch.max_pool1d": torch.max_pool1d,
    "torch.max_pool2d": torch.max_pool2d,
    "torch.avg_pool1d": torch.avg_pool1d,
    "torch.nn.functional.relu": F.relu,
    "torch.nn.functional.relu6": F.relu6,
    "torch.nn.functional.leaky_relu": F.leaky_relu,
    "torch.nn.functional.elu": F.elu,
    "torch.nn.functional.gelu": F.gelu,
    "torch.nn.functional.silu": F.silu,
    "torch.nn.functional.sigmoid": F.sigmoid,
    "torch.nn.functional.tanh": F.tanh,
    "torch.nn.functional.softmax": F.softmax,
    "torch.nn.functional.log_softmax": F.log_softmax,
    "torch.nn.functional.max_pool1d": F.max_pool1d,
    "torch.nn.functional.max_pool2d": F.max_pool2d,
    "torch.nn.functional.avg_pool1d": F.avg_pool1d,
    "torch.nn.functional.avg_pool2d": F.avg_pool2d,
    "torch.nn.functional.adaptive_avg_pool1d": F.adaptive_avg_pool1d,
    "torch.nn.functional.adaptive_avg_pool2d": F.adaptive_avg_pool2d,
}
METHODS = CALL_METHODS
_FUNCTION_NAMES = {id(function): name for name, function in FUNCTIONS.items()}

UNSUPPORTED_HINT = "use --format sparse, which stores any model"


def _json_value(value: Any, where: str) -> Any:
    """A constructor or call argument as JSON (tuples become lists); ValueError otherwise."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return [_json_value(item, where) for item in value]
    raise ValueError(
        f"structured: {where} has an argument of type {type(value).__name__} that the format "
        f"cannot store; {UNSUPPORTED_HINT}"
    )


def _from_json(value: Any) -> Any:
    """Lists back to tuples: torch takes tuples for every sized argument these layers have."""
    if isinstance(value, list):
        return tuple(_from_json(item) for item in value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"structured: argument {value!r} is not a JSON scalar or list")


def describe_layer(module: nn.Module, index: int | str) -> dict[str, Any]:
    """One layer of a shrunken Sequential as JSON; ValueError for anything outside the tables."""
    where = f"layer {index} ({type(module).__name__})"
    if type(module) is SelectFeatures:
        return {"type": "SelectFeatures", "size": int(module.index.numel())}
    if type(module) is Call:
        spec: dict[str, Any] = {
            "type": "Call",
            "args": _json_value(list(module.args), where),
            "kwargs": {key: _json_value(v, where) for key, v in module.kwargs.items()},
        }
        if isinstance(module.target, str):
            if module.target not in METHODS:
                raise ValueError(
                    f"structured: {where} calls the tensor method {module.target!r}, which the "
                    f"format does not allow; {UNSUPPORTED_HINT}"
                )
            return {**spec, "method": module.target}
        name = _FUNCTION_NAMES.get(id(module.target))
        if name is None:
            target = getattr(module.target, "__name__", repr(module.target))
            raise ValueError(
                f"structured: {where} calls {target}, which the format does not allow; "
                f"{UNSUPPORTED_HINT}"
            )
        return {**spec, "function": name}
    entry = MODULES.get(type(module).__name__)
    if entry is None or type(module) is not entry[0]:
        raise ValueError(
            f"structured: {where} is not a layer type the format can rebuild; {UNSUPPORTED_HINT}"
        )
    args = {name: _json_value(getattr(module, name), where) for name in entry[1]}
    if isinstance(module, _WITH_BIAS):
        args["bias"] = module.bias is not None
    return {"type": type(module).__name__, "args": args}


def describe(model: nn.Sequential) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
    """The layer list and the tensors (the Sequential's own state_dict keys) of `model`."""
    layers = [describe_layer(module, index) for index, module in enumerate(model)]
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    return layers, tensors


def _build_layer(spec: Any, index: int | str) -> nn.Module:
    """One layer from its JSON: checked against the allow-lists first (`header.check_layer`,
    the header's own check), then built; ValueError naming the layer for anything else."""
    try:
        check_layer(spec, index)
    except ValueError as error:
        raise ValueError(f"structured: {error}") from None
    kind = spec["type"]
    try:
        if kind == "SelectFeatures":
            return SelectFeatures(torch.zeros(spec["size"], dtype=torch.long))
        if kind == "Call":
            args = _from_json(spec.get("args", []))
            kwargs = {key: _from_json(value) for key, value in spec.get("kwargs", {}).items()}
            if "method" in spec:
                return Call(spec["method"], args, kwargs)
            return Call(FUNCTIONS[spec["function"]], args, kwargs)
        args = {key: _from_json(value) for key, value in spec.get("args", {}).items()}
        return MODULES[kind][0](**args)
    except (KeyError, TypeError, ValueError, RuntimeError, OverflowError) as error:
        # an argument of a wrong type or value, as torch's constructor says
        problem = (str(error).strip().splitlines() or [type(error).__name__])[0][:80]
        raise ValueError(f"structured: layer {index} is malformed ({problem})") from None


def build_layers(layers: Any) -> nn.Sequential:
    """The Sequential a layer list describes, with the weights its constructors give (build it
    on the meta device to check the shapes without allocating); ValueError for any name outside
    the allow-lists or a malformed layer."""
    if not isinstance(layers, list) or not layers:
        raise ValueError("structured: the header has no layer list")
    return nn.Sequential(*(_build_layer(spec, index) for index, spec in enumerate(layers)))


def rebuild(layers: Any, tensors: dict[str, torch.Tensor]) -> nn.Sequential:
    """The Sequential a layer list describes, with its tensors loaded (strict); ValueError for
    any name outside the allow-lists or tensors that do not fit."""
    model = build_layers(layers)
    load_strict(model, tensors)
    return model.eval()


def describe_changes(
    small: nn.Module, fresh: nn.Module
) -> tuple[dict[str, dict[str, Any]], dict[str, torch.Tensor]]:
    """The layers of `small` (a shrunken copy of a `fresh` instance of the same class) that differ
    from `fresh`'s, by module path, and all of `small`'s tensors; ValueError if shrinking changed
    anything but the size and bias of allow-listed layers."""
    if type(small) is not type(fresh):
        raise ValueError(f"structured: {type(small).__name__} is not a {type(fresh).__name__}")
    before = dict(fresh.named_modules())
    after = dict(small.named_modules())
    if set(before) != set(after):
        raise ValueError(f"structured: shrinking changed the modules; {UNSUPPORTED_HINT}")
    changed = {}
    for name, module in after.items():
        if not name or next(module.children(), None) is not None:
            continue  # the model itself and containers: rebuilt by the factory
        old = before[name]
        if type(module) is not type(old):
            raise ValueError(f"structured: shrinking replaced {name}; {UNSUPPORTED_HINT}")
        if _shapes(module) == _shapes(old):
            continue
        changed[name] = describe_layer(module, name)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in small.state_dict().items()}
    return changed, tensors


def _shapes(module: nn.Module) -> dict[str, torch.Size]:
    return {name: t.shape for name, t in (*module.named_parameters(), *module.named_buffers())}


def swap_changes(fresh: nn.Module, changes: Any) -> nn.Module:
    """`fresh` (a new instance of the model the header names) with the described layers swapped
    in; ValueError for a path it does not have, a name outside the allow-lists, or a malformed
    layer."""
    if not isinstance(changes, dict) or not changes:
        raise ValueError("structured: the header has no changed layers")
    modules = dict(fresh.named_modules())
    for name, spec in changes.items():
        if not name or name not in modules or next(modules[name].children(), None) is not None:
            where = excerpt(name, quote=True)
            raise ValueError(f"structured: the model has no layer {where} to replace")
        fresh.set_submodule(name, _build_layer(spec, name))
    return fresh


def rebuild_changes(fresh: nn.Module, changes: Any, tensors: dict[str, torch.Tensor]) -> nn.Module:
    """`fresh` with the described layers swapped in (`swap_changes`) and the tensors loaded
    (strict); ValueError for tensors that do not fit."""
    model = swap_changes(fresh, changes)
    load_strict(model, tensors)
    return model.eval()


def load_strict(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    try:
        model.load_state_dict(tensors)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        raise ValueError(f"structured: the tensors do not fit the layers ({first[-1]})") from None
