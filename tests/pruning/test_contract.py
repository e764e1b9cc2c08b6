"""The contract every registered pruning method must pass (STYLE.md, "Tests").

Parametrised over `METHODS`, so a new method is covered the moment it is registered; give it a
small config in `CONTRACT_PARAMS` if its defaults are too slow for a test.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from safetensors.torch import load_file

from sparsetune.config import DataConfig, SyntheticOptions, TrainConfig, TrialConfig
from sparsetune.data import load_splits
from sparsetune.models import build_model
from sparsetune.pruning import METHODS
from sparsetune.pruning.masking import attach_masks, find_masks, squashed_state_dict
from sparsetune.trial import run_trial

# (params, the overall sparsity the method must reach or None when the method sets no target)
CONTRACT_PARAMS = {
    "dense": ({}, None),
    "magnitude": ({"criterion": "global", "sparsity": 0.8, "rounds": 2, "retrain_epochs": 1}, 0.8),
}

DATA = DataConfig(
    name="synthetic",
    val_size=200,
    synthetic=SyntheticOptions(train_size=800, test_size=200, noise=2.0),
)


def trial_config(method: str, seed: int = 0) -> TrialConfig:
    params, _ = CONTRACT_PARAMS.get(method, ({}, None))
    return TrialConfig(
        model="lenet300",
        data=DATA,
        train=TrainConfig(epochs=1),
        method=method,
        params=params,
        seed=seed,
        device="cpu",
    )


@pytest.fixture(scope="module", params=METHODS.names())
def method_run(request, tmp_path_factory):
    """One real trial of each method, with its ticket files."""
    method = request.param
    workdir = tmp_path_factory.mktemp(f"{method}-trial")
    cache = tmp_path_factory.mktemp("cache")
    results = run_trial(trial_config(method), cache_dir=cache, workdir=workdir)
    return method, results, workdir, cache


def _tickets(workdir, results):
    return [load_file(workdir / f"round-{r.round}.safetensors") for r in results]


def test_every_method_has_contract_params():
    assert set(METHODS.names()) <= set(CONTRACT_PARAMS), "add the new method to CONTRACT_PARAMS"


def test_masks_are_binary_and_shaped_like_their_weights(method_run):
    method, results, workdir, _ = method_run
    assert results, f"{method} reported no round"
    for ticket in _tickets(workdir, results):
        masks = {k.removeprefix("mask."): v for k, v in ticket.items() if k.startswith("mask.")}
        assert masks, "a ticket holds masks"
        for name, mask in masks.items():
            assert mask.dtype == torch.bool
            assert mask.shape == ticket[f"weight.{name}"].shape


def test_target_sparsity_is_met(method_run):
    method, results, _, _ = method_run
    _, target = CONTRACT_PARAMS[method]
    final = results[-1]
    if target is None:
        assert final.compression == pytest.approx(1.0)
    else:
        sparsity = 1 - final.remaining_weights / final.total_weights
        assert sparsity == pytest.approx(target, abs=0.01)
        assert final.compression == pytest.approx(1 / (1 - target), rel=0.05)


def test_no_weight_is_revived_across_rounds(method_run):
    method, results, workdir, _ = method_run
    tickets = _tickets(workdir, results)
    for earlier, later in zip(tickets, tickets[1:], strict=False):
        for key, mask in earlier.items():
            if key.startswith("mask."):
                assert not (later[key] & ~mask).any(), f"{method} revived weights in {key}"


def test_pruned_weights_are_zero_in_the_saved_ticket(method_run):
    _, results, workdir, _ = method_run
    for ticket in _tickets(workdir, results):
        for key, mask in ticket.items():
            if key.startswith("mask."):
                assert (ticket["weight." + key.removeprefix("mask.")][~mask] == 0).all()


@pytest.mark.parametrize("method", METHODS.names())
def test_pruned_weights_and_their_gradients_stay_zero_through_a_step(method, tmp_path):
    config = trial_config(method)
    splits = load_splits(config.data)
    torch.manual_seed(0)
    model = build_model(config.model, splits.input_shape, splits.num_classes)
    masks = attach_masks(model)
    pruner = METHODS[method](config.method_config())
    pruner.attach(model, masks)
    generator = torch.Generator().manual_seed(0)
    masks.update({n: torch.rand(m.shape, generator=generator) > 0.7 for n, m in masks.items()})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for _ in range(3):
        loss = F.cross_entropy(model(splits.train.x[:64]), splits.train.y[:64])
        penalty = pruner.penalty(model)
        loss = loss + penalty if penalty is not None else loss
        optimizer.zero_grad()
        loss.backward()
        pruner.after_backward(model)
        for name, mask in masks.items():
            assert (masks.stored_weight(name).grad[mask == 0] == 0).all()
        optimizer.step()
        pruner.on_step_end(model)
        for name, mask in masks.items():
            assert (masks.stored_weight(name)[mask == 0] == 0).all()
            module_name = name.rpartition(".")[0]
            assert (model.get_submodule(module_name).weight[mask == 0] == 0).all()


@pytest.mark.parametrize("method", METHODS.names())
def test_deepcopy_state_dict_and_squashed_export_keep_the_forward(method):
    config = trial_config(method)
    splits = load_splits(config.data)
    torch.manual_seed(0)
    model = build_model(config.model, splits.input_shape, splits.num_classes)
    masks = attach_masks(model)
    METHODS[method](config.method_config()).attach(model, masks)
    generator = torch.Generator().manual_seed(1)
    masks.update({n: torch.rand(m.shape, generator=generator) > 0.5 for n, m in masks.items()})
    model.eval()
    inputs = splits.val.x[:32]
    expected = model(inputs)

    clone = copy.deepcopy(model)
    assert torch.equal(clone(inputs), expected)
    assert find_masks(clone) is not None

    torch.manual_seed(123)
    fresh = build_model(config.model, splits.input_shape, splits.num_classes)
    attach_masks(fresh)
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    assert torch.equal(fresh(inputs), expected)

    plain = build_model(config.model, splits.input_shape, splits.num_classes)
    plain.load_state_dict(squashed_state_dict(model))  # strict: the original key names
    plain.eval()
    assert torch.allclose(plain(inputs), expected, atol=1e-6)


def test_deterministic_under_a_seed(method_run, tmp_path):
    method, results, workdir, cache = method_run
    again = run_trial(trial_config(method), cache_dir=cache, workdir=tmp_path)
    assert [r.metrics() | {"seconds": 0} for r in again] == [
        r.metrics() | {"seconds": 0} for r in results
    ]
    for first, second in zip(_tickets(workdir, results), _tickets(tmp_path, again), strict=True):
        assert first.keys() == second.keys()
        assert all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize("method", METHODS.names())
def test_unknown_config_keys_are_rejected(method):
    with pytest.raises(ValidationError, match="no_such_knob"):
        TrialConfig(model="lenet300", data=DATA, method=method, params={"no_such_knob": 1})
