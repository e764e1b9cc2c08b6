"""The structured format: an L0 neuron-level LeNet-5 ticket becomes a physically smaller network
with exactly its surviving channels and neurons, and files can only name allow-listed layers."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from sparsetune.export import encode, export_ticket, load, read_ticket
from sparsetune.export.header import encode_header
from sparsetune.export.shrink import Call, SelectFeatures
from sparsetune.export.structured import describe, rebuild
from sparsetune.pruning.masking import find_masks


def _alive(mask: torch.Tensor) -> torch.Tensor:
    """Output units with any surviving weight."""
    return mask.flatten(1).any(1)


def _read(mask: torch.Tensor) -> torch.Tensor:
    """Inputs (columns, input channels) with any surviving weight."""
    return mask.transpose(0, 1).flatten(1).any(1)


def surviving_shapes(masks: dict[str, torch.Tensor]) -> list[tuple[int, int]]:
    """(out, in) of each LeNet-5 layer once every unit that carries nothing is gone.

    A unit survives when it has weights and the next layer reads it. A unit the next layer reads
    but with no weights of its own outputs a constant (its bias through ReLU and pooling): no
    padding anywhere in LeNet-5, so the constant is the same at every position and moves into
    the next layer's bias. fc1 reads a flattened 2x2 map: 4 features per conv2 channel."""
    conv1, conv2, fc1, fc2 = (masks[f"{name}.weight"] for name in ("conv1", "conv2", "fc1", "fc2"))
    per_channel = fc1.shape[1] // conv2.shape[0]
    fc1_reads = _read(fc1).view(conv2.shape[0], per_channel)
    conv1_kept = _alive(conv1) & _read(conv2)
    conv2_kept = _alive(conv2) & fc1_reads.any(1)
    features = fc1_reads & conv2_kept[:, None]
    fc1_kept = _alive(fc1) & _read(fc2)
    counts = [int(v.sum()) for v in (conv1_kept, conv2_kept, features, fc1_kept)]
    return [(counts[0], 1), (counts[1], counts[0]), (counts[3], counts[2]), (10, counts[3])]


def test_an_l0_lenet5_ticket_shrinks_to_its_surviving_channels_and_neurons(l0_trial, tmp_path):
    ticket = read_ticket(l0_trial.workdir)
    structured = export_ticket(ticket.path, "structured", tmp_path / "small.safetensors")
    dense = export_ticket(ticket.path, "dense", tmp_path / "dense.safetensors")
    model = load(structured.path)
    assert isinstance(model, nn.Sequential) and not model.training

    weighted = [m for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]
    shapes = [tuple(m.weight.shape[:2]) for m in weighted]
    assert shapes == surviving_shapes(ticket.masks)
    # The architecture string (Louizos et al.'s conv1-conv2-fc1in-fc2in) counts units with any
    # weight; the structured model has those that also carry something to the next layer.
    conv1, conv2, fc1_inputs, fc2_inputs = map(int, ticket.info["architecture"].split("-"))
    assert (shapes[0][0], shapes[1][0], shapes[3][1]) == (conv1, conv2, fc2_inputs)
    assert shapes[2][1] <= fc1_inputs
    assert conv2 < 50 and fc1_inputs < 200 and fc2_inputs < 500  # the run removed units
    assert any(isinstance(m, SelectFeatures) for m in model)  # fc1's unread features

    inputs = l0_trial.splits.val.x
    torch.testing.assert_close(model(inputs), l0_trial.context.model(inputs), rtol=0, atol=1e-5)
    parameters = sum(p.numel() for p in model.parameters())
    dense_parameters = sum(p.numel() for p in load(dense.path).parameters())
    assert parameters == structured.info["parameters"] < dense_parameters
    assert os.path.getsize(structured.path) < os.path.getsize(dense.path)

    # With masks: one on each remaining weight, from its zero pattern (none are left inside an
    # L0 neuron-level model's layers: whole columns and channels went).
    masked = load(structured.path, masks=True)
    masks = find_masks(masked)
    assert list(masks) == [f"{i}.weight" for i, m in enumerate(model) if m in weighted]
    assert all(bool(mask.all()) for mask in masks.values())
    torch.testing.assert_close(masked(inputs), model(inputs), rtol=0, atol=0)


def test_an_unstructured_ticket_has_no_structured_form(magnitude_trial, tmp_path):
    ticket = read_ticket(magnitude_trial.workdir)
    with pytest.raises(ValueError, match="no neuron or channel.*use --format sparse"):
        encode(ticket, "structured")


def test_every_allowed_layer_type_round_trips():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.LeakyReLU(0.2),
        nn.MaxPool2d(2, ceil_mode=True),
        Call(torch.nn.functional.avg_pool2d, (1,), {"stride": 1}),
        nn.Dropout2d(0.1),
        Call("flatten", (1,), {}),
        SelectFeatures(torch.tensor([0, 3, 5, 6, 15])),
        nn.Linear(5, 7),
        nn.GELU(approximate="tanh"),
        Call(torch.relu, (), {}),
        nn.Linear(7, 2),
        nn.LogSoftmax(dim=1),
    ).eval()
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
    layers, tensors = describe(model)
    layers = json.loads(json.dumps(layers))  # through JSON, as the header stores it
    rebuilt = rebuild(layers, tensors)
    inputs = torch.randn(4, 3, 5, 5)
    assert torch.equal(rebuilt(inputs), model(inputs))
    assert [type(m) for m in rebuilt] == [type(m) for m in model]
    assert rebuilt[0].bias is None and rebuilt[3].ceil_mode


@pytest.mark.parametrize(
    ("layer", "words"),
    [
        ({"type": "Call", "function": "os.system", "args": ["true"]}, "disallowed function"),
        ({"type": "Call", "method": "__reduce__"}, "disallowed method"),
        ({"type": "Module"}, "disallowed type 'Module'"),
        (
            {"type": "Linear", "args": {"in_features": 2, "out_features": 2, "device": "meta"}},
            "unknown arguments",
        ),
        ({"type": "Linear", "args": {"in_features": "x", "out_features": 2}}, "malformed"),
    ],
    ids=["function", "method", "type", "argument", "argument-type"],
)
def test_a_file_cannot_name_anything_outside_the_allow_lists(l0_trial, tmp_path, layer, words):
    ticket = read_ticket(l0_trial.workdir)
    export = encode(ticket, "structured")
    path = tmp_path / "tampered.safetensors"
    info = {**export.info, "layers": [*export.info["layers"][:-1], layer]}
    save_file(export.tensors, path, metadata=encode_header(info))
    with pytest.raises(ValueError, match=words):
        load(path)
    with pytest.raises(ValueError, match=words):
        rebuild(info["layers"], load_file(path))


def test_modules_outside_the_tables_are_refused_when_exporting():
    class Swish(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)

    with pytest.raises(ValueError, match="layer 1 \\(Swish\\).*--format sparse"):
        describe(nn.Sequential(nn.Linear(2, 2), Swish()))
    with pytest.raises(ValueError, match="calls exp.*--format sparse"):
        describe(nn.Sequential(nn.Linear(2, 2), Call(torch.exp, (), {})))
    with pytest.raises(ValueError, match="type dtype"):
        describe(nn.Sequential(Call("to", (torch.float64,), {})))
