"""Physically smaller models from structurally pruned ones (Louizos et al. 2018, section 4.2:
removed neurons and feature maps make the network itself smaller).

`shrink(model, input_shape)` returns an `nn.Sequential` whose forward equals the masked model's
(eval mode) but whose layers have only the units that still matter. What it supports:
- the model is an `nn.Sequential`, or its forward traces with `torch.fx` to a chain (every
  operation consumes only the previous one's output): LeNet-300-100 and LeNet-5 both do;
- the weighted layers are `nn.Linear` and ungrouped `nn.Conv1d/2d/3d`;
- between two weighted layers only parameter-free operations that act channel by channel
  (activations, pooling, dropout, flatten).
Anything else raises ValueError; a final self-check on a random input raises RuntimeError if the
shrunken forward differs, so an unsupported operation cannot pass silently.

Between two weighted layers A -> B, A's output unit j is removed when
- B does not read it (B's columns / input channels of j are all zero): dropped outright; or
- A's row j is all zero, so j carries a constant (A's bias through the operations in between):
  its contribution to B is folded into B's bias. For a convolution B that contribution must be
  the same at every output position (true without padding); otherwise the unit is kept.
The network's own inputs that the first layer never reads, and the flattened features that a
Linear never reads (LeNet-5's fc1 inputs), are dropped by an index selection before that layer.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.fx
from torch import nn
from torch.nn.utils import parametrize

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_WEIGHTED = (nn.Linear, *_CONVS)


class SelectFeatures(nn.Module):
    """Keep the given indices of dimension 1 (features, or channels)."""

    def __init__(self, index: torch.Tensor):
        super().__init__()
        self.register_buffer("index", index)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(1, self.index)

    def extra_repr(self) -> str:
        return f"{self.index.numel()} kept"


class Call(nn.Module):
    """A traced function or tensor method, applied to the previous output with its fixed
    arguments (torch.relu, torch.max_pool2d(x, 2), x.flatten(1), ...)."""

    def __init__(self, target: Callable | str, args: tuple, kwargs: dict[str, Any]):
        super().__init__()
        self.target, self.args, self.kwargs = target, args, kwargs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.target, str):
            return getattr(x, self.target)(*self.args, **self.kwargs)
        return self.target(x, *self.args, **self.kwargs)

    def extra_repr(self) -> str:
        name = self.target if isinstance(self.target, str) else self.target.__name__
        return f"{name}, args={self.args}, kwargs={self.kwargs}"


def plain_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with every parametrization baked in (mask, and a deterministic
    gate if one is still active): plain tensors, the same forward; `model` is left untouched."""
    plain = copy.deepcopy(model).eval()
    for module in list(plain.modules()):
        if not parametrize.is_parametrized(module):
            continue
        with torch.no_grad():
            values = {name: getattr(module, name).clone() for name in module.parametrizations}
        # Not parametrize.remove_parametrizations: it deletes the property from the injected
        # "Parametrized..." class, which the deepcopy shares with `model`, breaking `model`.
        module.__class__ = type(module).__bases__[0]
        delattr(module, "parametrizations")
        for name, value in values.items():
            module.register_parameter(name, nn.Parameter(value))
    return plain


def as_chain(model: nn.Module) -> list[nn.Module]:
    """The model's operations in order, as modules; ValueError if the forward is not a chain."""
    if isinstance(model, nn.Sequential):
        chain: list[nn.Module] = []
        for module in model:
            chain.extend(as_chain(module) if isinstance(module, nn.Sequential) else [module])
        return chain
    try:
        graph_module = torch.fx.symbolic_trace(model)
    except Exception as error:  # fx raises many types for untraceable control flow
        raise ValueError(f"shrink: cannot trace {type(model).__name__}: {error}") from None
    chain, previous = [], None
    for node in graph_module.graph.nodes:
        if node.op == "placeholder":
            if previous is not None:
                raise ValueError("shrink: the model takes more than one input")
            previous = node
            continue
        inputs = node.all_input_nodes
        if inputs != [previous] or len(previous.users) != 1 or node.args[:1] != (previous,):
            raise ValueError(
                f"shrink: {type(model).__name__} is not a chain at {node.format_node()}"
            )
        if node.op == "output":
            break
        if node.op == "call_module":
            chain.append(graph_module.get_submodule(node.target))
        elif node.op in ("call_function", "call_method") and node.target is not operator.getitem:
            chain.append(Call(node.target, tuple(node.args[1:]), dict(node.kwargs)))
        else:
            raise ValueError(f"shrink: unsupported operation {node.format_node()}")
        previous = node
    return chain


def _reads(layer: nn.Module) -> torch.Tensor:
    """Which inputs (dim 1 of the input) a weighted layer reads: any nonzero weight."""
    return layer.weight.detach().transpose(0, 1).flatten(1).ne(0).any(1)


def _alive(layer: nn.Module) -> torch.Tensor:
    """Which output units have any nonzero weight (the others output their bias alone)."""
    return layer.weight.detach().flatten(1).ne(0).any(1)


def _without_bias(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(layer, nn.Linear):
        return nn.functional.linear(x, layer.weight)
    return layer._conv_forward(x, layer.weight, None)


@torch.no_grad()
def _set(layer: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """Replace a layer's tensors and keep its size attributes consistent."""
    layer.weight = nn.Parameter(weight.contiguous())
    if bias is not None:
        layer.bias = nn.Parameter(bias.contiguous())
    if isinstance(layer, nn.Linear):
        layer.out_features, layer.in_features = weight.shape[0], weight.shape[1]
    else:
        layer.out_channels, layer.in_channels = weight.shape[0], weight.shape[1]


@torch.no_grad()
def _fold_constants(
    layer_b: nn.Module, constant: torch.Tensor, candidates: torch.Tensor, per_unit: int
) -> torch.Tensor:
    """Fold each candidate unit's constant input to B into B's bias, where its contribution is
    the same at every output position; returns which units were folded."""
    index = candidates.nonzero().flatten()
    batch = constant.new_zeros((len(index), *constant.shape[1:]))
    for row, unit in enumerate(index.tolist()):  # one example per unit: judged one by one
        features = slice(unit * per_unit, (unit + 1) * per_unit)
        batch[row, features] = constant[0, features]
    contribution = _without_bias(layer_b, batch)  # (units, out, *positions)
    per_position = contribution.flatten(2) if contribution.dim() > 2 else contribution[..., None]
    uniform = torch.isclose(per_position, per_position[..., :1], rtol=0, atol=1e-6).all(2).all(1)
    if uniform.any():
        added = per_position[uniform][:, :, 0].sum(0)
        bias = layer_b.bias if layer_b.bias is not None else torch.zeros_like(added)
        layer_b.bias = nn.Parameter(bias + added)
    folded = torch.zeros_like(candidates)
    folded[index[uniform]] = True
    return folded


@torch.no_grad()
def shrink(model: nn.Module, input_shape: tuple[int, ...], *, check: bool = True) -> nn.Sequential:
    """A smaller `nn.Sequential` computing the same function as `model` in eval mode (see the
    module docstring for what is supported). `input_shape` is one example's shape, e.g. (1, 28,
    28). With `check` the result is compared with the model on a random batch."""
    plain = plain_copy(model)
    device = next(plain.parameters()).device
    generator = torch.Generator(device=device).manual_seed(0)  # leave the global RNG alone
    inputs = torch.randn((8, *input_shape), device=device, generator=generator)
    expected = plain(inputs)  # before the layers, shared with `plain`, are cut down
    chain = as_chain(plain)
    # The input shape of every operation, to map units across flatten and to build constants.
    shapes, x = [], torch.zeros((1, *input_shape), device=device)
    for op in chain:
        shapes.append(tuple(x.shape))
        x = op(x)
    weighted = [i for i, op in enumerate(chain) if isinstance(op, _WEIGHTED)]
    if not weighted:
        raise ValueError("shrink: the model has no Linear or convolution layer")
    for i in weighted:
        if isinstance(chain[i], _CONVS) and chain[i].groups != 1:
            raise ValueError(f"shrink: grouped convolutions are not supported ({chain[i]})")
    for a, b in zip(weighted, weighted[1:], strict=False):
        for op in chain[a + 1 : b]:
            if any(True for _ in op.parameters()) or any(True for _ in op.buffers()):
                raise ValueError(f"shrink: {op} between two weighted layers has parameters")
    inserts: dict[int, torch.Tensor] = {}  # position -> features kept before that layer

    first = chain[weighted[0]]
    reads = _reads(first)
    if not reads.any():  # a convolution cannot take zero channels: keep one (all its weights 0)
        reads[0] = True
    if not reads.all():  # inputs never read: select the read ones before the first layer
        inserts[weighted[0]] = reads.nonzero().flatten()
        _set(first, first.weight[:, reads], first.bias)

    for a, b in zip(weighted, weighted[1:], strict=False):
        layer_a, layer_b = chain[a], chain[b]
        units, features = layer_a.weight.shape[0], layer_b.weight.shape[1]
        if features % units:
            raise ValueError(f"shrink: cannot map {units} units of {layer_a} to {layer_b}")
        per_unit = features // units  # > 1 after flattening a feature map (channel-major)
        reads_b = _reads(layer_b)
        alive = _alive(layer_a)
        read_units = reads_b.view(units, per_unit).any(1)
        # Units with no weights left carry a constant: A's bias through the ops in between.
        constant_units = read_units & ~alive
        if constant_units.any():
            bias = layer_a.bias if layer_a.bias is not None else torch.zeros(units, device=device)
            out_shape = shapes[a + 1]
            constant = bias.view(1, units, *([1] * (len(out_shape) - 2))).expand(out_shape)
            for op in chain[a + 1 : b]:
                constant = op(constant)
            folded = _fold_constants(layer_b, constant, constant_units, per_unit)
            alive = alive | (constant_units & ~folded)  # not foldable: keep them as they are
        keep_units = alive & read_units
        if not keep_units.any():  # a layer cannot be empty (a convolution fails): keep one
            keep_units[0] = True  # silent unit: no weights, no bias, and B does not read it
            layer_a.weight[0] = 0
            if layer_a.bias is not None:
                layer_a.bias[0] = 0
            layer_b.weight.view(layer_b.weight.shape[0], units, per_unit, -1)[:, 0] = 0
        keep_features = keep_units.repeat_interleave(per_unit)
        _set(layer_a, layer_a.weight[keep_units], _index(layer_a.bias, keep_units))
        read_kept = reads_b[keep_features]
        if per_unit > 1 and not read_kept.all():  # flattened features never read: select
            inserts[b] = read_kept.nonzero().flatten()
            keep_features = keep_features & reads_b
        _set(layer_b, layer_b.weight[:, keep_features], layer_b.bias)

    modules = []
    for index, op in enumerate(chain):
        if index in inserts:
            modules.append(SelectFeatures(inserts[index]))
        modules.append(op)
    small = nn.Sequential(*modules).eval()
    if check:
        got = small(inputs)
        if not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
            difference = float((got - expected).abs().max())
            raise RuntimeError(f"shrink: the smaller model differs by {difference:.3g}")
    return small


def _index(bias: torch.Tensor | None, keep: torch.Tensor) -> torch.Tensor | None:
    return None if bias is None else bias[keep]
