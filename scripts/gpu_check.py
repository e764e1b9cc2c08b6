#!/usr/bin/env python
"""The GPU paths, checked on a machine with a CUDA device (issue 4's device check).

    python scripts/gpu_check.py --epochs 3 --json-out gpu-check.json

1. Every registered method runs one short trial of LeNet-5 on CUDA (synthetic 1x28x28 data): each
   method's tensors, generators and hooks work on the device, not only on the CPU.
2. VGG-19 and ResNet-32 on CIFAR-shaped data (synthetic 3x32x32, 50,000 training examples, 10
   classes, as CIFAR-10) with SNIP and GraSP at 90%, 95% and 98% sparsity: each run's accuracy,
   compression and the wall time of a training epoch, dense and sparse.

Runs go through `sparsetune prune`'s code (`run_pruning`) with each model's recipe scaled to
`--epochs`. Epoch times are the training loop's own wall time (CUDA synchronised) divided by its
epochs, so they leave out scoring, evaluation and data loading. Not part of the test suite: CI has
no GPU. Needs torch with CUDA, pydantic, pyyaml, rich and safetensors; no Ray, Optuna or MLflow.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

import sparsetune.trial.context
import sparsetune.trial.dense
from sparsetune.app.prune import run_pruning
from sparsetune.config import DataConfig, SyntheticOptions, TrialConfig
from sparsetune.pruning import METHODS
from sparsetune.recipe import method_recipe
from sparsetune.train.allocator import keep_freed_memory

# The trial modules that call the training loop: the dense stage and the trial's retraining.
TRAINING_MODULES = (sparsetune.trial.dense, sparsetune.trial.context)


class EpochClock:
    """Wraps the training loop that `sparsetune.trial` calls and records seconds per epoch."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, float]] = []  # (epochs, seconds) per call of the loop
        self._fit = sparsetune.trial.context.fit

    def __enter__(self) -> EpochClock:
        def timed_fit(model, data, recipe, **options):
            synchronise()
            started = time.perf_counter()
            loss = self._fit(model, data, recipe, **options)
            synchronise()
            self.calls.append((recipe.epochs, time.perf_counter() - started))
            return loss

        for module in TRAINING_MODULES:
            module.fit = timed_fit
        return self

    def __exit__(self, *exc) -> None:
        for module in TRAINING_MODULES:
            module.fit = self._fit

    def last_per_epoch(self) -> float | None:
        """Seconds per epoch of the last training (a trial's sparse training comes last)."""
        epochs, seconds = self.calls[-1]
        return seconds / epochs if epochs else None


def synchronise() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run(config: TrialConfig, out: Path, cache: Path, clock: EpochClock) -> dict:
    before = len(clock.calls)
    started = time.perf_counter()
    single = run_pruning(config, out=out, cache_dir=cache)
    summary = single.summary()
    return {
        "model": config.model,
        "method": config.method,
        "params": summary["params"],
        "val_acc": summary["val_acc"],
        "test_acc": summary["test_acc"],
        "compression": summary["compression"],
        "flops_ratio": summary["flops_ratio"],
        "fit_calls": clock.calls[before:],
        "epoch_seconds": clock.last_per_epoch(),
        "run_seconds": time.perf_counter() - started,
    }


def save(results: dict, path: Path | None) -> None:
    """Rewritten after every run, so a run cut short still leaves what it measured."""
    if path is not None:
        path.write_text(json.dumps(results, indent=2, default=str) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="dense and sparse training epochs")
    parser.add_argument("--models", default="vgg19,resnet32")
    parser.add_argument("--methods", default="snip,grasp")
    parser.add_argument("--sparsities", default="0.9,0.95,0.98")
    parser.add_argument("--train-size", type=int, default=50_000, help="CIFAR-shaped examples")
    parser.add_argument("--skip-smoke", action="store_true", help="skip every method on LeNet-5")
    parser.add_argument("--device", default="cuda", help="cuda; cpu only for a dry run")
    parser.add_argument("--json-out", type=Path, help="write every result there as JSON")
    args = parser.parse_args()
    keep_freed_memory()  # this process trains: reuse freed blocks (train/allocator.py)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device is visible; run it on a machine with a GPU")
    # 5,000 more for the validation split, as CIFAR-10's 50,000 hold out 5,000 here.
    cifar_shaped = SyntheticOptions(
        input_shape=(3, 32, 32), num_classes=10, train_size=args.train_size + 5000, test_size=10_000
    )

    log = Console(stderr=True)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    log.print(f"torch {torch.__version__}, {device_name}")
    work = Path(tempfile.mkdtemp(prefix="sparsetune-gpu-check-"))
    results: dict = {"device": device_name, "torch": torch.__version__}
    with EpochClock() as clock:

        def measure(section: str, model: str, method: str, data: DataConfig, recipe, params):
            config = TrialConfig(
                model=model,
                data=data,
                train=recipe.train,
                method=method,
                params=params,
                device=args.device,
            )
            name = f"{section}-{model}-{method}-{params.get('sparsity', '')}"
            row = run(config, work / name, work / "cache", clock)
            results.setdefault(section, []).append(row)
            save(results, args.json_out)
            return row

        if not args.skip_smoke:
            data = DataConfig(name="synthetic", val_size=1000)  # 1x28x28, 7,000 to train on
            for method in METHODS.names():
                recipe = method_recipe("lenet5", method).scaled_to(1)
                row = measure("smoke", "lenet5", method, data, recipe, recipe.params)
                log.print(
                    f"lenet5 {method}: val {row['val_acc']:.4f}, {row['compression']:.1f}x, "
                    f"{row['run_seconds']:.1f} s"
                )
        data = DataConfig(name="synthetic", synthetic=cifar_shaped)
        for model in args.models.split(","):
            for method in args.methods.split(","):
                recipe = method_recipe(model, method).scaled_to(args.epochs)
                for sparsity in (float(s) for s in args.sparsities.split(",")):
                    params = {**recipe.params, "sparsity": sparsity}
                    row = measure("cifar_shaped", model, method, data, recipe, params)
                    log.print(
                        f"{model} {method} {sparsity:.0%}: val {row['val_acc']:.4f}, "
                        f"test {row['test_acc']:.4f}, {row['compression']:.1f}x, "
                        f"epoch {row['epoch_seconds']:.2f} s, fit calls {row['fit_calls']}"
                    )
    if args.device == "cuda":
        results["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    save(results, args.json_out)
    table = Table(title=f"CIFAR-shaped runs on {results['device']}, {args.epochs} epochs")
    for column in ("model", "method", "sparsity", "val acc", "compr.", "s / epoch", "fit calls"):
        table.add_column(column)
    for row in results.get("cifar_shaped", []):
        table.add_row(
            row["model"],
            row["method"],
            f"{row['params']['sparsity']:.0%}",
            f"{row['val_acc']:.4f}",
            f"{row['compression']:.1f}x",
            f"{row['epoch_seconds']:.2f}",
            ", ".join(f"{e} ep {s:.1f} s" for e, s in row["fit_calls"]),
        )
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
