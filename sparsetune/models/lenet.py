"""The LeNets of the pruning papers (Han et al. 2015; Louizos et al. 2018; Tartaglione et al. 2018).

Each model names the units that make its architecture string: `(parameter, axis)` pairs where
axis "out" counts output channels or neurons with any surviving weight and "in" counts input
neurons with any surviving weight, as Louizos et al. report LeNet-5 as conv1-conv2-fc1in-fc1out.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LeNet300(nn.Module):
    """LeNet-300-100: 784-300-100-10, ReLU; 266,200 weights on 28x28 inputs."""

    architecture_units = (("fc1.weight", "in"), ("fc2.weight", "in"), ("fc3.weight", "in"))
    output_layer = "fc3"

    def __init__(self, input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(math.prod(input_shape), 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(x.flatten(1)))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


class LeNet5(nn.Module):
    """Caffe's LeNet-5, 20-50-800-500: 430,500 weights on 28x28 inputs.

    Deviation from Caffe's prototxt: a ReLU follows each convolution, as in Louizos et al.'s
    official code; Caffe's net has a ReLU after fc1 only. The weight count is the same.
    """

    architecture_units = (
        ("conv1.weight", "out"),
        ("conv2.weight", "out"),
        ("fc1.weight", "in"),
        ("fc2.weight", "in"),
    )
    output_layer = "fc2"

    def __init__(self, input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10):
        super().__init__()
        channels, height, width = _image_shape(input_shape)
        self.conv1 = nn.Conv2d(channels, 20, kernel_size=5)
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5)
        flat = 50 * (((height - 4) // 2 - 4) // 2) * (((width - 4) // 2 - 4) // 2)
        self.fc1 = nn.Linear(flat, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


def _image_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3 or min(input_shape[1:]) < 16:
        raise ValueError(
            f"lenet5 needs images shaped (channels, height, width) of at least 16x16, "
            f"got {tuple(input_shape)}"
        )
    return input_shape[0], input_shape[1], input_shape[2]
