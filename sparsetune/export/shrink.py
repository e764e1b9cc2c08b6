"""Physically smaller models from structurally pruned ones (Louizos et al. 2018, section 4.2:
removed neurons and feature maps make the network itself smaller).

`shrink(model, input_shape)` returns a model whose forward equals the masked model's (eval mode,
masks and any still-active L0 gates baked in) but whose layers have only the units that still
matter. Two paths:

Chains: an `nn.Sequential`, or a forward that traces with `torch.fx` to a chain (every operation
consumes only the previous one's output; LeNet-300-100 and LeNet-5), with `nn.Linear` and
ungrouped `nn.Conv1d/2d/3d` as weighted layers and only parameter-free, channel-wise operations
between them, become a new `nn.Sequential`. Between two weighted layers A -> B, A's output unit j
is removed when
- B does not read it (B's columns / input channels of j are all zero): dropped outright; or
- A's row j is all zero, so j carries a constant (A's bias through the operations in between):
  its contribution to B is folded into B's bias. For a convolution B that contribution must be
  the same at every output position (true without padding); otherwise the unit is kept.
The network's own inputs that the first layer never reads, and the flattened features that a
Linear never reads (LeNet-5's fc1 inputs), are dropped by an index selection before that layer.

Any other network (residual additions, BatchNorm between layers, concatenations: ResNet-20/32,
VGG-16/19, torchvision's ResNets) keeps its own class, and its Linear and convolution layers and
BatchNorms get narrower (`shrink_graph`). Torch-Pruning's `DependencyGraph` says which channels
are coupled (a convolution's output channel, its BatchNorm, the next layers' input channels, and
across residual additions every layer that writes to or reads from that channel of the stream),
so a channel goes from all of them or from none. A channel goes when no consumer reads it, or
when it is empty in every producer, so that it carries a value that does not depend on the input
(a BatchNorm shift or bias, through ReLU and additions); that value is then
- zero at every consumer: nothing to do;
- folded into the consumers' biases where its contribution is the same at every output position
  (a Linear after global pooling; a bias is added to a convolution that had none); or
- merged into one kept constant channel of the same group: a padded convolution sees a constant
  map with zeros at its border, not a bias, but the constant channels of a group are multiples of
  one another, so their weights are scaled onto one of them (exact: convolution is linear and
  the padding is zero for all of them). Constant channels that are not multiples of another stay.
The network's output units, layers that run twice per forward, grouped convolutions and groups
touching other parameterised layers (LayerNorm, GroupNorm, ...) keep all their channels.

Anything the paths cannot follow raises ValueError (so does a non-chain where nothing can be
removed); a final self-check on a random batch raises RuntimeError if the smaller forward differs
from the model's by more than 1e-5, so an unsupported operation cannot pass silently.
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


def _chain(plain: nn.Module) -> list[nn.Module] | None:
    """The model as a chain that the chain rules below handle, or None (then the graph path)."""
    try:
        chain = as_chain(plain)
    except ValueError:
        return None
    weighted = [i for i, op in enumerate(chain) if isinstance(op, _WEIGHTED)]
    if not weighted:
        return None
    if any(isinstance(chain[i], _CONVS) and chain[i].groups != 1 for i in weighted):
        return None
    for a, b in zip(weighted, weighted[1:], strict=False):
        for op in chain[a + 1 : b]:
            if any(True for _ in op.parameters()) or any(True for _ in op.buffers()):
                return None  # BatchNorm between layers: the graph path folds it
    return chain


@torch.no_grad()
def shrink(model: nn.Module, input_shape: tuple[int, ...], *, check: bool = True) -> nn.Module:
    """A smaller model computing the same function as `model` in eval mode (see the module
    docstring): an `nn.Sequential` for a chain, else `model`'s own class with smaller layers.
    `input_shape` is one example's shape, e.g. (1, 28, 28). With `check` the result is compared
    with the model on a random batch (RuntimeError if it differs by more than 1e-5)."""
    plain = plain_copy(model)
    device = next(plain.parameters()).device
    generator = torch.Generator(device=device).manual_seed(0)  # leave the global RNG alone
    inputs = torch.randn((8, *input_shape), device=device, generator=generator)
    expected = plain(inputs)  # before the layers, shared with `plain`, are cut down
    chain = _chain(plain)
    if chain is None:
        small = shrink_graph(plain, inputs).eval()
    else:
        small = _shrink_chain(chain, input_shape, device)
    if check:
        got = small(inputs)
        if not torch.allclose(got, expected, rtol=0, atol=1e-5):
            difference = float((got - expected).abs().max())
            raise RuntimeError(f"shrink: the smaller model differs by {difference:.3g}")
    return small


def _shrink_chain(
    chain: list[nn.Module], input_shape: tuple[int, ...], device: torch.device
) -> nn.Sequential:
    """The chain rules of the module docstring, applied to the layers of `chain` (in place)."""
    # The input shape of every operation, to map units across flatten and to build constants.
    shapes, x = [], torch.zeros((1, *input_shape), device=device)
    for op in chain:
        shapes.append(tuple(x.shape))
        x = op(x)
    weighted = [i for i, op in enumerate(chain) if isinstance(op, _WEIGHTED)]
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
    return nn.Sequential(*modules).eval()


def _index(bias: torch.Tensor | None, keep: torch.Tensor) -> torch.Tensor | None:
    return None if bias is None else bias[keep]


# ---------------------------------------------------------------------------------------------
# Any graph: residual additions, BatchNorm, torchvision-style models (Torch-Pruning's groups).

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _probe(
    model: nn.Module, inputs: torch.Tensor
) -> tuple[list[nn.Module], dict[nn.Module, torch.Tensor]]:
    """One forward on `inputs`: the weighted layers whose output is the model's output (their
    output units stay), and every weighted layer's input (a layer called more than once cannot
    be shrunk safely: it gets no entry, and groups holding it keep all their channels)."""
    # Each output is kept alive with its module: a freed tensor's id can be reused by another.
    produced: dict[int, tuple[nn.Module, torch.Tensor]] = {}
    seen: dict[nn.Module, torch.Tensor] = {}
    twice: set[nn.Module] = set()

    def record_input(module: nn.Module, args: tuple) -> None:
        if module in seen:
            twice.add(module)
        seen[module] = args[0].detach()

    def record_output(module: nn.Module, _: tuple, output: torch.Tensor) -> None:
        produced[id(output)] = (module, output)

    weighted = [m for m in model.modules() if isinstance(m, _WEIGHTED)]
    hooks = [m.register_forward_pre_hook(record_input) for m in weighted]
    hooks += [m.register_forward_hook(record_output) for m in weighted]
    try:
        output = model(inputs)
    finally:
        for hook in hooks:
            hook.remove()
    outputs = output if isinstance(output, (tuple, list)) else [output]
    final = [produced[id(out)][0] for out in outputs if id(out) in produced]
    return final, {m: x for m, x in seen.items() if m not in twice}


def _channel(x: torch.Tensor, layer: nn.Module, index: list[int]) -> torch.Tensor:
    """The part of a layer's input that its input units `index` read (dim 1, or the last dim of a
    Linear's input)."""
    dim = -1 if isinstance(layer, nn.Linear) else 1
    return x.index_select(dim, torch.tensor(index, device=x.device))


@torch.no_grad()
def _add_to_bias(layer: nn.Module, added: torch.Tensor) -> None:
    bias = layer.bias if layer.bias is not None else torch.zeros_like(added)
    layer.bias = nn.Parameter(bias + added)


class _Group:
    """One Torch-Pruning group: coupled channels, with the producers (conv/linear output units),
    the consumers (conv/linear input units) and the operations between them. `units[layer]`
    lists, per root channel, the layer's unit indices that carry it."""

    def __init__(self, group: Any, dg: Any):
        self.producers: dict[nn.Module, dict[int, list[int]]] = {}
        self.consumers: dict[nn.Module, dict[int, list[int]]] = {}
        self.supported = True
        self.channels: set[int] = set()
        for item in group.items:
            module, handler = item.dep.target.module, item.dep.handler
            kind = type(module).__name__
            if isinstance(module, _WEIGHTED):
                if isinstance(module, _CONVS) and module.groups != 1:
                    self.supported = False
                side = self.producers if dg.is_out_channel_pruning_fn(handler) else self.consumers
                units = side.setdefault(module, {})
                for index, root in zip(item.idxs, item.root_idxs, strict=True):
                    units.setdefault(int(root), []).append(int(index))
                    self.channels.add(int(root))
            elif not isinstance(module, _NORMS) and kind not in (
                "_ElementWiseOp",
                "_ReshapeOp",
                "_ConcatOp",
                "_SplitOp",
                "_SliceOp",
            ):
                self.supported = False  # the network's output, LayerNorm, a raw Parameter, ...

    def unread(self) -> set[int]:
        """The channels no consumer has a weight left for: nothing reads them."""
        return self.channels - self._any(self.consumers, _reads)

    def empty(self) -> set[int]:
        """The channels no producer has a weight left for: their value does not depend on the
        input (a bias, through BatchNorm and channel-wise operations)."""
        return self.channels - self._any(self.producers, _alive)

    @staticmethod
    def _any(side: dict[nn.Module, dict[int, list[int]]], used: Callable) -> set[int]:
        """The channels that some layer of `side` has a nonzero weight for."""
        found = set()
        for layer, units in side.items():
            flags = used(layer).tolist()
            found |= {channel for channel, index in units.items() if any(flags[i] for i in index)}
        return found


@torch.no_grad()
def _settle(group: _Group, inputs: dict[nn.Module, torch.Tensor]) -> list[int]:
    """The channels of `group` to remove, after folding what they carry into their consumers.

    A channel that no consumer reads goes outright. Otherwise it goes only when no producer has
    weights for it, so that it carries a value that does not depend on the input (checked on
    the whole probe batch). Then, at every consumer:
    - all zero: nothing to fold;
    - a contribution that is the same at every output position (a Linear, or a convolution that
      sees a uniform value without padding at its border): added to the consumer's bias;
    - otherwise it is merged into one kept channel of the group whose value the others are
      multiples of at that consumer (their weights are scaled and added to its weights: exact,
      since convolutions are linear and the padding is zero for both); only if there is no such
      channel does it stay.
    """
    if not group.supported or not group.producers or not group.consumers:
        return []
    if any(layer not in inputs for layer in (*group.producers, *group.consumers)):
        return []
    unread = sorted(group.unread())
    values: dict[int, dict[nn.Module, torch.Tensor]] = {}
    for channel in sorted(group.empty() - set(unread)):
        at = {
            layer: _channel(inputs[layer], layer, units[channel])
            for layer, units in group.consumers.items()
            if channel in units
        }
        if all(bool((v == v[:1]).all()) for v in at.values()):  # the same for every example
            values[channel] = {layer: v[:1] for layer, v in at.items()}
    removed: list[int] = list(unread)
    constant: list[int] = []
    for channel, at in values.items():
        if all(not bool(v.ne(0).any()) for v in at.values()):
            removed.append(channel)
            continue
        added = {}
        for layer, v in at.items():
            index = group.consumers[layer][channel]
            shape = (1, *inputs[layer].shape[1:])
            x = inputs[layer].new_zeros(shape)
            dim = -1 if isinstance(layer, nn.Linear) else 1
            x.index_copy_(dim, torch.tensor(index, device=x.device), v)
            out = _without_bias(layer, x)
            flat = out.flatten(2) if out.dim() > 2 else out[..., None]
            if not bool(torch.isclose(flat, flat[..., :1], rtol=1e-6, atol=1e-7).all()):
                break
            added[layer] = flat[0, :, 0]
        else:
            for layer, bias in added.items():
                _add_to_bias(layer, bias)
            removed.append(channel)
            continue
        constant.append(channel)
    return removed + _merge(group, {c: values[c] for c in constant})


@torch.no_grad()
def _merge(group: _Group, values: dict[int, dict[nn.Module, torch.Tensor]]) -> list[int]:
    """Merge input-independent channels into one of them (see `_settle`); the merged ones."""
    for keep, kept_at in values.items():
        if any(not bool(v.ne(0).any()) for v in kept_at.values()):
            continue  # zero somewhere: nothing can be a multiple of it there
        scales: dict[int, dict[nn.Module, float]] = {}
        for channel, at in values.items():
            if channel == keep or set(at) != set(kept_at):
                continue
            factors = {}
            for layer, v in at.items():
                base = kept_at[layer]
                if v.shape != base.shape:
                    break
                factor = float((v * base).sum() / (base * base).sum())
                if not torch.allclose(v, factor * base, rtol=1e-6, atol=1e-7):
                    break
                factors[layer] = factor
            else:
                scales[channel] = factors
        if not scales:
            continue
        for channel, factors in scales.items():
            for layer, factor in factors.items():
                target = group.consumers[layer][keep]
                source = group.consumers[layer][channel]
                weight = layer.weight.detach()
                weight[:, target] += factor * weight[:, source]
        return list(scales)
    return []


@torch.no_grad()
def shrink_graph(plain: nn.Module, inputs: torch.Tensor) -> nn.Module:
    """Remove the empty channels and neurons of any traceable network, in place; returns it.

    Torch-Pruning's `DependencyGraph` groups the channels that must go together: a convolution's
    output channel with its BatchNorm, the next layers' input channels, and across residual
    additions every layer that writes to or reads from the same channel of the stream. A channel
    goes when it is empty in every coupled producer and what it still carries (a BatchNorm or
    bias constant) is folded (see `_settle`). The network's output units and layers that run more
    than once are left alone.
    """
    import torch_pruning as tp  # imported here: only this path needs it

    name = type(plain).__name__
    try:
        with torch.enable_grad():  # the graph is traced through autograd
            graph = tp.DependencyGraph().build_dependency(
                plain, example_inputs=inputs[:1], verbose=False
            )
    except Exception as error:  # tracing raises many types on models it cannot follow
        raise ValueError(f"shrink: cannot trace the channels of {name}: {error}") from None
    outputs, layer_inputs = _probe(plain, inputs)
    removed_any = False
    try:
        for group in graph.get_all_groups(ignored_layers=outputs):
            settled = _Group(group, graph)
            removed = _settle(settled, layer_inputs)
            if len(removed) == len(settled.channels):
                removed = removed[1:]  # a layer cannot be empty: keep one, now silent
                keep = sorted(settled.channels - set(removed))[0]
                for layer, units in settled.consumers.items():
                    layer.weight.detach()[:, units[keep]] = 0
            if removed:
                group.prune(idxs=sorted(removed))
                removed_any = True
    except (KeyError, IndexError, TypeError, AttributeError, AssertionError) as error:
        raise ValueError(f"shrink: cannot remove channels of {name}: {error!r}") from None
    if not removed_any:
        raise ValueError(
            f"shrink: {name} is not a chain, and no neuron or channel of it can be removed: each "
            "one has weights, carries a value that a later layer reads, or reaches the output"
        )
    return plain
