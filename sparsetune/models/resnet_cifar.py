"""The CIFAR ResNets of He et al. (CVPR 2016, section 4.2), as the pruning papers train them.

A 3x3 convolution with 16 channels, then three stages of n basic blocks with 16, 32 and 64
channels (the first block of stages 2 and 3 halves the resolution with stride 2), global average
pooling and one linear layer: 6n + 2 weighted layers, so n = 3 for ResNet-20 and n = 5 for
ResNet-32. Every convolution is followed by BatchNorm and has no bias.

Shortcut: option B (a 1x1 convolution with stride 2, plus BatchNorm, where the shape changes;
identity elsewhere), as in GraSP's `models/base/resnet.py` and open_lth's `cifar_resnet.py`.
Departure from He et al., whose CIFAR nets use option A (zero-padded identity, no parameters):
option B adds 2,560 weights to ResNet-20 (272,474 parameters in all, the count open_lth's tests
pin) and keeps every path through the net a prunable convolution.

`width` multiplies every channel count. GraSP's ResNet-32 (Wang et al. 2020) is twice as wide:
its code builds stages of 32, 64 and 128 channels (`_outputs = [32, 64, 128]`), about 1.86M
parameters; `resnet32x2` is that network.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from sparsetune.models.initialisation import image_shape, init_like_grasp

STAGE_CHANNELS = (16, 32, 64)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                    bn=nn.BatchNorm2d(out_channels),
                )
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + residual)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images.

    Architecture string (`architecture_units`): the output channels of every convolution in
    forward order (stem, then each block's conv1, conv2 and, where present, its shortcut conv),
    then the input features of `fc`; e.g. "16-16-16-...-64-64" for a dense ResNet-20. Per
    convolution rather than per stage: a stage's width is shared by the residual stream of all
    its blocks and cannot be read off any one weight.
    """

    output_layer = "fc"

    def __init__(
        self,
        depth: int,
        input_shape: tuple[int, ...] = (3, 32, 32),
        num_classes: int = 10,
        width: int = 1,
    ):
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"ResNet depth must be 6n + 2 (20, 32, 44, ...), got {depth}")
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer multiplier, got {width!r}")
        channels, _, _ = image_shape(f"resnet{depth}", input_shape, min_size=4)
        blocks_per_stage = (depth - 2) // 6
        widths = [c * width for c in STAGE_CHANNELS]

        self.conv1 = nn.Conv2d(channels, widths[0], 3, 1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        in_channels = widths[0]
        stages = []
        for index, out_channels in enumerate(widths):
            stride = 1 if index == 0 else 2
            blocks = []
            for block in range(blocks_per_stage):
                blocks.append(BasicBlock(in_channels, out_channels, stride if block == 0 else 1))
                in_channels = out_channels
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(widths[-1], num_classes)

        convs = [f"{name}.weight" for name, m in self.named_modules() if isinstance(m, nn.Conv2d)]
        self.architecture_units = (*((name, "out") for name in convs), ("fc.weight", "in"))
        self.apply(init_like_grasp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        # Global average pooling: GraSP's avg_pool2d over the whole 8x8 map on 32x32 inputs.
        return self.fc(out.mean(dim=(2, 3)))


def resnet20(input_shape: tuple[int, ...] = (3, 32, 32), num_classes: int = 10) -> CifarResNet:
    """ResNet-20: 16/32/64 channels, 3 blocks per stage, 272,474 parameters on CIFAR-10."""
    return CifarResNet(20, input_shape, num_classes)


def resnet32(input_shape: tuple[int, ...] = (3, 32, 32), num_classes: int = 10) -> CifarResNet:
    """ResNet-32: 16/32/64 channels, 5 blocks per stage, 466,906 parameters on CIFAR-10."""
    return CifarResNet(32, input_shape, num_classes)


def resnet32x2(input_shape: tuple[int, ...] = (3, 32, 32), num_classes: int = 10) -> CifarResNet:
    """GraSP's ResNet-32: 32/64/128 channels, 1,860,522 parameters on CIFAR-10."""
    return CifarResNet(32, input_shape, num_classes, width=2)
