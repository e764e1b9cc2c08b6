"""Models by name. Each entry is a factory `(input_shape, num_classes) -> nn.Module`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sparsetune.registry import Registry

if TYPE_CHECKING:
    from torch import nn

MODELS = Registry(
    "model",
    {
        "lenet300": "sparsetune.models.lenet:LeNet300",
        "lenet5": "sparsetune.models.lenet:LeNet5",
    },
)


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return MODELS[name](input_shape=tuple(input_shape), num_classes=num_classes)
