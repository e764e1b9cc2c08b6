"""The contract every registered pruning method must pass (STYLE.md, "Tests").

Parametrised over `METHODS`, so a method is covered the moment it is registered: with no entry in
`CONTRACT_CASES` it runs with its default parameters and no sparsity target. Give a new method an
entry there when its defaults are slow, and name the overall sparsity its parameters must reach.

Each case runs one real trial through `run_trial` (the tickets it writes, what `on_round` sees) and
the same trial step by step (`run_step_by_step`, which keeps the live model and masks). The two
must agree exactly, which is both the determinism check and what keeps the step-by-step copy of
`run_trial` honest.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file

from sparsetune.config import TrainConfig, TrialConfig
from sparsetune.data.tensors import TensorSet
from sparsetune.models import build_model
from sparsetune.pruning import METHODS
from sparsetune.pruning.masking import (
    attach_masks,
    find_masks,
    prunable_parameters,
    squashed_state_dict,
)
from sparsetune.train.loop import fit
from sparsetune.trial import RoundResult, TrialContext, run_trial, start_trial


@dataclass(frozen=True)
class Case:
    params: dict[str, Any] = field(default_factory=dict)
    # The overall sparsity (pruned / prunable weights) these params must reach at the last round;
    # None when the method's criterion decides (e.g. Han's C x std threshold).
    target: float | None = None


CONTRACT_CASES: dict[str, dict[str, Case]] = {
    "dense": {"default": Case(target=0.0)},
    # The threshold decides the sparsity; a strong lambda and a large T so that two short rounds
    # prune (about 60% here); tolerance 1 so that no round stops the run.
    "sensitivity": {
        variant: Case(
            {"variant": variant, "lmbda": 0.05, "threshold": 0.01, "epochs": 2, "tolerance": 1.0}
        )
        for variant in ("unspecific", "specific")
    },
    "magnitude": {
        "global": Case(
            {"criterion": "global", "sparsity": 0.8, "rounds": 2, "retrain_epochs": 1}, 0.8
        ),
        "layerwise": Case(
            {"criterion": "layerwise", "sparsity": 0.6, "rounds": 2, "retrain_epochs": 1}, 0.6
        ),
        "std": Case({"criterion": "std", "c_fc": 0.8, "rounds": 2, "retrain_epochs": 1}),
    },
    # The gates decide the sparsity; a fast gate rate so that one short epoch closes some.
    "l0": {
        "weight": Case(
            {"granularity": "weight", "epochs": 1, "gate_lr_factor": 300, "l0_lambda": 0.05}
        ),
        "neuron": Case(
            {"granularity": "neuron", "epochs": 1, "gate_lr_factor": 300, "l0_lambda": 0.005}
        ),
    },
    # Pruning at initialisation: one global (or layer-wise) top-k to the target, then training.
    "snip": {
        "default": Case({"sparsity": 0.9, "scoring_batch": 64}, 0.9),
        "shuffle": Case({"sparsity": 0.8, "scoring_batch": 64, "control": "shuffle"}, 0.8),
    },
    "grasp": {
        "default": Case({"sparsity": 0.9, "samples_per_class": 4}, 0.9),
        "reinit": Case(
            {
                "sparsity": 0.7,
                "samples_per_class": 4,
                "xavier_fc_scoring": False,
                "control": "reinit",
            },
            0.7,
        ),
    },
    "random": {
        "layerwise": Case({"sparsity": 0.9, "distribution": "layerwise"}, 0.9),
        "global": Case({"sparsity": 0.95, "distribution": "global"}, 0.95),
    },
    # 1 - (1 - 0.5)^2 = 0.75 in every layer, output layer included.
    "lottery": {
        "rewind-0": Case(
            {"prune_fraction": 0.5, "rounds": 2, "output_rate": "same", "train_epochs": 1}, 0.75
        ),
        "global-shuffle": Case(
            {
                "prune_fraction": 0.5,
                "rounds": 2,
                "criterion": "global",
                "output_rate": "same",
                "control": "shuffle",
                "train_epochs": 1,
            },
            0.75,
        ),
    },
}

CASES = [
    pytest.param((method, case), id=f"{method}-{name}")
    for method in METHODS.names()
    for name, case in CONTRACT_CASES.get(method, {"default": Case()}).items()
]


@dataclass
class Run:
    case: Case
    config: TrialConfig
    cache: Path
    results: list[RoundResult]  # what run_trial returned
    seen: list[RoundResult]  # what on_round received, in order
    tickets: list[dict[str, torch.Tensor]]  # each round's ticket, read when on_round fired
    context: TrialContext  # the same trial, step by step, from a fresh cache
    live_masks: list[dict[str, torch.Tensor]]  # the live mask buffers at each of its rounds


def trial_config(method: str, case: Case, data) -> TrialConfig:
    return TrialConfig(
        model="lenet300",
        data=data,
        train=TrainConfig(epochs=1),
        method=method,
        params=case.params,
        seed=0,
        device="cpu",
    )


def run_step_by_step(
    config: TrialConfig, cache_dir: Path, workdir: Path | None
) -> tuple[TrialContext, list[dict[str, torch.Tensor]]]:
    """`run_trial` through its two halves, keeping the live model and the masks of each round."""
    snapshots: list[dict[str, torch.Tensor]] = []
    started: list[TrialContext] = []  # on_round is made before the context it reads exists

    def on_round(result: RoundResult) -> None:
        snapshots.append({name: m.detach().clone() for name, m in started[0].masks.items()})

    context = start_trial(config, cache_dir=cache_dir, workdir=workdir, on_round=on_round)
    started.append(context)
    context.run()
    return context, snapshots


@pytest.fixture(scope="module", params=CASES)
def run(request, tmp_path_factory, small_data) -> Run:
    method, case = request.param
    config = trial_config(method, case, small_data)
    cache = tmp_path_factory.mktemp("cache")
    seen, tickets = [], []

    def on_round(result: RoundResult) -> None:
        seen.append(result)
        tickets.append(load_file(result.ticket_path))

    results = run_trial(
        config, cache_dir=cache, workdir=tmp_path_factory.mktemp("trial"), on_round=on_round
    )
    context, live_masks = run_step_by_step(
        config, tmp_path_factory.mktemp("fresh-cache"), tmp_path_factory.mktemp("step-by-step")
    )
    return Run(case, config, cache, results, seen, tickets, context, live_masks)


def _metrics(results: list[RoundResult]) -> list[dict]:
    return [result.metrics() | {"seconds": None} for result in results]


def _ticket_masks(ticket: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("mask."): v for k, v in ticket.items() if k.startswith("mask.")}


def _random_keep(masks, fraction: float, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        name: torch.rand(mask.shape, generator=generator) < fraction for name, mask in masks.items()
    }


def test_every_round_is_reported_once_in_order(run):
    assert run.results, "a trial reports at least one round"
    assert run.seen == run.results
    rounds = [result.round for result in run.results]
    assert rounds == sorted(set(rounds))
    assert all(result.ticket_path.is_file() for result in run.results)


def test_masks_are_binary_and_shaped_like_their_weights(run):
    masks = run.context.masks
    assert list(masks) == prunable_parameters(run.context.model)  # every prunable weight
    assert len(run.live_masks) == len(run.results)
    for snapshot, ticket in zip(run.live_masks, run.tickets, strict=True):
        assert snapshot.keys() == set(masks)
        for name, mask in snapshot.items():
            stored = masks.stored_weight(name)
            assert mask.shape == stored.shape and mask.dtype == stored.dtype
            assert ((mask == 0) | (mask == 1)).all(), f"{name}: a mask holds values other than 0, 1"
        saved = _ticket_masks(ticket)
        assert saved.keys() == snapshot.keys()
        for name, mask in saved.items():
            assert mask.dtype == torch.bool
            assert mask.shape == ticket[f"weight.{name}"].shape


def test_target_sparsity_is_met_and_reported_truthfully(run):
    for result, ticket in zip(run.results, run.tickets, strict=True):
        masks = _ticket_masks(ticket)
        kept = sum(int(mask.sum()) for mask in masks.values())
        total = sum(mask.numel() for mask in masks.values())
        assert (result.remaining_weights, result.total_weights) == (kept, total)
        assert result.compression == pytest.approx(total / kept, rel=1e-12)
        assert 0 < result.flops_ratio <= 1
    if run.case.target is not None:
        final = 1 - run.results[-1].remaining_weights / run.results[-1].total_weights
        assert final == pytest.approx(run.case.target, abs=0.005)


def test_no_weight_is_revived_across_rounds(run):
    for earlier, later in zip(run.tickets, run.tickets[1:], strict=False):
        for name, mask in _ticket_masks(earlier).items():
            revived = _ticket_masks(later)[name] & ~mask
            assert not revived.any(), f"{int(revived.sum())} weights of {name} came back"
    for earlier, later in zip(run.live_masks, run.live_masks[1:], strict=False):
        for name, mask in earlier.items():
            assert not ((later[name] != 0) & (mask == 0)).any()
    for ticket in run.tickets:  # and the saved weights are exactly zero where pruned
        for name, mask in _ticket_masks(ticket).items():
            assert (ticket[f"weight.{name}"][~mask] == 0).all()


def test_pruned_weights_and_their_gradients_are_zero_after_a_training_step(run, small_splits):
    context, _ = run_step_by_step(run.config, run.cache, workdir=None)
    masks, method = context.masks, context.method
    # Prune a random 30% more, so that every method (dense included) has pruned positions.
    masks.update(_random_keep(masks, 0.7, seed=1))
    pruned = {name: mask == 0 for name, mask in masks.items()}
    before = {name: masks.stored_weight(name).detach().clone() for name in masks}
    recipe = method.retrain_recipe(run.config.train).model_copy(
        update={"epochs": 1, "batch_size": 64}
    )
    batch = TensorSet(small_splits.train.x[:256], small_splits.train.y[:256])
    fit(context.model, batch, recipe, seed=0, hooks=method)  # 4 steps, with the method's hooks

    trained = False
    for name, mask in masks.items():
        stored = masks.stored_weight(name)
        assert stored.grad is not None, f"{name} received no gradient"
        assert (stored.grad[pruned[name]] == 0).all(), f"{name}: gradient leaks to pruned weights"
        assert (stored[pruned[name]] == 0).all(), f"{name}: a pruned stored weight moved"
        module = context.model.get_submodule(name.rpartition(".")[0])
        assert (module.weight[pruned[name]] == 0).all()
        assert not ((mask != 0) & pruned[name]).any(), f"{name}: training revived a weight"
        trained |= not torch.equal(stored[~pruned[name]], before[name][~pruned[name]])
    assert trained, "the step changed no surviving weight"


def test_deepcopy_and_state_dict_round_trips_keep_the_forward(run, small_splits):
    context, _ = run_step_by_step(run.config, run.cache, workdir=None)
    model, masks = context.model, context.masks
    # Not committed: the stored weights under these masks stay nonzero, so a copy that lost a
    # mask would compute something else.
    masks.update(_random_keep(masks, 0.5, seed=2), commit=False)
    assert any((masks.stored_weight(n)[masks[n] == 0] != 0).any() for n in masks)
    model.eval()
    inputs = small_splits.val.x[:64]
    expected = model(inputs)

    clone = copy.deepcopy(model)
    assert torch.equal(clone(inputs), expected)
    clone_masks = find_masks(clone)
    assert clone_masks is not None and list(clone_masks) == list(masks)
    for name in masks:
        assert clone_masks[name] is not masks[name]
        assert torch.equal(clone_masks[name], masks[name])

    torch.manual_seed(123)  # different initial weights, overwritten by the load
    fresh = build_model(run.config.model, small_splits.input_shape, small_splits.num_classes)
    METHODS[run.config.method](run.config.method_config()).attach(fresh, attach_masks(fresh))
    fresh.load_state_dict(model.state_dict())  # strict
    fresh.eval()
    assert torch.equal(fresh(inputs), expected)


def test_squashed_export_loads_into_the_plain_model_with_the_same_forward(run, small_splits):
    context, _ = run_step_by_step(run.config, run.cache, workdir=None)
    model, masks = context.model, context.masks
    masks.update(_random_keep(masks, 0.5, seed=3), commit=False)
    model.eval()
    inputs = small_splits.val.x[:64]

    plain = build_model(run.config.model, small_splits.input_shape, small_splits.num_classes)
    plain.load_state_dict(squashed_state_dict(model))  # strict: the plain model's own key names
    plain.eval()
    assert find_masks(plain) is None
    torch.testing.assert_close(plain(inputs), model(inputs), rtol=0, atol=1e-6)
    for name in masks:
        exported = plain.get_parameter(name)
        assert (exported[masks[name] == 0] == 0).all()


def test_deterministic_under_a_seed(run, tmp_path):
    # run.context trained its dense stage in a fresh cache; this run reads run_trial's cache.
    dense_trained_here = []
    again = run_trial(
        run.config,
        cache_dir=run.cache,
        workdir=tmp_path,
        on_dense=lambda dense: dense_trained_here.append(dense.trained_here),
    )
    assert dense_trained_here == [False]
    assert _metrics(run.context.results) == _metrics(run.results)
    assert _metrics(again) == _metrics(run.results)
    for index, ticket in enumerate(run.tickets):
        for other in (
            load_file(run.context.results[index].ticket_path),
            load_file(again[index].ticket_path),
        ):
            assert other.keys() == ticket.keys()
            for key, value in ticket.items():
                assert torch.equal(other[key], value), key
        for name, mask in run.live_masks[index].items():
            assert torch.equal(mask.bool(), _ticket_masks(ticket)[name])


@pytest.mark.parametrize("method", METHODS.names())
def test_unknown_config_keys_are_rejected(method, small_data):
    with pytest.raises(ValidationError, match="no_such_knob"):
        TrialConfig(model="lenet300", data=small_data, method=method, params={"no_such_knob": 1})
    with pytest.raises(ValidationError, match="no_such_knob"):
        METHODS[method].Config(no_such_knob=1)
