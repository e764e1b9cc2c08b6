"""What can be named: the models, datasets and pruning methods, as lazy registries.

This is the bottom layer's view of the extension points. It imports nothing but the registry, so
the configs check a name (`--model`, `--dataset`, `--method`) without loading torch; the object
behind a name is imported when it is first used. Each entry is one line, "name": "module:attr".
Installed packages add entries through the entry-point groups named below (see README, "Add a
pruning method"), or code calls `METHODS.register(name, Class)`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from sparsetune.registry import Registry, import_object

# kind -> name -> "module:attribute". One line a name; the order is the one a search space's
# `methods: all` samples the methods in. Each kind also reads the entry-point group
# "sparsetune.<kind>s", through which installed packages add names.
BUILT_IN: dict[str, dict[str, str]] = {
    "model": {
        "lenet300": "sparsetune.models.lenet:LeNet300",
        "lenet5": "sparsetune.models.lenet:LeNet5",
        "resnet20": "sparsetune.models.resnet_cifar:resnet20",
        "resnet32": "sparsetune.models.resnet_cifar:resnet32",
        "resnet32x2": "sparsetune.models.resnet_cifar:resnet32x2",
        "vgg16": "sparsetune.models.vgg_cifar:vgg16",
        "vgg19": "sparsetune.models.vgg_cifar:vgg19",
    },
    "dataset": {
        "mnist": "sparsetune.data.mnist_like:load_mnist",
        "fashion-mnist": "sparsetune.data.mnist_like:load_fashion_mnist",
        "cifar10": "sparsetune.data.cifar:load_cifar10",
        "cifar100": "sparsetune.data.cifar:load_cifar100",
        "synthetic": "sparsetune.data.synthetic:load_synthetic",
    },
    "method": {
        "dense": "sparsetune.pruning.dense:Dense",
        "magnitude": "sparsetune.pruning.magnitude:MagnitudePruning",
        "lottery": "sparsetune.pruning.lottery:LotteryTicket",
        "l0": "sparsetune.pruning.l0:L0Regularization",
        "sensitivity": "sparsetune.pruning.sensitivity:SensitivityRegularization",
        "snip": "sparsetune.pruning.snip:SNIP",
        "grasp": "sparsetune.pruning.grasp:GraSP",
        "random": "sparsetune.pruning.random_pruning:RandomPruning",
    },
}


def _registry(kind: str) -> Registry:
    return Registry(kind, BUILT_IN[kind], entry_point_group=f"sparsetune.{kind}s")


MODELS = _registry("model")
DATASETS = _registry("dataset")
METHODS = _registry("method")


def method_config_class(method: str) -> Any:
    """The method's pydantic `Config` (its knobs). Imports the method's module, hence torch."""
    return METHODS[method].Config


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
