"""Models by name, or any user model by import path.

Each entry is a factory `(input_shape, num_classes) -> nn.Module`, called with keyword arguments.
A name with a colon, "package.module:factory", is imported instead of looked up; it is called with
the keywords among `input_shape` and `num_classes` that its signature takes (torchvision's
`resnet18(num_classes=...)` gets `num_classes` only, a zero-argument factory none), and
`torchvision:NAME` is short for `torchvision.models:NAME`; `timm:NAME` builds
`timm.create_model(NAME, pretrained=False)` with `num_classes`, and the data's channels as
`in_chans`.
Optional attributes the metrics and pruning read: `architecture_units` (see
`sparsetune.pruning.metrics.architecture_string`) and `output_layer` (the name of the last layer,
which some methods prune less).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sparsetune.catalog import (
    MODELS,
    check_model_name,
    factory_keywords,
    is_import_path,
    model_factory,
)

if TYPE_CHECKING:
    from torch import nn

__all__ = ["MODELS", "build_model", "check_model_name", "is_import_path", "model_factory"]


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    from torch import nn

    factory = model_factory(name)
    try:
        model = factory(**factory_keywords(factory, input_shape, num_classes))
    except Exception as error:  # the user's code failed: one line naming it, not a traceback
        problem = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(
            f"model {name!r}: building it raised {type(error).__name__}: {problem}; fix the "
            "factory, or check what it is called with (input_shape, num_classes)"
        ) from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"model {name!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model
