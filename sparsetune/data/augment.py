"""Augmentation on batches of normalised tensors, vectorised over the batch.

The standard CIFAR augmentation (He et al. 2016; GraSP's and open_lth's training scripts):
`RandomCrop(32, padding=4)` then `RandomHorizontalFlip()`, which torchvision applies one PIL image
at a time before `ToTensor` and `Normalize`. Here the same distribution is drawn for a whole batch
at once and applied with one gather, on whichever device holds the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class CropAndFlip:
    """Pad each image by `padding` pixels, crop a random window of the original size, then flip
    it left-right with probability 1/2.

    torchvision pads the PIL image with black before normalising, so the padding here is `fill`,
    black in normalised units: one value per channel, (0 - mean) / std. Offsets are uniform on
    0..2*padding in each direction, as `RandomCrop` draws them. Random draws come from
    `generator` on the CPU, so a seed gives the same batches on every device.
    """

    padding: int = 4
    fill: tuple[float, ...] = (0.0,)

    def __post_init__(self) -> None:
        if self.padding < 0:
            raise ValueError(f"padding must be a non-negative integer (got {self.padding})")

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        count, channels, height, width = x.shape
        pad = self.padding
        draws = torch.empty((3, count), dtype=torch.int64)
        draws[:2] = torch.randint(0, 2 * pad + 1, (2, count), generator=generator)
        draws[2] = torch.randint(0, 2, (count,), generator=generator)
        if x.device.type == "cuda":
            # A copy from pageable memory would wait for the GPU's queue every batch; from pinned
            # memory it is queued like a kernel (the caching host allocator keeps it alive).
            draws = draws.pin_memory().to(x.device, non_blocking=True)
        else:
            draws = draws.to(x.device)
        offsets, flip = draws[:2], draws[2, :, None].bool()

        # Output pixel (r, c) of the crop reads padded pixel (r + top, c + left), that is original
        # pixel (r + top - pad, c + left - pad); a flip reads column width - 1 - c instead of c.
        row_range = torch.arange(height, device=x.device)
        col_range = torch.arange(width, device=x.device)
        rows = offsets[0, :, None] - pad + row_range  # count x height
        cols = offsets[1, :, None] - pad + torch.where(flip, width - 1 - col_range, col_range)
        inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[
            :, None, :
        ]  # count x height x width: False where the window reads the padding
        gathered = x[
            torch.arange(count, device=x.device)[:, None, None, None],
            torch.arange(channels, device=x.device)[None, :, None, None],
            rows.clamp(0, height - 1)[:, None, :, None],
            cols.clamp(0, width - 1)[:, None, None, :],
        ]
        # Built on the device from scalars: no host-to-device copy.
        fill = torch.stack([x.new_full((), value) for value in self.fill]).view(-1, 1, 1)
        return torch.where(inside[:, None], gathered, fill)
