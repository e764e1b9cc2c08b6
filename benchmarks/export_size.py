#!/usr/bin/env python
"""What an exported LeNet-5 ticket at about 12x costs on disk and on the CPU, per format.

    .venv/bin/python benchmarks/export_size.py            # a table on stdout
    .venv/bin/python benchmarks/export_size.py --json     # one JSON object on stdout

1. The ticket: LeNet-5 trained on a Fashion-MNIST subset (Adam, 2 epochs), then L0
   regularisation with neuron and channel gates (Louizos et al. 2018, `granularity: neuron`) from
   the trained weights, lambda chosen so that about 1/12 of the weights survive. Neuron-level
   gates remove whole input neurons of fc1 and fc2 and whole channels of conv1 and conv2, so the
   ticket has a physically smaller form. (An unstructured ticket, e.g. magnitude pruning at Han's
   12x layer sparsities, keeps every layer's width: `--format structured` refuses it, and there
   would be nothing to compare in that column.) The dense stage is cached as any trial's is.
2. The three files `sparsetune export` writes (`sparsetune.export`): dense (the squashed state
   dict: every weight, pruned ones as zeros), sparse (nonzero values + their indices; the memory
   footprint) and structured (the smaller network, dense inside). Sizes in bytes and as a
   fraction of the dense file.
3. CPU inference latency of the masked model as a trial holds it (weights times mask on every
   forward: the parametrization), the squashed dense model (the same zeros, no mask), and the
   structured model, at batch 1 and batch 256 under `torch.inference_mode`, with 1 thread and
   with torch's default thread count. Each figure is the median over `--repeats` timings of
   enough calls to last about 20 ms; the three models take turns in every round. Printed as
   milliseconds and as speedups of the structured model over the other two.

The structured column measures what removing units buys: a network with fewer channels and
neurons, whose forward equals the masked model's (checked here to 1e-5), not sparse kernels. The
sparse file's weights would need a sparse kernel to run faster; it is a storage format.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from sparsetune.config import (
    DEFAULT_CACHE_DIR,
    DEFAULT_DATA_DIR,
    DataConfig,
    TrainConfig,
    TrialConfig,
)
from sparsetune.data import load_splits
from sparsetune.export import EXPORT_FORMATS, export_ticket, load, read_ticket
from sparsetune.train.allocator import keep_freed_memory
from sparsetune.trial import run_trial

SEED = 0
BATCHES = (1, 256)
TIMING_SECONDS = 0.02  # each timing runs enough calls to last about this long
DENSE_RECIPE = TrainConfig(
    optimizer="adam", lr=1e-3, weight_decay=0.0, schedule="constant", batch_size=100, epochs=2
)


def log(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def make_ticket(args: argparse.Namespace, workdir: Path) -> Path:
    """Train and prune the LeNet-5 ticket; returns its round file."""
    config = TrialConfig(
        model="lenet5",
        data=DataConfig(
            name="fashion-mnist", data_dir=args.data_dir, subset=args.subset, val_size=5000
        ),
        train=DENSE_RECIPE,
        method="l0",
        params={
            "granularity": "neuron",
            "epochs": args.l0_epochs,
            "l0_lambda": args.l0_lambda,
            # Louizos et al. train 200 epochs; a faster gate rate lets 3 close the gates.
            "gate_lr_factor": args.gate_lr_factor,
            "start": "dense",
        },
        seed=SEED,
        device="cpu",
    )
    started = time.perf_counter()
    results = run_trial(config, cache_dir=args.cache_dir, workdir=workdir)
    final = results[-1]
    log(
        f"ticket: {final.architecture}, {final.compression:.2f}x, val {final.val_acc:.4f}, "
        f"test {final.test_acc:.4f} ({time.perf_counter() - started:.0f} s)"
    )
    return final.ticket_path


def calls_for(model: nn.Module, inputs: torch.Tensor) -> int:
    """How many forward calls last about TIMING_SECONDS (at least 1)."""
    started = time.perf_counter()
    model(inputs)
    once = time.perf_counter() - started
    return max(1, round(TIMING_SECONDS / max(once, 1e-7)))


def latencies(models: dict[str, nn.Module], inputs: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median seconds per forward call of each model; the models take turns every round."""
    samples: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():  # warm-up: allocator, lazy init, caches
            for _ in range(3):
                model(inputs)
        calls = {name: calls_for(model, inputs) for name, model in models.items()}
        names = list(models)
        for round_index in range(repeats):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                model, count = models[name], calls[name]
                started = time.perf_counter()
                for _ in range(count):
                    model(inputs)
                samples[name].append((time.perf_counter() - started) / count)
    return {name: statistics.median(values) for name, values in samples.items()}


@contextlib.contextmanager
def threads(count: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def run(args: argparse.Namespace) -> tuple[dict, str]:
    default_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="export-size-") as scratch:
        folder = Path(args.out or scratch)
        ticket_path = make_ticket(args, folder / "trial")
        ticket = read_ticket(ticket_path)
        files = {
            fmt: export_ticket(ticket_path, fmt, folder / f"lenet5-{fmt}.safetensors").path
            for fmt in EXPORT_FORMATS
        }
        sizes = {fmt: os.path.getsize(path) for fmt, path in files.items()}
        models: dict[str, nn.Module] = {
            "masked": ticket.masked_model(),  # as the trial holds it: weight * mask each call
            "dense": load(files["dense"]),
            "structured": load(files["structured"]),
        }
    test = load_splits(
        DataConfig(name="fashion-mnist", data_dir=args.data_dir, subset=args.subset)
    ).test
    with torch.inference_mode():
        expected = models["masked"](test.x[:256])
        difference = max(float((m(test.x[:256]) - expected).abs().max()) for m in models.values())
    if difference > 1e-5:
        raise SystemExit(f"the exported models differ from the masked one by {difference:.3g}")

    timings: dict[str, dict[str, dict[str, float]]] = {}
    settings = (("1 thread", 1), (f"{default_threads} threads (default)", default_threads))
    for label, count in settings:
        with threads(count):
            timings[label] = {}
            for batch in BATCHES:
                log(f"timing batch {batch}, {label}")
                timings[label][f"batch {batch}"] = latencies(
                    models, test.x[:batch].contiguous(), args.repeats
                )

    dense_size = sizes["dense"]
    result = {
        "ticket": {
            key: ticket.info[key]
            for key in ("architecture", "compression", "val_acc", "test_acc", "flops_ratio")
        },
        "parameters": {
            "dense": parameters(models["dense"]),
            "structured": parameters(models["structured"]),
            "nonzero_weights": sum(int(m.sum()) for m in ticket.masks.values()),
        },
        "bytes": sizes,
        "bytes_vs_dense": {fmt: size / dense_size for fmt, size in sizes.items()},
        "max_difference": difference,
        "latency_ms": {
            label: {
                batch: {name: 1000 * seconds for name, seconds in arms.items()}
                for batch, arms in per_batch.items()
            }
            for label, per_batch in timings.items()
        },
        "speedup_structured": {
            label: {
                batch: {
                    "vs_masked": arms["masked"] / arms["structured"],
                    "vs_dense": arms["dense"] / arms["structured"],
                }
                for batch, arms in per_batch.items()
            }
            for label, per_batch in timings.items()
        },
        "repeats": args.repeats,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch": torch.__version__,
    }
    return result, report(result)


def report(result: dict) -> str:
    ticket = result["ticket"]
    lines = [
        f"LeNet-5 ticket (L0, neuron gates): {ticket['architecture']}, "
        f"{ticket['compression']:.2f}x, test acc {ticket['test_acc']:.4f}; parameters "
        f"{result['parameters']['dense']:,} dense, {result['parameters']['structured']:,} "
        f"structured, {result['parameters']['nonzero_weights']:,} nonzero weights",
        "",
        f"{'format':<12}{'bytes':>12}{'vs dense':>10}",
    ]
    for fmt, size in result["bytes"].items():
        lines.append(f"{fmt:<12}{size:>12,}{result['bytes_vs_dense'][fmt]:>10.3f}")
    lines += [
        "",
        f"{'threads':<22}{'batch':>7}{'masked ms':>11}{'dense ms':>10}{'struct. ms':>11}"
        f"{'vs masked':>11}{'vs dense':>10}",
    ]
    for label, per_batch in result["latency_ms"].items():
        for batch, arms in per_batch.items():
            speedup = result["speedup_structured"][label][batch]
            lines.append(
                f"{label:<22}{batch.removeprefix('batch '):>7}{arms['masked']:>11.3f}"
                f"{arms['dense']:>10.3f}{arms['structured']:>11.3f}"
                f"{speedup['vs_masked']:>10.2f}x{speedup['vs_dense']:>9.2f}x"
            )
    lines.append(
        f"(speedup = latency of the other model / latency of the structured one; "
        f"max |difference| of the outputs {result['max_difference']:.2g})"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument(
        "--subset", type=int, default=10_000, help="Fashion-MNIST training examples (default 10000)"
    )
    parser.add_argument("--l0-epochs", type=int, default=3, help="L0 training epochs (default 3)")
    parser.add_argument(
        "--l0-lambda",
        type=float,
        default=0.13,
        help="L0 strength per example (default 0.13: about 12x on the default subset)",
    )
    parser.add_argument("--gate-lr-factor", type=float, default=100.0)
    parser.add_argument(
        "--repeats", type=int, default=21, help="timings per model and batch (default 21)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="keep the ticket and the three files here"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE_DIR,
        help=f"dense-stage cache (default {DEFAULT_CACHE_DIR})",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"where Fashion-MNIST lives (default {DEFAULT_DATA_DIR})",
    )
    args = parser.parse_args(argv)
    keep_freed_memory()  # this process trains: reuse freed blocks (train/allocator.py)
    if args.repeats < 3:
        parser.error(f"--repeats must be at least 3 (got {args.repeats})")
    # Whatever a library prints goes to stderr, so that with --json stdout holds only the result.
    real_stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        result, text = run(args)
    print(json.dumps(result, indent=2) if args.json else text, file=real_stdout, flush=True)
    if args.json:
        log(text)


if __name__ == "__main__":
    main()
