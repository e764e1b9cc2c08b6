"""A search space for a model that has none of its own, built from its prunable layers.

A model without `search_spaces/<model>.yaml` (an import path, a builder registered by a plugin)
gets a space built here: the dense recipe that `sparsetune prune` would use for it
(`recipe.method_recipe`: the model's recipe file, else TrainConfig's defaults; `--epochs`
shortens it as for a built-in space), and every registered method that has a fragment
(`space.method_fragment`, plugins' included, in the catalog's order) and applies to the model,
each from its fragment, adapted to the model's layers.

The model is built on the CPU from its factory with the data's input shape and classes, and its
prunable layers (`pruning.masking.prunable_parameters`: every Linear and Conv weight) decide:
- a model without any prunable layer gets no space (nothing to prune: the error says so);
- a knob that acts on one kind of layer is left out where the model has none of that kind, so that
  trials do not spend the sampler's budget on a knob that changes nothing: `c_conv` and
  `conv_lambda_scale` without convolutions, `c_fc`, `fc_lambda_scale` and `xavier_fc_scoring`
  without Linear layers (conv and fc as magnitude pruning tells them apart: a weight of more than
  two dimensions is a convolution's); a knob whose `when` names a knob left out goes too;
- `l0` applies to every model (its gates sit on Linear and Conv weights alike), but with BatchNorm
  in the model its granularity is `weight`: a channel gate before BatchNorm is rescaled away by
  it (why the built-in CIFAR spaces leave L0 out);
- `sensitivity` applies where every prunable layer is a Linear or a Conv2d and the model has no
  BatchNorm: these are the layers whose output sensitivity it measures per example, and BatchNorm
  mixes the examples of a batch (the built-in CIFAR spaces leave it out too);
- every other method (dense, magnitude, lottery, snip, grasp, random, a plugin's) applies as its
  fragment gives it.
Spaces hold scalars only, so the per-layer knobs that a method's `check_layers` checks (a dict by
layer name, e.g. magnitude's `layer_c`) never appear in one: nothing in a generated space can name
a layer the model lacks. The result is validated like a space file (`space.validated_space`).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsetune.catalog import METHODS
from sparsetune.recipe import method_recipe
from sparsetune.search.objects import is_python_object
from sparsetune.search.options import DEFAULT_DATASET
from sparsetune.search.space import (
    SPACES_DIR,
    SearchSpace,
    method_fragment,
    read_yaml,
    space_yaml,
    validated_space,
)

if TYPE_CHECKING:
    from torch import nn

# A knob that acts only on one kind of layer: left out where the model has none of that kind.
CONV_KNOBS = ("c_conv", "conv_lambda_scale")
FC_KNOBS = ("c_fc", "fc_lambda_scale", "xavier_fc_scoring")
# The written space's header names at most this many layers.
_NAMES_SHOWN = 40


@dataclass(frozen=True)
class ModelLayers:
    """What a generated space needs to know of a model's layers."""

    names: tuple[str, ...]  # the prunable layers' module names, in the model's order
    conv: bool  # has a prunable convolution
    fc: bool  # has a prunable Linear layer
    batch_norm: bool  # has a BatchNorm layer
    linear_or_conv2d: bool  # every prunable layer is a Linear or a Conv2d

    @classmethod
    def of(cls, model: nn.Module) -> ModelLayers:
        from torch import nn

        from sparsetune.pruning.masking import prunable_parameters

        batch_norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)

        weights = prunable_parameters(model)
        modules = [model.get_submodule(name.rpartition(".")[0]) for name in weights]
        dims = [module.weight.dim() for module in modules]
        return cls(
            names=tuple(name.rpartition(".")[0] or "(the model itself)" for name in weights),
            conv=any(dim > 2 for dim in dims),
            fc=any(dim <= 2 for dim in dims),
            batch_norm=any(isinstance(module, batch_norms) for module in model.modules()),
            linear_or_conv2d=all(isinstance(m, nn.Linear | nn.Conv2d) for m in modules),
        )


@dataclass(frozen=True)
class GeneratedSpace:
    """A space built for `model`: the validated space, and what a person reads about it."""

    model: str
    space: SearchSpace
    layers: ModelLayers
    input_shape: tuple[int, ...]
    num_classes: int
    resolved: dict[str, Any]  # the space as a space file holds it, methods inline
    notes: dict[str, str]  # per method: its fragment, and how it was adapted
    left_out: dict[str, str]  # method -> why it does not apply

    def summary(self) -> str:
        """ "generated for M from its N prunable layers and methods a, b, c" """
        count = len(self.layers.names)
        layers = f"{count} prunable layer{'s' if count != 1 else ''}"
        return (
            f"generated for {self.model} from its {layers} and methods "
            f"{', '.join(self.space.method_names)}"
        )

    def note(self, dataset: str) -> str:
        """Where the space came from, and the command that writes it out for editing (none for
        a Python object, which no command line can name)."""
        if is_python_object(self.model) or is_python_object(dataset):
            return f"{self.summary()}; to choose the space yourself, pass space= a space file"
        data = "" if dataset == DEFAULT_DATASET else f" --dataset {dataset}"
        return (
            f"{self.summary()}; write it out with "
            f"`sparsetune space --model {self.model}{data} > space.yaml`"
        )

    def yaml(self) -> str:
        """The space as one file that `--space` reads back to the same space."""
        shape = "x".join(str(d) for d in self.input_shape)
        names = list(self.layers.names[:_NAMES_SHOWN])
        if len(self.layers.names) > _NAMES_SHOWN:
            names.append(f"and {len(self.layers.names) - _NAMES_SHOWN} more")
        about = (
            f"Search space for {self.model}, generated by sparsetune from its "
            f"{len(self.layers.names)} prunable layers ({', '.join(names)}) for input {shape} "
            f"and {self.num_classes} classes, and every method that applies (docs/search.md, "
            "'A space for your own model'). Edit it and pass it back with `sparsetune search "
            "--space FILE`."
        )
        header = textwrap.wrap(about, width=96, break_on_hyphens=False)
        header += [f"Left out: {method}: {why}." for method, why in self.left_out.items()]
        return space_yaml(header, self.resolved, self.notes)


def generate_space(
    model: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    methods: list[str] | None = None,
) -> GeneratedSpace:
    """The space of `model` built from its layers (the module docstring has the rules), limited
    to `methods` if given. Builds the model on the CPU; a one-line ValueError if it cannot be
    built, has nothing to prune, or a method in `methods` does not apply to it."""
    from sparsetune.models import build_model

    try:
        built = build_model(model, tuple(input_shape), num_classes)
    except ValueError as error:
        problem = str(error).removeprefix(f"model {model!r}: ")  # named once, as the option
        raise ValueError(f"--model {model}: {problem}") from None
    layers = ModelLayers.of(built)
    if not layers.names:
        raise ValueError(
            f"--model {model}: it has no Linear or Conv layer, so nothing to prune; point "
            "--model at a network with such layers"
        )
    fragments = {
        name: fragment
        for name in METHODS.in_order()
        if (fragment := method_fragment(name)) is not None
    }
    candidates = list(fragments)
    left_out = {name: why for name in candidates if (why := _why_not(name, layers))}
    if methods:
        unknown = [name for name in methods if name not in candidates]
        if unknown:
            raise ValueError(
                f"--methods: {', '.join(unknown)}: not a method with a search-space fragment; "
                f"choose among {', '.join(candidates)}"
            )
        refused = [name for name in methods if name in left_out]
        if refused:
            reasons = "; ".join(f"{name}: {left_out[name]}" for name in refused)
            raise ValueError(
                f"--methods: {reasons} (model {model}); leave it out of --methods, or pass a "
                "--space of your own"
            )
    chosen = [name for name in methods or candidates if name not in left_out]
    bodies, notes = {}, {}
    for name in chosen:
        fragment = fragments[name]
        body = read_yaml(fragment) or {}
        if not isinstance(body, dict):
            raise ValueError(f"{fragment}: a method's fragment is a mapping, parameter -> spec")
        bodies[name], changes = _adapted(name, body, layers)
        notes[name] = "; ".join([f"from {shown_path(fragment)}", *changes])
    train = method_recipe(model, "dense").train
    shape = "x".join(str(d) for d in input_shape)
    resolved = {
        "description": f"generated for {model} (input {shape}, {num_classes} classes)",
        "train": train.model_dump(mode="json"),
        "methods": bodies,
    }
    source = f"the space generated for {model}"
    space = validated_space(resolved, source, source)
    return GeneratedSpace(
        model=model,
        space=space,
        layers=layers,
        input_shape=tuple(input_shape),
        num_classes=num_classes,
        resolved=resolved,
        notes=notes,
        left_out=left_out,
    )


def _why_not(method: str, layers: ModelLayers) -> str | None:
    """Why `method` does not apply to a model with `layers`, or None where it does."""
    if method == "sensitivity" and not layers.linear_or_conv2d:
        return "it measures its sensitivities on Linear and Conv2d layers only"
    if method == "sensitivity" and layers.batch_norm:
        return "BatchNorm mixes the examples whose output sensitivity it measures"
    return None


def _adapted(method: str, body: dict[str, Any], layers: ModelLayers) -> tuple[dict, list[str]]:
    """The fragment `body` fitted to the model's layers, and a note per change."""
    absent = (CONV_KNOBS if not layers.conv else ()) + (FC_KNOBS if not layers.fc else ())
    kept, changes = {}, []
    for knob, spec in body.items():
        when = spec.get("when", {}) if isinstance(spec, dict) else {}
        if knob in absent:
            kind = "convolution" if knob in CONV_KNOBS else "Linear layer"
            changes.append(f"without {knob} (no {kind})")
        elif set(when) - set(kept):  # it depends on a knob left out
            changes.append(f"without {knob} (depends on {', '.join(set(when) - set(kept))})")
        else:
            kept[knob] = spec
    if method == "l0" and layers.batch_norm:
        kept["granularity"] = "weight"
        changes.append("granularity weight (BatchNorm would rescale channel gates away)")
    return kept, changes


def shown_path(path: Path | str) -> str:
    """A shipped space's or fragment's path as a reader finds it: relative to the spaces'
    folder's parent (`search_spaces/methods/l0.yaml`); any other path as it is."""
    try:
        return str(Path(path).resolve().relative_to(SPACES_DIR.parent))
    except ValueError:
        return str(path)
