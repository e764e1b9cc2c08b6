"""The CIFAR VGGs and ResNets (papers.md, "Shared models"): sizes, shapes, names, masks, init.

Every count below is derived by hand from the architecture (3x3 convolutions without bias, each
followed by BatchNorm with 2 parameters per channel; one linear head with bias; 10 classes).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsetune.config import DataConfig, SyntheticOptions
from sparsetune.data import load_splits
from sparsetune.models import MODELS, build_model
from sparsetune.models.resnet_cifar import CifarResNet
from sparsetune.models.vgg_cifar import CifarVGG
from sparsetune.pruning.masking import attach_masks, prunable_parameters
from sparsetune.pruning.metrics import architecture_string, layer_macs

CIFAR_MODELS = ["resnet20", "resnet32", "resnet32x2", "vgg16", "vgg19"]

# (prunable weights, all parameters). ResNet-20: stem 3*16*9 = 432; stage 1, six 16->16 convs
# 6*2304 = 13,824; stage 2, 16*32*9 + 32*32*9 + 1x1 shortcut 16*32 + four 32->32 convs = 51,200;
# stage 3 likewise with 32/64 = 204,800; fc 64*10 = 640: 270,896. BatchNorm: 2 * 784 channels,
# fc bias 10: 272,474 in all, the count open_lth pins for its option-B ResNet-20 ("0.27M").
# ResNet-32 (5 blocks per stage): 432 + 23,040 + 88,064 + 352,256 + 640 = 464,432; 2 * 1,232
# BatchNorm channels + 10 = 466,906 ("0.46M"). GraSP's double-width ResNet-32: 864 + 92,160 +
# 352,256 + 1,409,024 + 1,280 = 1,855,584; 2 * 2,464 + 10 = 1,860,522 ("1.86M").
# VGG-16 convolutions: 1,728 + 36,864 | 73,728 + 147,456 | 294,912 + 2 * 589,824 |
# 1,179,648 + 2 * 2,359,296 | 3 * 2,359,296 = 14,710,464, fc 512*10 = 5,120: 14,715,584; BatchNorm
# 2 * 4,224 channels + 10: 14,724,042 ("14.7M"). VGG-19 adds one 256->256 and four 512->512
# convolutions (589,824 + 4 * 2,359,296): 20,024,000 and 20,035,018 with 2 * 5,504 + 10 ("20.0M").
COUNTS = {
    "resnet20": (270_896, 272_474),
    "resnet32": (464_432, 466_906),
    "resnet32x2": (1_855_584, 1_860_522),
    "vgg16": (14_715_584, 14_724_042),
    "vgg19": (20_024_000, 20_035_018),
}


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {name: build_model(name, (3, 32, 32), 10) for name in CIFAR_MODELS}


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_parameter_counts_derived_by_hand(models, name):
    model = models[name]
    prunable = sum(model.get_parameter(p).numel() for p in prunable_parameters(model))
    assert (prunable, sum(p.numel() for p in model.parameters())) == COUNTS[name]


def test_all_cifar_models_are_registered():
    assert set(CIFAR_MODELS) <= set(MODELS.names())


@pytest.mark.parametrize("name", CIFAR_MODELS)
@pytest.mark.parametrize("num_classes", [10, 100])
def test_output_shapes_and_output_layer(name, num_classes):
    model = build_model(name, (3, 32, 32), num_classes)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, num_classes)
    assert prunable_parameters(model)[-1] == f"{model.output_layer}.weight"
    assert model.get_submodule(model.output_layer).out_features == num_classes


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_every_conv_is_followed_by_batchnorm_and_has_no_bias(models, name):
    modules = [m for m in models[name].modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    convs = modules[0::2]
    assert all(isinstance(m, nn.Conv2d) and m.bias is None for m in convs)
    assert all(
        isinstance(bn, nn.BatchNorm2d) and bn.num_features == conv.out_channels
        for conv, bn in zip(convs, modules[1::2], strict=True)
    )


@pytest.mark.parametrize(
    "name, convs", [("resnet20", 21), ("resnet32", 33), ("vgg16", 13), ("vgg19", 16)]
)
def test_masks_attach_to_every_conv_and_the_linear_head(name, convs):
    # ResNet: stem + 2 per block + 2 shortcut convs; VGG: configurations D and E.
    model = build_model(name, (3, 32, 32), 10)
    masks = attach_masks(model)
    weights = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert list(masks) == [f"{n}.weight" for n in weights]
    assert len(masks) == convs + 1 and list(masks)[-1] == f"{model.output_layer}.weight"
    # Masked forward still works, and a pruned weight gets no gradient.
    first = list(masks)[0]
    masks.update({first: torch.zeros_like(masks[first])})
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert torch.count_nonzero(masks.stored_weight(first).grad) == 0


def test_vgg_layers_are_named_as_in_han_et_al():
    model = build_model("vgg16", (3, 32, 32), 10)
    names = [n.removeprefix("features.")[: -len(".weight")] for n in prunable_parameters(model)]
    assert names == [
        *("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3"),
        *("conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3", "classifier"),
    ]
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert widths == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 4  # none after stage 5: its map stays 2x2 on 32x32 inputs
    assert model.classifier.in_features == 512


def feature_sizes(model: nn.Module, x: torch.Tensor) -> list[tuple[int, ...]]:
    sizes = []
    hooks = [
        stage.register_forward_hook(lambda _m, _i, out: sizes.append(tuple(out.shape[1:])))
        for stage in (model.layer1, model.layer2, model.layer3)
    ]
    model(x)
    for hook in hooks:
        hook.remove()
    return sizes


def test_resnet_stages_halve_resolution_and_double_width():
    model = build_model("resnet20", (3, 32, 32), 10)
    assert feature_sizes(model, torch.zeros(1, 3, 32, 32)) == [
        (16, 32, 32),
        (32, 16, 16),
        (64, 8, 8),
    ]
    # Option B: a 1x1 stride-2 projection where the shape changes, identity elsewhere.
    assert model.layer1[0].shortcut is None and model.layer2[1].shortcut is None
    projection = model.layer2[0].shortcut.conv
    assert projection.kernel_size == (1, 1) and projection.stride == (2, 2)
    assert len(model.layer1) == len(model.layer2) == len(model.layer3) == 3
    assert len(build_model("resnet32", (3, 32, 32), 10).layer3) == 5


def test_width_multiplier_scales_every_channel():
    narrow = build_model("resnet32", (3, 32, 32), 10)
    wide = build_model("resnet32x2", (3, 32, 32), 10)
    narrow_widths = [m.out_channels for m in narrow.modules() if isinstance(m, nn.Conv2d)]
    wide_widths = [m.out_channels for m in wide.modules() if isinstance(m, nn.Conv2d)]
    assert wide_widths == [2 * w for w in narrow_widths]
    assert feature_sizes(wide, torch.zeros(1, 3, 32, 32))[-1] == (128, 8, 8)  # GraSP's 32/64/128
    triple = CifarResNet(20, (3, 32, 32), 10, width=3)
    assert feature_sizes(triple, torch.zeros(1, 3, 32, 32)) == [
        (48, 32, 32),
        (96, 16, 16),
        (192, 8, 8),
    ]
    assert triple.fc.in_features == 192


def test_architecture_string_counts_surviving_output_channels():
    model = build_model("resnet20", (3, 32, 32), 10)
    # stem, 6 convs of stage 1; stage 2: 2 + shortcut + 4; stage 3 alike; then fc's inputs.
    dense = ["16"] * 7 + ["32"] * 7 + ["64"] * 7 + ["64"]
    assert architecture_string(model) == "-".join(dense)
    masks = attach_masks(model)
    pruned = masks["layer2.0.conv1.weight"].clone()
    pruned[:5] = 0  # five whole output channels
    masks.update({"layer2.0.conv1.weight": pruned})
    dense[7] = "27"
    assert architecture_string(model) == "-".join(dense)

    vgg = build_model("vgg19", (3, 32, 32), 10)
    expected = [64, 64, 128, 128, *[256] * 4, *[512] * 8, 512]
    assert architecture_string(vgg) == "-".join(map(str, expected))


def test_macs_per_example_match_the_usual_figures():
    # ResNet-20: 432*1024 + 6*2304*1024 + (4608 + 9216 + 512 + 4*9216)*256
    # + (18432 + 36864 + 2048 + 4*36864)*64 + 640 = 40,813,184 ("41M").
    assert sum(layer_macs(build_model("resnet20", (3, 32, 32), 10), (3, 32, 32)).values()) == (
        40_813_184
    )
    # VGG-16: 38,592*1024 + 221,184*256 + 1,474,560*64 + 5,898,240*16 + 7,077,888*4 + 5,120
    # = 313,201,664 ("313M").
    assert sum(layer_macs(build_model("vgg16", (3, 32, 32), 10), (3, 32, 32)).values()) == (
        313_201_664
    )


def test_initialisation_follows_grasps_code():
    torch.manual_seed(0)
    model = build_model("vgg16", (3, 32, 32), 10)
    conv = model.features.conv5_3.weight  # 2.4M weights: the sample std is tight
    fan_out = 512 * 3 * 3
    assert conv.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.01)
    assert model.classifier.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert torch.count_nonzero(model.classifier.bias) == 0
    bn = model.features.bn5_3
    assert torch.equal(bn.weight, torch.ones(512)) and torch.equal(bn.bias, torch.zeros(512))
    resnet = build_model("resnet32x2", (3, 32, 32), 10)
    wide = resnet.layer3[1].conv1.weight  # 147,456 weights
    assert wide.std().item() == pytest.approx((2 / (128 * 9)) ** 0.5, rel=0.02)


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_one_training_step_on_synthetic_3x32x32(name):
    options = SyntheticOptions(input_shape=(3, 32, 32), train_size=20, test_size=10, noise=1.0)
    splits = load_splits(DataConfig(name="synthetic", val_size=10, synthetic=options))
    assert splits.input_shape == (3, 32, 32)
    torch.manual_seed(0)
    model = build_model(name, splits.input_shape, splits.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = splits.train.x[:2], splits.train.y[:2]
    before = model.get_parameter(prunable_parameters(model)[0]).detach().clone()
    F.cross_entropy(model(x), y).backward()
    optimizer.step()
    assert not torch.equal(before, model.get_parameter(prunable_parameters(model)[0]))
    model.eval()
    assert torch.isfinite(model(splits.test.x[:2])).all()


def test_other_input_shapes():
    assert build_model("resnet20", (1, 28, 28), 10)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    vgg = build_model("vgg16", (1, 28, 28), 10)  # 28 -> 14 -> 7 -> 3 -> 1 before pooling
    assert vgg(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert vgg.features.conv1_1.in_channels == 1


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: build_model("vgg16", (3, 8, 8), 10), r"vgg16 needs images .* at least 16x16"),
        (lambda: build_model("vgg19", (3072,), 10), r"vgg19 needs images shaped"),
        (lambda: build_model("resnet20", (784,), 10), r"resnet20 needs images shaped"),
        (lambda: CifarResNet(21), r"6n \+ 2"),
        (lambda: CifarResNet(20, width=0), r"width must be a positive integer"),
        (lambda: CifarVGG(11), r"VGG depth must be one of \[16, 19\]"),
    ],
)
def test_bad_shapes_depths_and_widths_are_rejected(build, message):
    with pytest.raises(ValueError, match=message):
        build()
