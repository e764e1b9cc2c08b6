"""Builders as they are: a factory gets only the keywords its signature takes among
`input_shape` and `num_classes`; `torchvision:NAME` is short for `torchvision.models:NAME`; the
model is checked on one batch of the data before anything is written."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import pytest
import torch
import torchvision
from torch import nn

from sparsetune.app.checks import check_model
from sparsetune.app.errors import BadInput
from sparsetune.app.prune import run_pruning
from sparsetune.catalog import check_model_name, factory_keywords, model_factory
from sparsetune.config import DataConfig, SyntheticOptions, TrainConfig, TrialConfig
from sparsetune.data import load_splits
from sparsetune.export.ticket import read_ticket
from sparsetune.models import build_model

BUILDERS = """
    from torch import nn

    def fixed():
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))

    def by_shape(input_shape):
        return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0] * 64, 4))

    def any_keywords(**options):
        return nn.Sequential(nn.Flatten(), nn.Linear(192, options["num_classes"]))

    def wrong_classes(input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(192, 1000))

    def wrong_input(num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(5, num_classes))

    def raises(num_classes):
        raise RuntimeError("weights not found\\nsecond line of the error")

    def returns_a_tuple(num_classes):
        return TupleOut(num_classes)

    class TupleOut(nn.Module):
        def __init__(self, num_classes):
            super().__init__()
            self.fc = nn.Linear(192, num_classes)

        def forward(self, x):
            return (self.fc(x.flatten(1)),)
"""


@pytest.fixture
def builders(tmp_path, monkeypatch):
    name = f"user_builders_{abs(hash(str(tmp_path)))}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(BUILDERS))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def rgb_splits():
    """A tiny 3x8x8 synthetic set with 4 classes."""
    return load_splits(rgb_data((3, 8, 8), classes=4))


def rgb_data(shape: tuple[int, ...], classes: int = 10) -> DataConfig:
    return DataConfig(
        name="synthetic",
        val_size=40,
        synthetic=SyntheticOptions(
            input_shape=shape, num_classes=classes, train_size=120, test_size=40, noise=1.0
        ),
    )


def test_torchvision_builders_get_num_classes_only():
    # resnet18(*, weights=None, progress=True, **kwargs): num_classes through **kwargs, and no
    # input_shape, which ResNet.__init__ would refuse.
    assert factory_keywords(torchvision.models.resnet18, (3, 32, 32), 10) == {"num_classes": 10}
    for name in ("torchvision:resnet18", "torchvision.models:resnet18"):
        model = build_model(name, (3, 32, 32), 7)
        assert isinstance(model, torchvision.models.ResNet) and model.fc.out_features == 7
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
        assert check_model_name(name) == name


def test_factories_get_the_keywords_they_name(builders):
    assert factory_keywords(model_factory(f"{builders}:fixed"), (3, 8, 8), 4) == {}
    model = build_model(f"{builders}:fixed", (3, 8, 8), 4)
    assert model(torch.zeros(2, 3, 8, 8)).shape == (2, 4)
    assert build_model(f"{builders}:by_shape", (3, 8, 8), 4)[1].in_features == 192
    assert build_model(f"{builders}:any_keywords", (3, 8, 8), 6)[1].out_features == 6
    for name in ("fixed", "by_shape", "any_keywords"):
        assert check_model_name(f"{builders}:{name}") == f"{builders}:{name}"


def test_the_config_takes_the_short_form():
    config = TrialConfig(
        model="torchvision:resnet18", data=DataConfig(name="synthetic"), method="dense"
    )
    assert config.model == "torchvision:resnet18"


def test_timm_short_form_names_the_missing_package_or_builds():
    if importlib.util.find_spec("timm") is None:
        with pytest.raises(ValueError) as error:
            check_model_name("timm:resnet18")
        assert "cannot import 'timm.models'" in str(error.value)
        assert "\n" not in str(error.value)
    else:
        assert build_model("timm:resnet18", (3, 32, 32), 5)(torch.zeros(2, 3, 32, 32)).shape == (
            2,
            5,
        )


def test_registered_names_are_checked_without_torch():
    code = (
        "import sys; from sparsetune.catalog import check_model_name; "
        "check_model_name('resnet20'); assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def bad_model(name: str, splits) -> str:
    with pytest.raises(BadInput) as error:
        check_model(name, splits)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"--model {name}: ")
    return message


def test_the_one_batch_check_passes_a_model_that_fits(builders, rgb_splits):
    check_model(f"{builders}:any_keywords", rgb_splits)
    check_model("torchvision:resnet18", load_splits(rgb_data((3, 32, 32), classes=4)))


def test_an_output_of_other_classes_is_one_line(builders, rgb_splits):
    message = bad_model(f"{builders}:wrong_classes", rgb_splits)
    assert "its output has 1000 classes, the data has 4" in message


def test_an_input_the_model_cannot_take_is_one_line(builders, rgb_splits):
    message = bad_model(f"{builders}:wrong_input", rgb_splits)
    assert "cannot take the data's input of shape (3, 8, 8)" in message
    # A torchvision ResNet wants three channels: MNIST-shaped data has one.
    gray = load_splits(rgb_data((1, 28, 28)))
    assert "expected input[2, 1, 28, 28] to have 3 channels" in bad_model(
        "torchvision:resnet18", gray
    )


def test_a_factory_that_raises_is_one_line(builders, rgb_splits):
    message = bad_model(f"{builders}:raises", rgb_splits)
    assert message.startswith(
        f"--model {builders}:raises: building it raised RuntimeError: weights not found;"
    )


def test_an_output_that_is_not_a_tensor_is_one_line(builders, rgb_splits):
    message = bad_model(f"{builders}:returns_a_tuple", rgb_splits)
    assert "its output is a tuple, not a tensor of class scores" in message


@pytest.mark.slow
def test_a_torchvision_resnet18_is_pruned_as_it_is(tmp_path):
    config = TrialConfig(
        model="torchvision:resnet18",
        data=rgb_data((3, 32, 32)),
        train=TrainConfig(epochs=1, batch_size=40, lr=0.01),
        method="magnitude",
        params={"criterion": "global", "sparsity": 0.5, "rounds": 1, "retrain_epochs": 0},
        device="cpu",
    )
    result = run_pruning(config, out=tmp_path / "out", cache_dir=tmp_path / "cache")
    assert result.final.compression == pytest.approx(2.0, rel=0.02)
    assert (tmp_path / "out" / "result.json").is_file()
    # The ticket names the short form and builds the same torchvision class back, masks on.
    ticket = read_ticket(tmp_path / "out")
    assert ticket.info["model"] == "torchvision:resnet18"
    model = ticket.masked_model()
    assert isinstance(model, torchvision.models.ResNet) and model.fc.out_features == 10
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    kept = sum(int(mask.sum()) for mask in ticket.masks.values())
    total = sum(mask.numel() for mask in ticket.masks.values())
    assert kept / total == pytest.approx(0.5, abs=0.01)
    assert isinstance(model.conv1, nn.Conv2d)
