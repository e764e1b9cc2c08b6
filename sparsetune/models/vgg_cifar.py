"""VGG-16 and VGG-19 for CIFAR (Simonyan & Zisserman 2015), in the variant SNIP and GraSP prune.

Variant: GraSP's `models/base/vgg.py` (github.com/alecwangcq/GraSP), the one behind its VGG-19
numbers in papers.md section 6: configurations D and E of the VGG paper, each 3x3 convolution
without bias followed by BatchNorm and ReLU, 2x2 max pooling after the first four stages only
(so a 32x32 image leaves the last stage at 2x2), average pooling to 1x1, and ONE linear layer
512 -> classes. Unlike the ImageNet VGG: no dropout and no 4096-wide fc layers.

Departure: GraSP pools with a fixed 2x2 window (4x4 for Tiny-ImageNet); here the pooling is
global, which is the same operation on those inputs and also works on other sizes (28x28).
Layer names follow Han et al.'s per-layer tables for VGG-16: `features.conv1_1` .. `conv5_3`.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from sparsetune.models.initialisation import image_shape, init_like_grasp

# Output channels of each convolution, stage by stage (VGG configurations D and E).
PLANS = {
    16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    19: ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}


class CifarVGG(nn.Module):
    """Architecture string (`architecture_units`): the output channels of every convolution,
    then the input features of the classifier, e.g. "64-64-128-...-512-512" (Louizos et al.'s
    notation, as for LeNet-5)."""

    output_layer = "classifier"

    def __init__(
        self, depth: int, input_shape: tuple[int, ...] = (3, 32, 32), num_classes: int = 10
    ):
        super().__init__()
        if depth not in PLANS:
            raise ValueError(f"VGG depth must be one of {sorted(PLANS)}, got {depth}")
        plan = PLANS[depth]
        # Four 2x2 poolings need at least 16 pixels a side to leave one pixel.
        in_channels, _, _ = image_shape(f"vgg{depth}", input_shape, min_size=16)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for stage, widths in enumerate(plan, start=1):
            for index, out_channels in enumerate(widths, start=1):
                suffix = f"{stage}_{index}"
                layers[f"conv{suffix}"] = nn.Conv2d(
                    in_channels, out_channels, 3, padding=1, bias=False
                )
                layers[f"bn{suffix}"] = nn.BatchNorm2d(out_channels)
                layers[f"relu{suffix}"] = nn.ReLU()
                in_channels = out_channels
            if stage < len(plan):
                layers[f"pool{stage}"] = nn.MaxPool2d(2)
        self.features = nn.Sequential(layers)
        self.classifier = nn.Linear(in_channels, num_classes)

        convs = [f"features.{name}.weight" for name in layers if name.startswith("conv")]
        self.architecture_units = (*((name, "out") for name in convs), ("classifier.weight", "in"))
        self.apply(init_like_grasp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def vgg16(input_shape: tuple[int, ...] = (3, 32, 32), num_classes: int = 10) -> CifarVGG:
    """VGG-16 (BatchNorm, one fc layer): 14,724,042 parameters on CIFAR-10."""
    return CifarVGG(16, input_shape, num_classes)


def vgg19(input_shape: tuple[int, ...] = (3, 32, 32), num_classes: int = 10) -> CifarVGG:
    """VGG-19 (BatchNorm, one fc layer): 20,035,018 parameters on CIFAR-10."""
    return CifarVGG(19, input_shape, num_classes)
