"""A module of user models, written at test time for `--model package.module:factory`."""

from __future__ import annotations

import textwrap
from pathlib import Path

# Four networks a user might bring: only Linear layers, only convolutions, convolutions with
# BatchNorm and a Linear head, and one with nothing to prune; and a factory that fails.
USER_MODELS = """
    from torch import nn

    def mlp(input_shape, num_classes):
        features = 1
        for size in input_shape:
            features *= size
        return nn.Sequential(
            nn.Flatten(), nn.Linear(features, 16), nn.ReLU(), nn.Linear(16, num_classes)
        )

    def all_conv(input_shape, num_classes):
        return nn.Sequential(
            nn.Conv2d(input_shape[0], 4, 3), nn.ReLU(), nn.Conv2d(4, num_classes, 3),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )

    class BatchNormNet(nn.Module):
        def __init__(self, input_shape, num_classes):
            super().__init__()
            self.conv = nn.Conv2d(input_shape[0], 4, 3)
            self.bn = nn.BatchNorm2d(4)
            self.head = nn.Linear(4, num_classes)

        def forward(self, x):
            return self.head(self.bn(self.conv(x)).relu().mean((2, 3)))

    def nothing_to_prune(input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.ReLU())

    def fails(input_shape, num_classes):
        raise RuntimeError("the weights file is missing")
"""
# The module's name: `USER_MODULE:mlp` is a --model.
USER_MODULE = "space_user_models"


def write_user_models(tmp_path: Path) -> Path:
    """Write the module into a new folder under `tmp_path`; returns the folder (for
    PYTHONPATH or sys.path)."""
    folder = tmp_path / "user_models"
    folder.mkdir()
    (folder / f"{USER_MODULE}.py").write_text(textwrap.dedent(USER_MODELS))
    return folder
