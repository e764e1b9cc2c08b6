"""What the CIFAR models share: the initialisation of GraSP's reference code, and the input check.

GraSP's `models/base/init_utils.py` (Wang et al. 2020, github.com/alecwangcq/GraSP), which its
VGG and ResNet both apply: Kaiming-normal convolutions (fan_out, ReLU gain), linear weights from
N(0, 0.01) with zero bias, BatchNorm scale 1 and shift 0. SNIP and GraSP score weights at
initialisation, so the initial distribution is part of the method being reproduced.
"""

from __future__ import annotations

from torch import nn


def init_like_grasp(module: nn.Module) -> None:
    """Apply with `model.apply(init_like_grasp)`."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.01)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def image_shape(model: str, input_shape: tuple[int, ...], min_size: int) -> tuple[int, int, int]:
    """(channels, height, width), or a ValueError naming what `model` needs."""
    if len(input_shape) != 3 or min(input_shape[1:]) < min_size:
        raise ValueError(
            f"{model} needs images shaped (channels, height, width) of at least "
            f"{min_size}x{min_size}, got {tuple(input_shape)}"
        )
    return input_shape[0], input_shape[1], input_shape[2]
