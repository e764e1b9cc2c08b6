"""Models by name, or any user model by import path.

Each entry is a factory `(input_shape, num_classes) -> nn.Module`, called with keyword arguments.
A name with a colon, "package.module:factory", is imported instead of looked up: the factory
must accept the same two keyword arguments. Optional attributes the metrics and pruning read:
`architecture_units` (see `sparsetune.train.metrics.architecture_string`) and `output_layer`
(the name of the last layer, which some methods prune less).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sparsetune.registry import Registry, import_object

if TYPE_CHECKING:
    from torch import nn

MODELS = Registry(
    "model",
    {
        "lenet300": "sparsetune.models.lenet:LeNet300",
        "lenet5": "sparsetune.models.lenet:LeNet5",
        "resnet20": "sparsetune.models.resnet_cifar:resnet20",
        "resnet32": "sparsetune.models.resnet_cifar:resnet32",
        "resnet32x2": "sparsetune.models.resnet_cifar:resnet32x2",
        "vgg16": "sparsetune.models.vgg_cifar:vgg16",
        "vgg19": "sparsetune.models.vgg_cifar:vgg19",
    },
)

_IMPORT_PATH_HINT = "or a factory 'package.module:function' importable here"


def is_import_path(name: str) -> bool:
    return ":" in name


def model_factory(name: str) -> Callable[..., Any]:
    """The factory for a registered name or an import path; one-line ValueError if neither.

    Importing a user's module runs its code (and usually imports torch); registered names
    import nothing until a model is built.
    """
    if not is_import_path(name):
        try:
            return MODELS[name]
        except ValueError as error:
            raise ValueError(f"{error}, {_IMPORT_PATH_HINT}") from None
    try:
        factory = import_object(name)
    except ValueError as error:
        raise ValueError(f"{error}; install the package or add its folder to PYTHONPATH") from None
    except Exception as error:  # the module itself failed while importing: one line, not a trace
        module = name.partition(":")[0]
        raise ValueError(
            f"{name!r}: importing {module!r} raised {type(error).__name__}: {error}"
        ) from None
    if not callable(factory):
        raise ValueError(
            f"{name!r} is not callable ({type(factory).__name__}); point it at a function or "
            "class taking (input_shape, num_classes)"
        )
    return factory


def check_model_name(name: str) -> str:
    """Return `name` if it is registered or names a usable factory; for the config's validator.

    A registered name is only looked up in the table (torch stays unimported); an import path is
    imported, and its factory must accept the keywords `input_shape` and `num_classes`.
    """
    if not is_import_path(name):
        try:
            return MODELS.check(name)
        except ValueError as error:
            raise ValueError(f"{error}, {_IMPORT_PATH_HINT}") from None
    factory = model_factory(name)
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # some builtins have none: let the call decide
        return name
    try:
        signature.bind(input_shape=(3, 32, 32), num_classes=10)
    except TypeError:
        raise ValueError(
            f"{name!r} must accept the keywords input_shape and num_classes; "
            f"its signature is {signature}"
        ) from None
    return name


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    from torch import nn

    model = model_factory(name)(input_shape=tuple(input_shape), num_classes=num_classes)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model {name!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model
