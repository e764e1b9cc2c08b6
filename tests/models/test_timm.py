"""timm's models as they are: `timm:NAME` is `timm.create_model(NAME)`, and an import path of one
of timm's builders works too; both get the number of classes and the data's input channels
(`in_chans`), never pretrained weights. Pruned and given a generated space through the real
`sparsetune` command; a name timm does not know is one line, exit code 2."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
import yaml
from cli_helpers import assert_one_error_line, run_cli

from sparsetune.app.checks import check_model
from sparsetune.catalog import check_model_name, factory_keywords, model_factory
from sparsetune.config import DataConfig, SyntheticOptions
from sparsetune.data import load_splits
from sparsetune.export.ticket import read_ticket
from sparsetune.models import build_model

timm = pytest.importorskip("timm")

SMALL = "timm:mobilenetv3_small_050"  # 0.6 M parameters: a CPU epoch on 200 images in a second
# Fashion-MNIST-like (1 x 28 x 28) and CIFAR-like (3 x 32 x 32) synthetic data.
GRAY, RGB = (1, 28, 28), (3, 32, 32)

RGB_FACTORY = """
import torch

def rgb():
    # 3 x 32 x 32 uint8 images of four classes.
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(300) % 4
    x = torch.randint(0, 80, (300, 3, 32, 32), generator=generator, dtype=torch.uint8)
    x += (y * 40).to(torch.uint8).view(-1, 1, 1, 1)
    return (x[:240], y[:240]), (x[240:], y[240:])
"""


def synthetic(shape: tuple[int, ...]) -> DataConfig:
    options = SyntheticOptions(input_shape=shape, num_classes=4, train_size=60, test_size=20)
    return DataConfig(name="synthetic", val_size=20, synthetic=options)


@pytest.mark.parametrize("name", ["timm:resnet18", SMALL, "timm.models.resnet:resnet18"])
def test_timm_models_take_the_datas_channels(name):
    for shape in (GRAY, RGB):
        model = build_model(name, shape, 4)
        stem = model.conv1 if hasattr(model, "conv1") else model.conv_stem
        assert stem.in_channels == shape[0]
        assert model(torch.zeros(2, *shape)).shape == (2, 4)
    assert check_model_name(name) == name


def test_the_one_batch_check_passes_a_timm_model_on_one_channel_data():
    # torchvision's resnet18 is refused here (3-channel stem); timm's gets a 1-channel one.
    check_model("timm:resnet18", load_splits(synthetic(GRAY)))


def test_timm_keywords():
    # A builder of timm's by import path: num_classes and in_chans through its **kwargs.
    builder = model_factory("timm.models.resnet:resnet18")
    assert factory_keywords(builder, GRAY, 3) == {"in_chans": 1, "num_classes": 3}
    # Feature vectors have no channels to give.
    assert factory_keywords(builder, (20,), 3) == {"num_classes": 3}

    # Any factory that names in_chans gets it, timm's or not.
    def build(in_chans, num_classes):
        return torch.nn.Conv2d(in_chans, num_classes, 3)

    assert factory_keywords(build, RGB, 3) == {"in_chans": 3, "num_classes": 3}
    # A model built for one input size (a ViT) gets the data's as img_size.
    vit = build_model("timm:test_vit", RGB, 5)
    assert vit(torch.zeros(2, *RGB)).shape == (2, 5)
    # A pretrained tag names the same architecture: its config, never its weights.
    tagged = build_model("timm:resnet18.a1_in1k", GRAY, 3)
    assert tagged.fc.out_features == 3 and tagged.conv1.in_channels == 1


def test_names_timm_does_not_know_are_one_line():
    with pytest.raises(ValueError) as error:
        check_model_name("timm:resnet1")
    message = str(error.value)
    assert "\n" not in message
    assert "timm has no model 'resnet1'; did you mean timm:resnet18" in message
    with pytest.raises(ValueError, match="sparsetune never downloads models"):
        check_model_name("timm:hf-hub:timm/resnet18.a1_in1k")


def prune(tmp_path, *args: str, env=None):
    return run_cli(
        "prune",
        *args,
        *("--method", "magnitude", "--epochs", "1", "--set", "criterion=global"),
        *("--set", "sparsity=0.5", "--set", "rounds=1", "--set", "retrain_epochs=0"),
        *("--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--json"),
        cwd=tmp_path,
        env=env,
    )


def assert_pruned(result, tmp_path, name: str, channels: int) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["model"] == name and summary["compression"] > 1
    # The ticket names the model and builds it back with the data's channels.
    model = read_ticket(tmp_path / "out").masked_model()
    assert model.conv_stem.in_channels == channels


def test_prune_a_timm_model_on_one_channel_data(tmp_path):
    # synthetic is Fashion-MNIST-shaped: 1 x 28 x 28, ten classes.
    arguments = ("--dataset", "synthetic", "--val-size", "100", "--subset", "200")
    result = prune(tmp_path, "--model", SMALL, *arguments)
    assert_pruned(result, tmp_path, SMALL, channels=1)


@pytest.mark.slow
def test_prune_a_timm_model_on_three_channel_data(tmp_path):
    (tmp_path / "rgb_data.py").write_text(textwrap.dedent(RGB_FACTORY))
    env = {"PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    arguments = ("--dataset", "rgb_data:rgb", "--val-size", "40")
    result = prune(tmp_path, "--model", "timm.models:mobilenetv3_small_050", *arguments, env=env)
    assert_pruned(result, tmp_path, "timm.models:mobilenetv3_small_050", channels=3)


def test_the_generated_space_lists_its_prunable_layers(tmp_path):
    result = run_cli("space", "--model", SMALL, "--dataset", "synthetic", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"# Search space for {SMALL}, generated by sparsetune from its 54 prunable layers" in (
        result.stdout
    )
    assert "(conv_stem, blocks.0.0.conv_dw," in result.stdout
    space = yaml.safe_load(result.stdout)
    assert space["description"] == f"generated for {SMALL} (input 1x28x28, 10 classes)"
    assert {"dense", "magnitude", "snip"} <= set(space["methods"])


def test_a_bad_timm_name_is_one_line_and_exit_code_2(tmp_path):
    before = sorted(path.name for path in tmp_path.iterdir())
    result = prune(tmp_path, "--model", "timm:mobilenetv3_smal", "--dataset", "synthetic")
    assert_one_error_line(
        result,
        [
            "timm has no model 'mobilenetv3_smal'",
            "did you mean timm:mobilenetv3_small_",
            "list_models",
        ],
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == before


@pytest.mark.slow
def test_prune_a_timm_resnet18_on_one_channel_data(tmp_path):
    arguments = ("--dataset", "synthetic", "--val-size", "100", "--subset", "200")
    result = prune(tmp_path, "--model", "timm:resnet18", *arguments)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["compression"] > 1
    assert read_ticket(tmp_path / "out").masked_model().conv1.in_channels == 1
