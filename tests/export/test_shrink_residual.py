"""Structured export of networks that are not chains: ResNet-20 (residual additions, BatchNorm
after every convolution), VGG-16 (BatchNorm between the convolutions) and torchvision's
ResNet-18. Whole output channels are emptied the way magnitude pruning leaves them (all-zero mask
rows) and the way L0 channel gates close them (deterministic gate 0, other gates between 0 and 1
baked into the weights); BatchNorm has non-trivial statistics and biases, so an empty channel
still carries a constant. The smaller network must compute the same function (1e-5, eval mode),
have fewer parameters, and load back through the structured file format."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from sparsetune.export import export_ticket, load
from sparsetune.export.shrink import shrink
from sparsetune.export.structured import describe_changes, rebuild_changes
from sparsetune.models import build_model
from sparsetune.pruning.l0 import L0Config, L0Regularization, find_gates
from sparsetune.pruning.masking import MaskSet, attach_masks, squashed_state_dict
from sparsetune.pruning.plans import RoundInfo
from sparsetune.trial.tickets import write_ticket

SHAPE = (3, 16, 16)  # the smallest input VGG-16's four poolings take: keeps the tests fast
NEGATIVE, POSITIVE = -0.5, 0.5  # BatchNorm bias of an empty channel: ReLU gives 0, or a constant

# Channels emptied per convolution, and the BatchNorm bias each gets (module path -> bias).
# ResNet-20: two block-internal channel sets (their constants feed a padded 3x3 convolution),
# and stage 2's residual stream, emptied in every layer that writes to it (both convolutions of
# the stage that end a block, and the shortcut): channels 3, 7, 11 carry 0 after ReLU, channels
# 20 and 21 carry a positive constant through the whole stage.
RESNET_STREAM = ("layer2.0.conv2", "layer2.0.shortcut.conv", "layer2.1.conv2", "layer2.2.conv2")
RESNET_EMPTY = {
    "layer1.0.conv1": {0: POSITIVE, 1: NEGATIVE, 2: POSITIVE, 3: NEGATIVE},
    "layer3.2.conv1": {c: (POSITIVE if c % 2 else NEGATIVE) for c in range(20)},
    **{
        name: {3: NEGATIVE, 7: NEGATIVE, 11: NEGATIVE, 20: POSITIVE, 21: POSITIVE}
        for name in RESNET_STREAM
    },
}
# VGG-16: constants after conv1_1 and conv3_2 meet padded convolutions; conv5_3 feeds the
# classifier through global average pooling, where every constant folds into its bias.
VGG_EMPTY = {
    "features.conv1_1": {c: (POSITIVE if c % 3 else NEGATIVE) for c in range(10)},
    "features.conv3_2": {c: NEGATIVE for c in range(40, 100)},
    "features.conv5_3": {c: (POSITIVE if c % 2 else NEGATIVE) for c in range(100)},
}
EMPTY = {"resnet20": RESNET_EMPTY, "vgg16": VGG_EMPTY}
# L0 also gates the classifier's inputs: closing 50 of them leaves conv5_3 channels 100-149 with
# weights but no reader, so they go too.
UNREAD = {"vgg16": {"classifier": range(100, 150)}}


def _norm_after(model: nn.Module, conv: str) -> nn.BatchNorm2d:
    """The BatchNorm that follows a convolution in these models."""
    path = {"conv": "bn", "conv1": "bn1", "conv2": "bn2"}
    parent, _, name = conv.rpartition(".")
    if name.startswith("conv") and "_" in name:  # VGG: features.conv3_2 -> features.bn3_2
        name = "bn" + name.removeprefix("conv")
    else:
        name = path[name]
    return model.get_submodule(f"{parent}.{name}")


@torch.no_grad()
def _non_trivial_norms(model: nn.Module, empty: dict[str, dict[int, float]]) -> None:
    """Every BatchNorm gets statistics and an affine part far from (0, 1); an emptied channel's
    BatchNorm gets running mean 0 (what training leaves for a channel that is always zero) and
    the bias the table names, so its constant output is that bias."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            for tensor, low, high in (
                (module.running_mean, -0.5, 0.5),
                (module.running_var, 0.5, 2.0),
                (module.weight, 0.5, 1.5),
                (module.bias, -0.3, 0.3),
            ):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)
    for conv, channels in empty.items():
        norm = _norm_after(model, conv)
        for channel, bias in channels.items():
            norm.running_mean[channel] = 0.0
            norm.bias[channel] = bias


def _magnitude_masks(masks: MaskSet, empty: dict[str, dict[int, float]]) -> None:
    """Some scattered zeros everywhere (unstructured) and all-zero rows for the empty channels."""
    generator = torch.Generator().manual_seed(2)
    new = {name: torch.rand(mask.shape, generator=generator) > 0.2 for name, mask in masks.items()}
    for conv, channels in empty.items():
        new[f"{conv}.weight"][list(channels)] = False
    masks.update(new)


@torch.no_grad()
def _l0_gates(
    model: nn.Module,
    masks: MaskSet,
    empty: dict[str, dict[int, float]],
    unread: dict[str, range],
) -> L0Regularization:
    """Neuron-level L0 gates (output channels of convolutions, inputs of the last Linear): the
    gates of the empty channels and of the `unread` Linear inputs closed (log_alpha -10: z = 0),
    every other gate open to a value in (0, 1] that structured export must bake in."""
    method = L0Regularization(L0Config(granularity="neuron"))
    method.attach(model, masks)
    generator = torch.Generator().manual_seed(3)
    for name, (_, gate) in find_gates(model).items():
        log_alpha = torch.rand(gate.log_alpha_scaled.shape, generator=generator) * 4 - 1
        layer = name.removesuffix(".weight")
        for channel in [*empty.get(layer, {}), *unread.get(layer, ())]:
            log_alpha[channel] = -10.0
        gate.log_alpha_scaled.copy_(log_alpha / gate.lr_factor)
    return method


def _prepared(name: str, how: str) -> tuple[nn.Module, MaskSet, L0Regularization | None]:
    torch.manual_seed(0)
    model = build_model(name, SHAPE, 10)
    empty = EMPTY[name]
    _non_trivial_norms(model, empty)
    masks = attach_masks(model)
    method = None
    if how == "magnitude":
        _magnitude_masks(masks, empty)
    else:
        method = _l0_gates(model, masks, empty, UNREAD.get(name, {}))
    return model.eval(), masks, method


def _parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _out_channels(model: nn.Module, conv: str) -> int:
    return model.get_submodule(conv).out_channels


def _expected_widths(name: str, model: nn.Module) -> dict[str, tuple[int, int]]:
    """(fewest, most) output channels each emptied convolution keeps: the empty channels whose
    constant is 0 go; those with a positive constant go into the classifier's bias (VGG's
    conv5_3, read through global average pooling only), or all merge into one channel (a
    constant reaching a padded convolution)."""
    widths = {}
    for conv, channels in EMPTY[name].items():
        left = _out_channels(model, conv) - len(channels)
        merged = any(bias > 0 for bias in channels.values()) and conv != "features.conv5_3"
        widths[conv] = (left, left + int(merged))
    return widths


@pytest.mark.parametrize("how", ["magnitude", "l0"])
@pytest.mark.parametrize("name", ["resnet20", "vgg16"])
def test_empty_channels_leave_a_residual_or_batchnorm_network(name, how, tmp_path):
    model, masks, method = _prepared(name, how)
    inputs = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = model(inputs)

    small = shrink(model, SHAPE)
    assert type(small) is type(model) and not small.training
    torch.testing.assert_close(small(inputs), expected, rtol=0, atol=1e-5)
    assert _parameters(small) < _parameters(build_model(name, SHAPE, 10))
    for conv, (fewest, most) in _expected_widths(name, model).items():
        if how == "l0" and conv == "features.conv5_3":  # and the 50 the classifier ignores
            fewest, most = fewest - 50, most - 50
        assert fewest <= _out_channels(small, conv) <= most, conv
    if name == "resnet20":  # the stream: 3 zero channels gone, the two constant ones merged
        assert {_out_channels(small, conv) for conv in RESNET_STREAM} == {32 - 3 - 1}
        assert small.layer3[0].conv1.in_channels == 28
        assert small.layer3[0].shortcut.conv.in_channels == 28

    # Through a ticket, as a trial writes it (L0: the gates folded at the round's end), to a
    # structured file and back.
    if method is not None:
        masks.update(method.compute_masks(model, masks, RoundInfo(index=1, total=1)))
        torch.testing.assert_close(model(inputs), expected, rtol=0, atol=1e-6)
    header = {
        "format": "ticket",
        "model": name,
        "input_shape": list(SHAPE),
        "num_classes": 10,
        "dataset": "synthetic",
        "method": how,
        "config_hash": "test",
    }
    init = squashed_state_dict(model)
    ticket = write_ticket(tmp_path, 1, init=init, masks=masks, model=model, header=header)
    export = export_ticket(ticket, "structured", tmp_path / "small.safetensors")
    assert export.info["parameters"] == _parameters(small) < export.info["dense_parameters"]
    assert set(export.info["changed_layers"]) >= {f"{conv}" for conv in EMPTY[name]}
    loaded = load(export.path)
    assert type(loaded) is type(model) and not loaded.training
    torch.testing.assert_close(loaded(inputs), expected, rtol=0, atol=1e-5)
    assert _parameters(loaded) == _parameters(small)


def test_torchvision_resnet18_sheds_its_empty_channels():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    empty = {
        "layer1.0.conv1": {c: (POSITIVE if c % 2 else NEGATIVE) for c in range(30)},
        "layer4.1.conv1": {c: NEGATIVE for c in range(200)},
        **{
            conv: {5: NEGATIVE, 9: NEGATIVE}
            for conv in ("layer2.0.conv2", "layer2.0.downsample.0", "layer2.1.conv2")
        },
    }
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.bias.uniform_(-0.3, 0.3)
        for conv, channels in empty.items():
            norm_name = conv.replace("conv", "bn").replace("downsample.0", "downsample.1")
            norm = model.get_submodule(norm_name)
            for channel, bias in channels.items():
                norm.running_mean[channel] = 0.0
                norm.bias[channel] = bias
    masks = attach_masks(model)
    new = {name: torch.ones_like(mask) for name, mask in masks.items()}
    for conv, channels in empty.items():
        new[f"{conv}.weight"][list(channels)] = 0
    masks.update(new)
    model.eval()
    inputs = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = model(inputs)

    small = shrink(model, (3, 32, 32))
    torch.testing.assert_close(small(inputs), expected, rtol=0, atol=1e-5)
    assert small.layer1[0].conv1.out_channels == 64 - 30 + 1  # the constants merged into one
    assert small.layer4[1].conv1.out_channels == 512 - 200
    assert small.layer2[0].conv2.out_channels == small.layer2[1].conv1.in_channels == 126
    assert _parameters(small) < _parameters(torchvision.models.resnet18(num_classes=10))

    # The structured format's changed-layers form, rebuilt on a fresh torchvision model.
    changes, tensors = describe_changes(small, torchvision.models.resnet18(num_classes=10))
    assert "layer1.0.conv1" in changes and "fc" not in changes
    rebuilt = rebuild_changes(torchvision.models.resnet18(num_classes=10), changes, tensors)
    torch.testing.assert_close(rebuilt(inputs), expected, rtol=0, atol=1e-5)


def test_changed_layers_must_name_layers_the_model_has():
    changes = {"layer9.conv": {"type": "Linear", "args": {"in_features": 1, "out_features": 1}}}
    with pytest.raises(ValueError, match="no layer 'layer9.conv'"):
        rebuild_changes(build_model("resnet20", SHAPE, 10), changes, {})
    with pytest.raises(ValueError, match="disallowed type 'Module'"):
        rebuild_changes(build_model("resnet20", SHAPE, 10), {"fc": {"type": "Module"}}, {})


def test_an_operation_that_mixes_channels_fails_loudly():
    """A softmax over channels is not channel-wise: dropping a channel that the next layer never
    reads changes every other channel. The self-check must refuse the result."""

    class ChannelSoftmax(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 4, 3)
            self.bn = nn.BatchNorm2d(4)
            self.conv2 = nn.Conv2d(4, 2, 1)

        def forward(self, x):
            return self.conv2(torch.softmax(self.bn(self.conv1(x)), dim=1)).mean(dim=(2, 3))

    model = ChannelSoftmax().eval()
    with torch.no_grad():
        model.conv2.weight[:, 0] = 0  # channel 0 of conv1 is read by nothing but the softmax
    with pytest.raises(RuntimeError, match="the smaller model differs"):
        shrink(model, (3, 8, 8))
