"""Models by name, or any user model by import path.

Each entry is a factory `(input_shape, num_classes) -> nn.Module`, called with keyword arguments.
A name with a colon, "package.module:factory", is imported instead of looked up: the factory
must accept the same two keyword arguments. Optional attributes the metrics and pruning read:
`architecture_units` (see `sparsetune.pruning.metrics.architecture_string`) and `output_layer`
(the name of the last layer, which some methods prune less).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sparsetune.catalog import (
    MODELS,
    check_model_name,
    is_import_path,
    model_factory,
)

if TYPE_CHECKING:
    from torch import nn

__all__ = ["MODELS", "build_model", "check_model_name", "is_import_path", "model_factory"]


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    from torch import nn

    model = model_factory(name)(input_shape=tuple(input_shape), num_classes=num_classes)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model {name!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model
