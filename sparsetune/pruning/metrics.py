"""Sparsity accounting as Han et al. report it: per layer, weights and FLOPs remaining.

Compression = prunable weights / surviving prunable weights (biases and BatchNorm are neither
pruned nor counted, as in the papers). FLOPs are the multiply-accumulates of the prunable layers;
a layer with a fraction f of its weights left keeps a fraction f of its MACs (unstructured
sparsity, Han et al.'s convention). `flops_ratio` is remaining MACs / dense MACs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from sparsetune.pruning.masking import find_masks, prunable_parameters


@dataclass(frozen=True)
class LayerStats:
    name: str
    shape: tuple[int, ...]
    weights: int
    remaining: int
    macs: int

    @property
    def remaining_pct(self) -> float:
        return 100.0 * self.remaining / self.weights

    @property
    def remaining_macs(self) -> float:
        return self.macs * self.remaining / self.weights

    def as_row(self) -> dict:
        return asdict(self) | {
            "shape": "x".join(map(str, self.shape)),
            "remaining_pct": round(self.remaining_pct, 3),
            "flops_remaining_pct": round(self.remaining_pct, 3),
        }


@dataclass(frozen=True)
class SparsityReport:
    layers: list[LayerStats]
    architecture: str

    @property
    def total_weights(self) -> int:
        return sum(layer.weights for layer in self.layers)

    @property
    def remaining_weights(self) -> int:
        return sum(layer.remaining for layer in self.layers)

    @property
    def compression(self) -> float:
        remaining = self.remaining_weights
        return self.total_weights / remaining if remaining else float("inf")

    @property
    def flops_ratio(self) -> float:
        total = sum(layer.macs for layer in self.layers)
        return sum(layer.remaining_macs for layer in self.layers) / total if total else 1.0


@torch.no_grad()
def layer_macs(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Dense multiply-accumulates of each prunable layer for one example."""
    macs: dict[str, int] = {}
    hooks = []
    for name in prunable_parameters(model):
        module_name = name.rpartition(".")[0]
        module = model.get_submodule(module_name)

        def record(module: nn.Module, _inputs, output: torch.Tensor, name: str = name) -> None:
            weight_size = module.weight.numel()
            if isinstance(module, nn.Linear):
                macs[name] = weight_size
            else:  # convolution: every output position applies the whole (grouped) filter bank
                macs[name] = weight_size * output[0, 0].numel()

        hooks.append(module.register_forward_hook(record))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros((1, *input_shape), device=device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return macs


def _keep_pattern(model: nn.Module, name: str) -> torch.Tensor:
    masks = find_masks(model)
    if masks is not None and name in masks:
        return masks[name] != 0
    module_name, _, tensor_name = name.rpartition(".")
    return getattr(model.get_submodule(module_name), tensor_name).detach() != 0


def architecture_string(model: nn.Module) -> str:
    """Surviving units per layer, e.g. "20-25-45-462" for LeNet-5 (Louizos et al.'s notation)."""
    units = getattr(model, "architecture_units", None)
    if units is None:  # unknown model: output units of every prunable layer
        units = tuple((name, "out") for name in prunable_parameters(model))
    counts = []
    for name, axis in units:
        keep = _keep_pattern(model, name)
        dim = 0 if axis == "out" else 1
        reduce_dims = [d for d in range(keep.dim()) if d != dim]
        counts.append(int(keep.any(dim=reduce_dims).sum()) if reduce_dims else int(keep.sum()))
    return "-".join(map(str, counts))


def sparsity_report(model: nn.Module, macs: dict[str, int]) -> SparsityReport:
    layers = []
    for name in prunable_parameters(model):
        keep = _keep_pattern(model, name)
        layers.append(
            LayerStats(
                name=name.removesuffix(".weight"),
                shape=tuple(keep.shape),
                weights=keep.numel(),
                remaining=int(keep.sum()),
                macs=macs[name],
            )
        )
    return SparsityReport(layers=layers, architecture=architecture_string(model))
