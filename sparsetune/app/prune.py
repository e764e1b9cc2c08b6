"""`sparsetune prune`: one configuration in this process, no Ray, MLflow only when asked.

The same trial driver as a sweep's trials (`sparsetune.trial`), the same dense cache (a dense
stage trained here is reused by later sweeps and runs), and the same ticket files in the output
folder. `prune(options)` checks the input, then runs; `run_pruning(config)` runs a config that is
already checked (the scripts call it).
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from sparsetune.app.checks import (
    DenseStage,
    check_device,
    check_model,
    check_params_fit,
    check_stores,
    check_writable,
)
from sparsetune.app.console import progress_console, say
from sparsetune.app.errors import BadInput
from sparsetune.app.options import PruneOptions
from sparsetune.atomic import atomic_file, atomic_write_text
from sparsetune.config import DataConfig, TrialConfig
from sparsetune.identity import trial_hash
from sparsetune.validation import describe_validation_error

if TYPE_CHECKING:
    from rich.console import Console

    from sparsetune.recipe import MethodRecipe
    from sparsetune.trial import EpochCallback, RoundResult


@dataclass(frozen=True)
class PruneResult:
    config: TrialConfig
    config_hash: str  # trial_hash(config): the run's identity, as a sweep's trial would have it
    rounds: list[RoundResult]
    out: Path
    run_id: str | None
    smaller_model: Path | None = None  # the physically smaller network, when units were removed
    # Bytes of the final ticket's sparse export (nonzero values + their indices, the rest whole):
    # the "memory footprint" (sparsetune.export.formats, docs/export.md).
    memory_footprint_bytes: int | None = None

    @property
    def final(self) -> RoundResult:
        return self.rounds[-1]

    def summary(self) -> dict[str, Any]:
        """What `--json` prints and `result.json` holds: the final round, and every round."""
        final = self.final
        return {
            "method": self.config.method,
            "params": self.config.method_config().model_dump(),
            "model": self.config.model,
            "dataset": self.config.data.name,
            "weights": str(self.config.weights) if self.config.weights else None,
            "val_acc": final.val_acc,
            "test_acc": final.test_acc,
            "test_error": round(100 * (1 - final.test_acc), 4),
            "compression": final.compression,
            "flops_ratio": final.flops_ratio,
            "memory_footprint_bytes": self.memory_footprint_bytes,
            "remaining_weights": final.remaining_weights,
            "total_weights": final.total_weights,
            "architecture": final.architecture,
            "round": final.round,
            "run_id": self.run_id,
            "config_hash": self.config_hash,
            "out": str(self.out),
            "smaller_model": str(self.smaller_model) if self.smaller_model else None,
            "rounds": [result.metrics() for result in self.rounds],
            "layers": [layer.as_row() for layer in final.report.layers],
        }


def prune(options: PruneOptions, *, console: Console | None = None) -> PruneResult:
    """Train and prune one configuration with its paper's settings (the recipe), `options.params`
    over them. Every check runs before the output folder or the dense cache is touched; progress
    (the plan, each epoch, each round) goes to `console`."""
    from sparsetune.report.live import PhaseProgress
    from sparsetune.train.loop import TrainingDiverged

    config, recipe = trial_config(options)
    folder = options.folder
    check_writable(folder, "--out")
    check_stores(options.cache_dir, options.tracking_uri)
    check_trial(config)
    console = progress_console(console)
    dense = f"dense {config.train.epochs} epochs ({recipe.source})"
    if config.weights is not None:
        from sparsetune.models.weights import initialisation_note

        dense = (
            f"dense from --weights {config.weights} (not trained); {config.method} "
            f"{initialisation_note(config.method)}"
        )
    say(
        console,
        f"{config.method} on {config.model} / {config.data.name}: {dense}, "
        f"params {config.method_config().model_dump()}",
    )
    for note in [*recipe.notes, length_note(config)]:
        if note:
            say(console, note)

    def on_round(result: RoundResult) -> None:
        say(
            console,
            f"round {result.round}: val {result.val_acc:.4f}, test {result.test_acc:.4f}, "
            f"{result.compression:.1f}x, FLOPs {100 * result.flops_ratio:.1f}%, "
            f"{result.architecture} ({result.seconds:.0f} s)",
        )

    created = not folder.exists()
    try:
        with PhaseProgress(console) as progress:
            return run_pruning(
                config,
                out=folder,
                cache_dir=options.cache_dir,
                tracking_uri=options.tracking_uri,
                experiment=options.experiment,
                on_round=on_round,
                on_epoch=progress.on_epoch,
            )
    except TrainingDiverged as error:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise BadInput(f"training diverged ({error}); lower the learning rate") from None
    except KeyboardInterrupt:  # Ctrl-C: no half-written output folder (the CLI says "interrupted")
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def trial_config(options: PruneOptions) -> tuple[TrialConfig, MethodRecipe]:
    """The trial `options` describe: the method's recipe for the model (scaled to
    `options.epochs`) with `options.params` over its parameters."""
    from sparsetune.recipe import method_recipe

    try:
        recipe = method_recipe(options.model, options.method)
    except ValueError as error:
        raise BadInput(str(error)) from None
    if options.epochs is not None:
        recipe = _quick_recipe(recipe, options)
    data = DataConfig(
        name=options.dataset,
        data_dir=options.data_dir,
        subset=options.subset,
        val_size=options.val_size,
        memory_budget_gb=options.memory_budget_gb,
    )
    try:
        config = TrialConfig(
            model=options.model,
            data=data,
            train=recipe.train,
            method=options.method,
            params={**recipe.params, **options.params},
            seed=options.seed,
            device=options.device,
            weights=options.weights,
        )
    except ValidationError as error:
        message = describe_validation_error(error)
        # Method parameters come from --set; name the option the user typed.
        raise BadInput(f"--set: {message}" if "params." in message else message) from None
    return config, recipe


def _quick_recipe(recipe: MethodRecipe, options: PruneOptions) -> MethodRecipe:
    """The recipe scaled to `--epochs` (`MethodRecipe.scaled_to`), its per-step rates raised
    as its phases shortened; a rate that would pass its knob's upper limit stays at the limit,
    and a note says that the run will regularise less than the full recipe, and from what length
    it would not."""
    from sparsetune.pruning import METHODS

    assert options.epochs is not None
    try:
        method_class = METHODS[options.method]
    except ValueError:  # an unknown name: the checks refuse it with the known ones
        return recipe.scaled_to(options.epochs, {})
    scaled = recipe.scaled_to(
        options.epochs,
        _config_defaults(options.method),
        method_class.per_step_knobs,
        options.params,
    )
    params, notes = dict(scaled.params), []
    for rate in method_class.per_step_knobs:
        upper = _upper_bound(method_class.Config, rate)
        value = params.get(rate)
        if upper is None or not isinstance(value, int | float) or value <= upper:
            continue
        params[rate] = upper
        enough = math.ceil(options.epochs * value / upper)
        notes.append(
            f"{options.method} at --epochs {options.epochs}: {rate} would have to be {value:.3g} "
            f"to regularise as much as the full recipe, above its limit {upper:g}; it prunes "
            f"less than the full recipe at this length (--epochs {enough} or more does not)"
        )
    return replace(scaled, params=params, notes=scaled.notes + tuple(notes))


def _upper_bound(config_class: Any, knob: str) -> float | None:
    """The largest value the Config's field `knob` takes (its `le` or `lt`), or None."""
    field = config_class.model_fields.get(knob)
    for constraint in field.metadata if field is not None else ():
        bound = getattr(constraint, "le", None) or getattr(constraint, "lt", None)
        if bound is not None:
            return float(bound)
    return None


def _config_defaults(method: str) -> dict[str, object]:
    """The method's knobs at their Config defaults (none for a name the checks will refuse)."""
    from sparsetune.pruning import METHOD_CONFIGS

    try:
        config = METHOD_CONFIGS[method]
    except ValueError:
        return {}
    return {
        name: field.default
        for name, field in config.model_fields.items()
        if not field.is_required() and field.default_factory is None
    }


def length_note(config: TrialConfig) -> str | None:
    """The method's own line when this run is too short for it to prune
    (`PruningMethod.length_note`), else None."""
    from sparsetune.data import load_splits
    from sparsetune.pruning import METHODS

    method = METHODS[config.method](config.method_config())
    return method.length_note(len(load_splits(config.data).train))


def check_trial(config: TrialConfig) -> None:
    """The method fits the model (its per-layer settings name real layers) and the dense stage
    (a rewind point it will have), and the data loads; the device exists."""
    from sparsetune.data import load_splits
    from sparsetune.pruning.masking import UnknownLayer
    from sparsetune.trial import check_method

    try:
        splits = load_splits(config.data)
    except ValueError as error:
        raise BadInput(str(error)) from None
    check_model(config.model, splits, config.weights)
    try:
        check_method(config, splits)
    except UnknownLayer as error:
        raise BadInput(f"--set {error}") from None
    except ValueError as error:
        raise BadInput(str(error)) from None
    dense = DenseStage.of(config.train, len(splits.train), config.weights)
    check_params_fit("", config.method, config.method_config().model_dump(), dense)
    check_device(config.device)


def run_pruning(
    config: TrialConfig,
    *,
    out: Path,
    cache_dir: Path,
    tracking_uri: str | None = None,
    experiment: str = "sparsetune-prune",
    on_round: Callable[[RoundResult], None] = lambda result: None,
    on_epoch: EpochCallback | None = None,
) -> PruneResult:
    """Train and prune `config`; tickets and `result.json` go to `out`, an MLflow run to
    `tracking_uri` when given (marked FAILED with the reason if the trial raises)."""
    from sparsetune.export import memory_footprint
    from sparsetune.trial import start_trial

    config_hash = trial_hash(config)
    recorder = None
    if tracking_uri is not None:
        from sparsetune.tracking.mlflow_store import MlflowStore
        from sparsetune.tracking.trial_run import TrialRun

        store = MlflowStore.open(tracking_uri, experiment, out / "mlartifacts")
        name = f"{config.method}-{config.model}-{config_hash[:8]}"
        recorder = TrialRun.start(store, name, config, config_hash, out, curves=True)

    def record(result: RoundResult) -> None:
        if recorder is not None:
            recorder.record_round(result)
        on_round(result)

    try:
        trial = start_trial(
            config, cache_dir=cache_dir, workdir=out, on_round=record, on_epoch=on_epoch
        )
        trial.run()
        smaller = export_smaller_model(trial.model, trial.splits.input_shape, out)
        footprint = memory_footprint(trial.results[-1].ticket_path)
    except BaseException as error:
        if recorder is not None:
            recorder.fail(error)
        raise
    if recorder is not None:
        if smaller is not None:
            recorder.run.log_files([smaller], artifact_path="ticket")
        final_round = trial.results[-1].round
        recorder.run.log_metrics({"memory_footprint_bytes": footprint}, step=final_round)
        recorder.finish()
    run_id = recorder.run_id if recorder else None
    result = PruneResult(config, config_hash, trial.results, out, run_id, smaller, footprint)
    summary = json.dumps(result.summary(), indent=2, default=str)
    atomic_write_text(out / "result.json", summary + "\n")
    return result


def export_smaller_model(model: Any, input_shape: tuple[int, ...], out: Path) -> Path | None:
    """Write `smaller-model.pt2`, the network with its removed neurons and channels physically
    gone (`export.shrink`), as a `torch.export` program: `torch.export.load(path).module()` runs
    it with no sparsetune and no pickled code. None when no unit was removed (unstructured
    sparsity leaves every layer its width) or the architecture is one `shrink` does not support."""
    import torch

    from sparsetune.export.shrink import plain_copy, shrink

    try:
        smaller = shrink(model, input_shape)
    except (ValueError, RuntimeError):
        return None
    # Against the plain network (masks and gates baked in): gate parameters are not the model's.
    plain = plain_copy(model)
    if sum(p.numel() for p in smaller.parameters()) >= sum(p.numel() for p in plain.parameters()):
        return None
    device = next(model.parameters()).device
    example = torch.zeros(2, *input_shape, device=device)  # batch 2: a batch of 1 would specialise
    batch = torch.export.Dim("batch")
    program = torch.export.export(smaller.eval(), (example,), dynamic_shapes=({0: batch},))
    path = out / "smaller-model.pt2"
    with atomic_file(path) as staging:
        torch.export.save(program, staging)
    return path
