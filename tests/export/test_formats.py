"""The dense and sparse formats: exact round trips to the masked model, and the sparse file's size
made of nonzero values and their indices."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import sparsetune
from sparsetune.export import encode, export_ticket, load, memory_footprint, read_ticket
from sparsetune.export.formats import index_dtype
from sparsetune.export.header import read_header
from sparsetune.models.lenet import LeNet300
from sparsetune.pruning.masking import WeightMask, find_masks, find_parametrizations


def test_dense_is_the_plain_state_dict_of_the_original_class(magnitude_trial, tmp_path):
    path = export_ticket(magnitude_trial.workdir, "dense", tmp_path / "dense.safetensors").path
    masked = magnitude_trial.context.model
    inputs = magnitude_trial.splits.val.x[:128]

    fresh = LeNet300(input_shape=(1, 20, 20), num_classes=10)
    fresh.load_state_dict(load_file(path))  # strict: the class's own keys, nothing else
    fresh.eval()
    assert torch.equal(fresh(inputs), masked(inputs))  # exactly: the weights are squashed
    assert not find_parametrizations(fresh, torch.nn.Module)

    loaded = load(path)
    assert type(loaded) is LeNet300 and not loaded.training
    assert find_masks(loaded) is None
    assert torch.equal(loaded(inputs), masked(inputs))
    assert sparsetune.load is load  # `import sparsetune` is enough to reach it
    assert read_header(path)["format"] == "dense"


def test_sparse_stores_nonzeros_and_their_indices_and_loads_the_same_forward(
    magnitude_trial, tmp_path
):
    export = export_ticket(magnitude_trial.workdir, "sparse", tmp_path / "sparse.safetensors")
    path = export.path
    ticket = read_ticket(magnitude_trial.workdir)
    # What is counted: for each pruned weight tensor, its nonzero entries times (4 bytes of a
    # float32 value + the bytes of one index in the smallest unsigned type holding numel - 1).
    # Not counted: the biases kept whole, the JSON header and safetensors' per-tensor entries;
    # the 10% leaves room for those.
    expected = 0
    with safe_open(str(path), framework="pt") as handle:
        for name in ticket.masks:
            weight = ticket.weights[name]
            nonzero = int(weight.count_nonzero())
            index_bytes = torch.empty((), dtype=index_dtype(weight.numel())).element_size()
            expected += nonzero * (4 + index_bytes)
            indices = handle.get_tensor(f"indices.{name}")
            assert indices.dtype == index_dtype(weight.numel()) and len(indices) == nonzero
            assert handle.get_tensor(f"values.{name}").dtype == torch.float32
    size = os.path.getsize(path)
    assert size == export.size == memory_footprint(magnitude_trial.workdir)
    assert abs(size - expected) <= 0.1 * expected, (size, expected)
    # fc1 has 400 x 300 = 120,000 weights: 4-byte indices; fc2 and fc3 fit 2-byte ones.
    assert index_dtype(120_000) == torch.uint32 and index_dtype(30_000) == torch.uint16
    assert size < os.path.getsize(
        export_ticket(magnitude_trial.workdir, "dense", tmp_path / "dense.safetensors").path
    )

    loaded = load(path)
    inputs = magnitude_trial.splits.val.x[:128]
    assert type(loaded) is LeNet300
    assert torch.equal(loaded(inputs), magnitude_trial.context.model(inputs))


def test_every_round_with_a_ticket_reports_its_memory_footprint(magnitude_trial):
    # What a sweep's rows and front read: the round's own sparse size, in its metrics.
    assert [r.round for r in magnitude_trial.results] == [1, 2]
    for result in magnitude_trial.results:
        assert result.memory_footprint_bytes == memory_footprint(result.ticket_path)
        assert result.metrics()["memory_footprint_bytes"] == result.memory_footprint_bytes
    first, last = magnitude_trial.results
    assert last.memory_footprint_bytes < first.memory_footprint_bytes  # 90% sparse vs ~68%


def test_index_types_are_the_smallest_that_hold_every_position():
    assert index_dtype(256) == torch.uint8 and index_dtype(257) == torch.uint16
    assert index_dtype(2**16) == torch.uint16 and index_dtype(2**16 + 1) == torch.uint32
    assert index_dtype(2**32 + 1) == torch.int64


@pytest.mark.parametrize("format", ["dense", "sparse", "ticket"])
def test_load_with_masks_gives_back_the_tickets_masks(magnitude_trial, tmp_path, format):
    ticket = read_ticket(magnitude_trial.workdir)
    path = ticket.path
    if format != "ticket":
        path = export_ticket(ticket.path, format, tmp_path / f"{format}.safetensors").path
    model = load(path, masks=True)
    masks = find_masks(model)
    assert masks is not None and list(masks) == list(ticket.masks)
    for name, mask in ticket.masks.items():
        # From the zero pattern for dense and sparse: the ticket's masks, as no surviving weight
        # of this ticket is exactly 0.0.
        assert torch.equal(masks[name].bool(), mask)
    inputs = magnitude_trial.splits.val.x[:64]
    assert torch.equal(model(inputs), magnitude_trial.context.model(inputs))


def test_unknown_formats_and_damaged_files_are_refused(magnitude_trial, tmp_path):
    ticket = read_ticket(magnitude_trial.workdir)
    with pytest.raises(ValueError, match="format 'onnx': choose one of dense, sparse, structured"):
        encode(ticket, "onnx")
    export = encode(ticket, "sparse")
    del export.tensors["indices.fc2.weight"]
    broken = export.write(tmp_path / "broken.safetensors")
    with pytest.raises(ValueError, match="sparse entries of fc2.weight are damaged"):
        load(broken)
    export = encode(ticket, "dense")
    export.info["model"] = "lenet5"  # a header that names another class
    with pytest.raises(ValueError, match="do not fit lenet5"):
        load(export.write(tmp_path / "other.safetensors"))


def test_nothing_is_left_behind_when_writing_fails(magnitude_trial, tmp_path):
    export = encode(read_ticket(magnitude_trial.workdir), "dense")
    target = tmp_path / "folder"
    target.mkdir()
    with pytest.raises(IsADirectoryError):
        export.write(target)
    assert list(tmp_path.iterdir()) == [target] and not list(target.iterdir())


def test_weight_mask_parametrizations_are_the_only_ones_a_masked_load_adds(magnitude_trial):
    model = load(magnitude_trial.workdir, masks=True)
    found = find_parametrizations(model, torch.nn.Module)
    assert set(found) == {"fc1.weight", "fc2.weight", "fc3.weight"}
    assert all(isinstance(p, WeightMask) for _, p in found.values())
