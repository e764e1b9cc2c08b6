"""What can be named: the models, datasets and pruning methods, as lazy registries.

This is the bottom layer's view of the extension points. It imports nothing but the registry, so
the configs check a name (`--model`, `--dataset`, `--method`) without loading torch; the object
behind a name is imported when it is first used. Each entry is one line, "name": "module:attr".
Installed packages add entries through the entry-point groups named below (see README, "Add a
pruning method"), or code calls `METHODS.register(name, Class)`.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable
from typing import Any

from sparsetune.registry import ExitedOnImport, NotImportable, Registry, import_object

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

# Short forms of the libraries whose builders work as they are: `torchvision:resnet18` is
# `torchvision.models:resnet18`. `timm:NAME` is `timm.create_model(NAME)` (`TimmModel`), so that
# every architecture timm knows, pretrained tags included (`resnet18.a1_in1k`), is one name.
SHORT_FORMS = {"torchvision": "torchvision.models"}
TIMM_PREFIX = "timm:"
# timm's names that fetch a config or weights from a hub or folder: never followed.
_TIMM_REMOTE = ("hf-hub:", "hf_hub:", "local-dir:")


def is_import_path(name: str) -> bool:
    return ":" in name


def expand_short_form(name: str) -> str:
    """`torchvision:resnet18` -> `torchvision.models:resnet18`; any other name as it is."""
    module, colon, attribute = name.partition(":")
    return f"{SHORT_FORMS.get(module, module)}{colon}{attribute}"


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
    if name.startswith(TIMM_PREFIX):
        check_timm_name(name)
        return TimmModel(name.removeprefix(TIMM_PREFIX))
    return _user_factory(
        name, expand_short_form(name), "a function or class building a torch.nn.Module"
    )


KEYWORD_ONLY = inspect.Parameter.KEYWORD_ONLY


def factory_keywords(
    factory: Callable[..., Any], input_shape: tuple[int, ...], num_classes: int
) -> dict[str, Any]:
    """The keywords to call `factory` with: those of `input_shape`, `num_classes` and `in_chans`
    (the input's channels, for inputs C x H x W or C x L) that its signature names. A factory with
    `**kwargs` and no `num_classes` of its own (torchvision's and timm's builders) gets
    `num_classes` through them, never `input_shape` (their models would refuse it); one of timm's
    builders also gets what `timm_keywords` gives. A signature Python cannot read gets
    `input_shape` and `num_classes`."""
    offered = {"input_shape": tuple(input_shape), "num_classes": num_classes}
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # some builtins have none: let the call decide
        return offered
    if len(input_shape) >= 2:
        offered["in_chans"] = input_shape[0]
    named = {
        name: value
        for name, value in offered.items()
        if name in parameters
        and parameters[name].kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, KEYWORD_ONLY)
    }
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    if takes_any and "num_classes" not in named:
        named["num_classes"] = num_classes
    if takes_any and str(getattr(factory, "__module__", "")).startswith("timm.models"):
        named = {**timm_keywords(factory.__name__, input_shape), **named}
    return named


class TimmModel:
    """`timm:NAME` as a factory: `timm.create_model(NAME, pretrained=False, num_classes=...)`
    with `timm_keywords`, so a 1-channel dataset gets a 1-channel stem. It never downloads:
    weights come from `--weights FILE`, never from timm's hub."""

    def __init__(self, model: str):
        self.model = model
        self.__name__ = model  # for messages and the object registry's names

    def __call__(self, input_shape: tuple[int, ...], num_classes: int) -> Any:
        import timm

        return timm.create_model(
            self.model,
            pretrained=False,
            num_classes=num_classes,
            **timm_keywords(self.model, input_shape),
        )

    def __repr__(self) -> str:
        return f"TimmModel({self.model!r})"


def timm_keywords(model: str, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """What timm's builders take of the data's input shape C x H x W: `in_chans` (every timm
    model), and `img_size` for the models built for one input size (ViTs, Swin: their pretrained
    config says `fixed_input_size`); nothing for other shapes."""
    if len(input_shape) != 3:
        return {}
    from timm.models import get_pretrained_cfg

    keywords: dict[str, Any] = {"in_chans": input_shape[0]}
    config = get_pretrained_cfg(model)
    if config is not None and config.fixed_input_size:
        keywords["img_size"] = tuple(input_shape[1:])
    return keywords


def check_timm_name(name: str) -> None:
    """A one-line ValueError unless timm is installed and knows the model of `timm:MODEL`,
    offering the closest of its names; hub and folder names (which download) are refused."""
    model = name.removeprefix(TIMM_PREFIX)
    if model.startswith(_TIMM_REMOTE):
        raise ValueError(
            f"{name!r}: sparsetune never downloads models; name the architecture "
            "(e.g. timm:resnet18) and pass trained weights with --weights FILE"
        )
    try:
        import timm
    except ImportError as error:
        raise ValueError(
            f"cannot import 'timm.models' for {name!r}: {error}; install timm (pip install timm)"
        ) from None
    if not timm.is_model(model):
        import difflib

        close = difflib.get_close_matches(model, timm.list_models(), n=3)
        hint = f"did you mean {', '.join(f'timm:{c}' for c in close)}? " if close else ""
        stem = re.match(r"[A-Za-z]*", model).group() or model
        raise ValueError(
            f"{name!r}: timm has no model {model!r}; {hint}list its names with "
            f"python -c \"import timm; print(timm.list_models('*{stem}*'))\""
        )


def check_model_name(name: str) -> str:
    """Return `name` if it is registered or names a usable factory; for the config's validator.

    A registered name is only looked up in the table (torch stays unimported); an import path is
    imported, and its factory must be callable with the keywords among `input_shape` and
    `num_classes` that it takes (none, for a zero-argument factory) and nothing else.
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
        signature.bind(**factory_keywords(factory, (3, 32, 32), 10))
    except TypeError:
        raise ValueError(
            f"{name!r} must be callable with keywords only, those it takes of input_shape and "
            f"num_classes (or none); its signature is {signature}"
        ) from None
    return name


# --- datasets: the user-data forms --------------------------------------------------------------
# Dataset names that are not in the table: a file or folder after a prefix, or an import path.
NPZ_PREFIX = "npz:"
IMAGEFOLDER_PREFIX = "imagefolder:"
_DATASET_FORMS = (
    "a factory 'package.module:function' returning (train, test), 'npz:FILE' or "
    "'imagefolder:FOLDER'"
)


def check_dataset_name(name: str) -> str:
    """`name` if it is a registered dataset or one of the user-data forms; for the validator.

    A registered name is only looked up (torch stays unimported). `npz:FILE` and
    `imagefolder:FOLDER` come back with the path made absolute (trials may run in another
    folder), read when the data loads; `package.module:factory` is imported now and must be
    callable, so a typo fails here.
    """
    for prefix in (NPZ_PREFIX, IMAGEFOLDER_PREFIX):
        if name.startswith(prefix):
            path = name.removeprefix(prefix).strip()
            if not path:
                raise ValueError(f"{name!r} names no path; write {prefix}PATH")
            return prefix + os.path.abspath(os.path.expanduser(path))
    if not is_import_path(name):
        try:
            return DATASETS.check(name)
        except ValueError as error:
            raise ValueError(f"{error}, or {_DATASET_FORMS}") from None
    dataset_factory(name)
    return name


def dataset_factory(name: str) -> Callable[[], Any]:
    """The zero-argument data factory at import path `name`; a one-line ValueError if none."""
    return _user_factory(name, name, "a zero-argument function returning (train, test)")


def _user_factory(name: str, path: str, what: str) -> Callable[..., Any]:
    """The callable at import `path` (given by the user as `name`); one-line ValueError if it
    cannot be imported, its module fails or exits while importing, or it is not callable."""
    try:
        factory = import_object(path)
    except NotImportable as error:
        raise ValueError(f"{error}; install the package or add its folder to PYTHONPATH") from None
    except ExitedOnImport:
        raise
    except Exception as error:  # the module itself failed while importing: one line, not a trace
        module = path.partition(":")[0]
        raise ValueError(
            f"{name!r}: importing {module!r} raised {type(error).__name__}: {error}"
        ) from None
    if not callable(factory):
        raise ValueError(f"{name!r} is not callable ({type(factory).__name__}); point it at {what}")
    return factory


def short_name(name: str) -> str:
    """`name` as one plain word for folder and experiment names: a data path keeps only its last
    part (`imagefolder:/data/cats` -> `imagefolder-cats`), and any character other than letters,
    digits, `.`, `_` and `-` becomes `-` (`torchvision:resnet18` -> `torchvision-resnet18`), so
    a default folder never nests under the path a name holds."""
    for prefix in (NPZ_PREFIX, IMAGEFOLDER_PREFIX):
        if name.startswith(prefix):
            name = f"{prefix}{os.path.basename(name.removeprefix(prefix).rstrip('/'))}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "data"
