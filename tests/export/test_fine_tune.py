"""Fine-tuning a loaded ticket keeps its sparsity, and a trial resumed from its round ticket keeps
its masks: `load(..., masks=True)` re-attaches the masks, and training never moves a pruned
weight off zero."""

from __future__ import annotations

import pytest
import torch

from sparsetune.config import TrainConfig
from sparsetune.data.tensors import TensorSet
from sparsetune.export import export_ticket, load, read_ticket
from sparsetune.pruning import METHODS
from sparsetune.pruning.masking import find_masks
from sparsetune.train.loop import fit

RECIPE = TrainConfig(
    optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, epochs=1, batch_size=64
)


def _first(splits, count: int = 256) -> TensorSet:
    return TensorSet(splits.train.x[:count], splits.train.y[:count])


def _pruned(model) -> dict[str, torch.Tensor]:
    return {name: mask == 0 for name, mask in find_masks(model).items()}


# Structured files are left out: an L0 neuron-level ticket's smaller model has no zeros left
# inside its layers (whole columns and channels went), so its masks are all ones; test_structured
# checks that they are attached.
@pytest.mark.parametrize("format", ["dense", "sparse"])
def test_fine_tuning_a_loaded_ticket_keeps_every_pruned_weight_at_zero(
    magnitude_trial, tmp_path, format
):
    trial = magnitude_trial
    path = export_ticket(trial.workdir, format, tmp_path / "model.safetensors").path
    model = load(path, masks=True)
    pruned = _pruned(model)
    assert sum(int(p.sum()) for p in pruned.values()) > 0
    masks = find_masks(model)
    before = {name: masks.stored_weight(name).detach().clone() for name in pruned}

    fit(model, _first(trial.splits), RECIPE, seed=0)  # 4 SGD steps with momentum and decay

    moved = False
    for name, was_pruned in pruned.items():
        assert torch.equal(masks[name] == 0, was_pruned), f"{name}: the mask changed"
        weight = masks.effective_weight(name)
        assert (weight[was_pruned] == 0).all(), f"{name}: a pruned weight moved"
        assert (masks.stored_weight(name)[was_pruned] == 0).all()
        moved |= not torch.equal(masks.stored_weight(name), before[name])
    assert moved, "training changed no surviving weight"


def test_a_trial_resumed_from_its_round_ticket_keeps_its_masks(magnitude_trial):
    """Round 1's ticket back into a fresh model, then the method's retraining continued: the
    masks stay round 1's, and every weight they prune stays exactly zero."""
    ticket = read_ticket(magnitude_trial.workdir / "round-1.safetensors")
    model = load(ticket.path, masks=True)
    masks = find_masks(model)
    assert list(masks) == list(ticket.masks)
    for name, mask in ticket.masks.items():
        assert torch.equal(masks[name].bool(), mask)
    config = magnitude_trial.config
    method = METHODS[config.method](config.method_config())
    method.attach(model, masks)
    recipe = method.retrain_recipe(config.train).model_copy(update={"epochs": 1})
    fit(model, _first(magnitude_trial.splits, 512), recipe, seed=1, hooks=method)

    for name, mask in ticket.masks.items():
        assert torch.equal(masks[name].bool(), mask), f"{name}: the mask changed"
        assert (masks.stored_weight(name)[~mask] == 0).all(), f"{name}: a pruned weight moved"
    # And the live masks keep the sparsity the ticket reported for round 1.
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    assert total / kept == pytest.approx(magnitude_trial.results[0].compression, rel=1e-12)
