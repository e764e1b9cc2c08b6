#!/usr/bin/env python
"""Each method at its paper's settings on LeNet-300-100 and LeNet-5, beside the papers' numbers.

    .venv/bin/python scripts/paper_check.py --dataset mnist              # the papers' lengths
    .venv/bin/python scripts/paper_check.py --dataset fashion-mnist --epochs 2   # a quick look

Runs go one after another in this process through `sparsetune prune`'s code (`run_pruning`), with
the recipes of sparsetune/recipes/ (`--epochs` scales them, as `prune --epochs` does) and one
dense cache, so the dense stages are trained once. The papers' numbers are MNIST's
(../shared/papers.md): on Fashion-MNIST compare compression and the accuracy drop from dense.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sparsetune.app.prune import run_pruning
from sparsetune.catalog import METHODS
from sparsetune.config import DEFAULT_CACHE_DIR, DEFAULT_DATA_DIR, DataConfig, TrialConfig
from sparsetune.recipe import method_recipe
from sparsetune.train.allocator import keep_freed_memory

# (model, method) -> the papers' MNIST results: (test error %, compression), from papers.md.
PUBLISHED: dict[tuple[str, str], list[tuple[str, float, float | None]]] = {
    ("lenet300", "dense"): [("Han et al.", 1.64, 1.0)],
    ("lenet300", "magnitude"): [("Han et al.", 1.59, 12.0)],
    ("lenet300", "lottery"): [
        ("Frankle & Carbin: at or below dense error to 3.6% left", 1.64, 27.8)
    ],
    ("lenet300", "l0"): [
        ("Louizos et al., 219-214-100", 1.4, None),
        ("as cited by Tartaglione", 1.8, 12.2),
    ],
    ("lenet300", "sensitivity"): [
        ("Tartaglione, unspecific", 1.65, 27.87),
        ("specific", 1.96, 80.0),
    ],
    ("lenet5", "dense"): [("Han et al.", 0.80, 1.0)],
    ("lenet5", "magnitude"): [("Han et al.", 0.77, 12.0)],
    ("lenet5", "l0"): [
        ("Louizos et al., 20-25-45-462", 0.9, None),
        ("as cited by Tartaglione", 1.0, 70.0),
    ],
    ("lenet5", "sensitivity"): [("Tartaglione, unspecific", 0.78, 51.1), ("specific", 0.8, 41.9)],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist")
    parser.add_argument("--epochs", type=int, help="dense epochs; method epochs scale along")
    parser.add_argument("--models", default="lenet300,lenet5")
    # Every registered method; one without a recipe entry runs with its Config's defaults.
    parser.add_argument("--methods", default=",".join(METHODS.in_order()))
    parser.add_argument("--subset", type=int)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    parser.add_argument("--out", type=Path, default=Path("sparsetune-runs/paper-check"))
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    keep_freed_memory()  # this process trains: reuse freed blocks (train/allocator.py)

    log = Console(stderr=True)
    rows = []
    for model in args.models.split(","):
        for method in args.methods.split(","):
            recipe = method_recipe(model, method)
            if args.epochs is not None:
                recipe = recipe.scaled_to(args.epochs)
            config = TrialConfig(
                model=model,
                data=DataConfig(name=args.dataset, data_dir=args.data_dir, subset=args.subset),
                train=recipe.train,
                method=method,
                params=recipe.params,
            )
            log.print(f"{model} {method}: dense {recipe.train.epochs} epochs, {recipe.params}")
            single = run_pruning(
                config, out=args.out / f"{model}-{method}", cache_dir=args.cache_dir
            )
            summary = single.summary()
            rows.append(
                {
                    "model": model,
                    "method": method,
                    "test_error": summary["test_error"],
                    "compression": summary["compression"],
                    "architecture": summary["architecture"],
                    "seconds": single.final.seconds,
                    "published": [
                        {"source": s, "test_error": e, "compression": c}
                        for s, e, c in PUBLISHED.get((model, method), [])
                    ],
                }
            )
            log.print(
                f"  test error {summary['test_error']:.2f}%, {summary['compression']:.1f}x, "
                f"{summary['architecture']} ({single.final.seconds:.0f} s)"
            )
    if args.json:
        print(json.dumps({"dataset": args.dataset, "epochs": args.epochs, "runs": rows}))
        return
    table = Table(title=f"sparsetune on {args.dataset} beside the papers (MNIST)")
    for column in ("model", "method", "our error %", "our compr.", "architecture", "paper"):
        table.add_column(column)
    for row in rows:
        paper = "; ".join(
            f"{p['source']}: {p['test_error']}%"
            + (f" at {p['compression']}x" if p["compression"] else "")
            for p in row["published"]
        )
        table.add_row(
            row["model"],
            row["method"],
            f"{row['test_error']:.2f}",
            f"{row['compression']:.1f}x",
            row["architecture"],
            paper or "no LeNet number in papers.md",
        )
    Console(width=None if sys.stdout.isatty() else 200).print(table)


if __name__ == "__main__":
    main()
