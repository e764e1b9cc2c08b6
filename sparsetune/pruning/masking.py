"""Masks as a parametrization: `weight -> weight * mask`, keyed by the tensor's full name.

Why a parametrization rather than zeroing weights in `forward` or after each step: the gradient
of a pruned weight is exactly zero (no leak into momentum), `module.weight` is always the masked
tensor, deepcopy and state_dict work, and the mask is a buffer that moves with `.to(device)`.

Rules every method relies on:
- masks are updated in place (`copy_`), never reassigned, so optimisers and references stay valid;
- `MaskSet.update` intersects with the current mask: a pruned weight is never revived;
- `MaskSet.commit` also zeroes the stored weight, so later scoring sees exactly zero there.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import torch
from torch import nn
from torch.nn.utils import parametrize


class WeightMask(nn.Module):
    """The parametrization: multiplies the stored weight by a binary buffer."""

    def __init__(self, shape: torch.Size, device: torch.device, dtype: torch.dtype):
        super().__init__()
        self.register_buffer("mask", torch.ones(shape, device=device, dtype=dtype))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


def prunable_parameters(model: nn.Module) -> list[str]:
    """Full names of the weights the papers prune: each Linear and Conv weight (no bias, no BN)."""
    names = []
    for module_name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            names.append(f"{module_name}.weight" if module_name else "weight")
    return names


def _split(name: str) -> tuple[str, str]:
    module_name, _, tensor_name = name.rpartition(".")
    return module_name, tensor_name


class UnknownLayer(ValueError):
    """A per-layer knob names a layer the model does not have (or does not prune)."""


def check_layer_names(knob: str, given: Iterable[str], weight_names: Iterable[str]) -> None:
    """One-line ValueError if a per-layer knob names a layer that is not prunable here.
    Per-layer knobs are keyed by module name ("fc1"), the weight names without ".weight"."""
    layers = [name.rpartition(".")[0] for name in weight_names]
    unknown = sorted(set(given) - set(layers))
    if unknown:
        raise UnknownLayer(
            f"{knob}: unknown layer(s) {', '.join(unknown)}; "
            f"this model's prunable layers are {', '.join(layers)}"
        )


class MaskSet(Mapping[str, torch.Tensor]):
    """The masks of one model, by parameter name ("conv1.weight")."""

    def __init__(self, model: nn.Module, masks: dict[str, WeightMask]):
        self.model = model
        self._masks = masks

    # Mapping interface: name -> the live mask buffer.
    def __getitem__(self, name: str) -> torch.Tensor:
        return self._masks[name].mask

    def __iter__(self) -> Iterator[str]:
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)

    def stored_weight(self, name: str) -> torch.Tensor:
        """The unmasked parameter the optimiser updates."""
        module_name, tensor_name = _split(name)
        module = self.model.get_submodule(module_name)
        return module.parametrizations[tensor_name].original

    def effective_weight(self, name: str) -> torch.Tensor:
        """The weight the forward pass uses: stored weight times mask."""
        return self.stored_weight(name) * self[name]

    def update(self, new_masks: Mapping[str, torch.Tensor], commit: bool = True) -> None:
        """Replace masks in place, never reviving a pruned weight; by default commit them."""
        for name, new in new_masks.items():
            current = self[name]
            if new.shape != current.shape:
                raise ValueError(
                    f"mask for {name} has shape {tuple(new.shape)}, expected {tuple(current.shape)}"
                )
            current.copy_(current * (new != 0).to(current.dtype))
        if commit:
            self.commit()

    @torch.no_grad()
    def replace(self, new_masks: Mapping[str, torch.Tensor]) -> None:
        """Overwrite masks in place, reviving allowed: only for the random-mask control, which
        swaps a round's mask for a random one within the previous round's. The caller sets the
        weights afterwards."""
        for name, new in new_masks.items():
            self[name].copy_((new != 0).to(self[name].dtype))

    @torch.no_grad()
    def commit(self) -> None:
        """Zero the stored weights at pruned positions."""
        for name in self:
            self.stored_weight(name).mul_(self[name])

    def counts(self) -> dict[str, tuple[int, int]]:
        """(surviving, total) weights per masked tensor."""
        return {name: (int(mask.count_nonzero()), mask.numel()) for name, mask in self.items()}

    def compression(self) -> float:
        """Total prunable weights / surviving prunable weights (inf when nothing survives)."""
        surviving = sum(kept for kept, _ in self.counts().values())
        total = sum(size for _, size in self.counts().values())
        return total / surviving if surviving else float("inf")

    def state(self) -> dict[str, torch.Tensor]:
        """Copies of the masks, as booleans, keyed by parameter name."""
        return {name: mask.detach().to(torch.bool).clone() for name, mask in self.items()}


def attach_masks(model: nn.Module, names: list[str] | None = None) -> MaskSet:
    """Put an all-ones mask on each named weight (default: every prunable one).

    Call before the optimiser is built: the parametrization moves the parameter to
    `module.parametrizations.<name>.original`, and an optimiser built earlier would still
    point at the same tensor but the model's `weight` attribute changes.
    """
    existing = find_masks(model)
    if existing is not None:
        return existing
    masks = {}
    for name in names or prunable_parameters(model):
        module_name, tensor_name = _split(name)
        module = model.get_submodule(module_name)
        weight = getattr(module, tensor_name)
        mask = WeightMask(weight.shape, weight.device, weight.dtype)
        parametrize.register_parametrization(module, tensor_name, mask)
        masks[name] = mask
    return MaskSet(model, masks)


def find_parametrizations(model: nn.Module, kind: type[nn.Module]) -> dict[str, tuple]:
    """Full tensor name -> (its module, its parametrization) for every parametrization of type
    `kind` on `model` (masks here, L0's gates in `pruning.l0`)."""
    found = {}
    for module_name, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        for tensor_name, parametrizations in module.parametrizations.items():
            for parametrization in parametrizations:
                if isinstance(parametrization, kind):
                    full = f"{module_name}.{tensor_name}" if module_name else tensor_name
                    found[full] = (module, parametrization)
    return found


def find_masks(model: nn.Module) -> MaskSet | None:
    """The MaskSet of a model that already carries masks (e.g. after deepcopy), else None."""
    masks = {name: mask for name, (_, mask) in find_parametrizations(model, WeightMask).items()}
    return MaskSet(model, masks) if masks else None


def squashed_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """A plain dense state_dict (original key names) with pruned weights zeroed.

    Loads into a fresh instance of the model class with no parametrization, and its forward
    equals the masked model's.
    """
    masks = find_masks(model)
    state = {}
    for key, value in model.state_dict().items():
        if ".parametrizations." not in key:
            state[key] = value.detach().clone()
    if masks is not None:
        for name in masks:
            state[name] = masks.effective_weight(name).detach().clone()
    return state
