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

from sparsetune.export.shrink import Call, SelectFeatures

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

# Class name -> (class, the constructor arguments read from (and set on) an instance).
MODULES: dict[str, tuple[type[nn.Module], tuple[str, ...]]] = {
    "Linear": (nn.Linear, ("in_features", "out_features")),
    "Conv1d": (nn.Conv1d, _CONV_ARGS),
    "Conv2d": (nn.Conv2d, _CONV_ARGS),
    "Conv3d": (nn.Conv3d, _CONV_ARGS),
    "BatchNorm1d": (nn.BatchNorm1d, _NORM_ARGS),
    "BatchNorm2d": (nn.BatchNorm2d, _NORM_ARGS),
    "ReLU": (nn.ReLU, ("inplace",)),
    "ReLU6": (nn.ReLU6, ("inplace",)),
    "LeakyReLU": (nn.LeakyReLU, ("negative_slope", "inplace")),
    "ELU": (nn.ELU, ("alpha", "inplace")),
    "GELU": (nn.GELU, ("approximate",)),
    "SiLU": (nn.SiLU, ("inplace",)),
    "Sigmoid": (nn.Sigmoid, ()),
    "Tanh": (nn.Tanh, ()),
    "Softmax": (nn.Softmax, ("dim",)),
    "LogSoftmax": (nn.LogSoftmax, ("dim",)),
    "Identity": (nn.Identity, ()),
    "Flatten": (nn.Flatten, ("start_dim", "end_dim")),
    "Dropout": (nn.Dropout, ("p", "inplace")),
    "Dropout2d": (nn.Dropout2d, ("p", "inplace")),
    "MaxPool1d": (nn.MaxPool1d, _MAX_POOL_ARGS),
    "MaxPool2d": (nn.MaxPool2d, _MAX_POOL_ARGS),
    "AvgPool1d": (nn.AvgPool1d, _AVG_POOL_ARGS),
    "AvgPool2d": (nn.AvgPool2d, (*_AVG_POOL_ARGS, "divisor_override")),
    "AdaptiveAvgPool1d": (nn.AdaptiveAvgPool1d, ("output_size",)),
    "AdaptiveAvgPool2d": (nn.AdaptiveAvgPool2d, ("output_size",)),
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
METHODS = frozenset(
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
    if not isinstance(spec, dict):
        raise ValueError(f"structured: layer {index} is not an object")
    kind = spec.get("type")
    if kind == "SelectFeatures":
        return SelectFeatures(torch.zeros(int(spec["size"]), dtype=torch.long))
    if kind == "Call":
        args = _from_json(spec.get("args", []))
        kwargs = {str(key): _from_json(v) for key, v in dict(spec.get("kwargs", {})).items()}
        if "method" in spec:
            if spec["method"] not in METHODS:
                raise ValueError(f"structured: layer {index} calls a disallowed method")
            return Call(str(spec["method"]), args, kwargs)
        function = FUNCTIONS.get(spec.get("function"))
        if function is None:
            raise ValueError(f"structured: layer {index} calls a disallowed function")
        return Call(function, args, kwargs)
    if kind not in MODULES:
        raise ValueError(f"structured: layer {index} has the disallowed type {kind!r}")
    layer_class, allowed = MODULES[kind]
    args = dict(spec.get("args", {}))
    allowed_here = {*allowed, "bias"} if issubclass(layer_class, _WITH_BIAS) else set(allowed)
    unknown = sorted(set(args) - allowed_here)
    if unknown:
        raise ValueError(f"structured: layer {index} ({kind}) has unknown arguments {unknown}")
    return layer_class(**{key: _from_json(value) for key, value in args.items()})


def rebuild(layers: Any, tensors: dict[str, torch.Tensor]) -> nn.Sequential:
    """The Sequential a layer list describes, with its tensors loaded (strict); ValueError for
    any name outside the allow-lists or tensors that do not fit."""
    if not isinstance(layers, list) or not layers:
        raise ValueError("structured: the header has no layer list")
    modules = []
    for index, spec in enumerate(layers):
        try:
            modules.append(_build_layer(spec, index))
        except (KeyError, TypeError) as error:  # a missing field, or an argument of a wrong type
            raise ValueError(f"structured: layer {index} is malformed ({error})") from None
    model = nn.Sequential(*modules)
    _load_strict(model, tensors)
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


def rebuild_changes(fresh: nn.Module, changes: Any, tensors: dict[str, torch.Tensor]) -> nn.Module:
    """`fresh` (a new instance of the model the header names) with the described layers swapped
    in and the tensors loaded (strict); ValueError for a path it does not have, a name outside
    the allow-lists, or tensors that do not fit."""
    if not isinstance(changes, dict) or not changes:
        raise ValueError("structured: the header has no changed layers")
    modules = dict(fresh.named_modules())
    for name, spec in changes.items():
        if not name or name not in modules or next(modules[name].children(), None) is not None:
            raise ValueError(f"structured: the model has no layer {name!r} to replace")
        try:
            fresh.set_submodule(name, _build_layer(spec, name))
        except (KeyError, TypeError) as error:
            raise ValueError(f"structured: layer {name} is malformed ({error})") from None
    _load_strict(fresh, tensors)
    return fresh.eval()


def _load_strict(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    try:
        model.load_state_dict(tensors)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        raise ValueError(f"structured: the tensors do not fit the layers ({first[-1]})") from None
