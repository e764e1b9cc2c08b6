"""Trials per hour on one GPU with `--gpus-per-trial 1.0` against fractions that pack several
trials on it (issue 7: "0.25 packs four LeNet trials on one GPU").

The sweep is `sweep_throughput.py`'s (LeNet-5, one dense epoch from the cache, one-shot global
magnitude pruning, one retraining epoch), run by `run_sweep` as `sparsetune search` runs it, on
CUDA, on one Ray started once with the machine's GPUs. Each arm reserves `--gpus-per-trial` G per
trial, so 1/G trials share a GPU, and shares the cores among them (`--cpus-per-trial`). Such a
trial is far too small to fill a GPU: what packing buys is running the per-trial work that is not
GPU arithmetic (Ray, MLflow, data on the host, evaluation, checkpoints) side by side.

    python benchmarks/gpu_packing.py [--json] [--trials N] [--fractions 1,0.5,0.25]
        [--session] [--dataset NAME] [--data-dir DIR] [--subset N]

`--session` runs the arms in one `sparsetune.session()` (its workers import the trial's code as
they start, and the next sweep's are started after each sweep; docs/api.md) after an untimed
two-trial sweep, instead of on a plain `ray.init`. Each arm also reports `overhead_per_trial_s`:
(trials at a time x wall - the trials' training and evaluation seconds) / trials, and where
those seconds went (`sweep_throughput.breakdown`).

Needs a CUDA device (not part of CI). `--device cpu` runs the same arms with Ray's GPUs as
logical resources only, to check the script on a machine without one; its timings mean nothing.
With --json, stdout carries exactly one JSON object; everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep_throughput import (  # noqa: E402  (a sibling script, not a package)
    add_data_arguments,
    available_cores,
    breakdown,
    log,
    prepare,
    run_and_print,
    sweep_config,
    timed_sweep,
)


def run(args: argparse.Namespace, scratch: Path) -> dict:
    import ray
    import torch
    from rich.console import Console

    console = Console(stderr=True, width=160)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("gpu_packing.py: no CUDA device is visible; pass --device cpu to dry-run")
    gpus = torch.cuda.device_count() if cuda else 1
    _, space, splits, dense = prepare(args, scratch, console, device=args.device)
    arms: dict[str, dict] = {}
    with _ray(args, gpus):
        if args.session:  # the session's first sweep starts its workers: not timed
            warm_up = _arm_config(args, scratch, "warm-up-arm", args.fractions[0], gpus, cuda)
            timed_sweep(warm_up.model_copy(update={"trials": 2}), space, dense, splits, console)
        for fraction in args.fractions:
            sweep = _arm_config(args, scratch, f"gpus-{fraction:g}", fraction, gpus, cuda)
            log(
                f"sweep: --gpus-per-trial {fraction:g}, up to {sweep.max_concurrent} at a time, "
                f"{sweep.cpus_per_trial:g} CPUs a trial"
            )
            launched = time.time()
            arm = timed_sweep(sweep, space, dense, splits, console)
            exited = time.time()
            slots = argparse.Namespace(concurrent=sweep.max_concurrent)
            spent = breakdown(sweep.out, sweep.experiment, launched, exited, slots)
            arms[f"{fraction:g}"] = arm | {
                "gpus_per_trial": fraction,
                "concurrent": sweep.max_concurrent,
                "overhead_per_trial_s": spent["overhead_per_trial_s"],
                "breakdown_s": spent["breakdown_s"],
            }
    base = arms[f"{args.fractions[0]:g}"]["trials_per_hour"]
    return {
        "arms": arms,
        "speedup_vs_first": {k: v["trials_per_hour"] / base for k, v in arms.items()},
        "device": torch.cuda.get_device_name(0) if cuda else "cpu (logical GPUs)",
        "gpus": gpus,
        "cores": available_cores(),
        "trials": args.trials,
        "session": args.session,
        "train_examples": len(splits.train),
        "torch": torch.__version__,
        "ray": ray.__version__,
    }


def _arm_config(args, scratch: Path, name: str, fraction: float, gpus: int, cuda: bool):
    return sweep_config(
        args,
        scratch,
        name,
        max(1, int(round(gpus / fraction))),
        # auto: cuda where there is one; a dry run's CPU trials then hold logical GPUs
        device="cuda" if cuda else "auto",
        gpus_per_trial=fraction,
    )


@contextlib.contextmanager
def _ray(args: argparse.Namespace, gpus: int):
    """One Ray for every arm: a `sparsetune.session()` with `--session`, else a plain one."""
    if args.session:
        # sparsetune.session()'s own Ray (the public call also refuses logical GPUs: a dry run)
        from sparsetune.search.session import session

        with session(gpus):
            yield
        return
    import ray

    ray.init(
        num_cpus=available_cores(),
        num_gpus=gpus,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
    )
    try:
        yield
    finally:
        ray.shutdown()


def report(result: dict) -> str:
    lines = [f"{result['device']}, {result['cores']} cores, {result['train_examples']} examples"]
    for key, arm in result["arms"].items():
        lines.append(
            f"--gpus-per-trial {key:>4}: {arm['trials_done']} trials in {arm['seconds']:.1f} s "
            f"= {arm['trials_per_hour']:.0f} trials/hour (up to {arm['concurrent']} at a time, "
            f"{arm['cpus_per_trial']:g} CPUs each; {result['speedup_vs_first'][key]:.2f}x); "
            f"overhead {arm['overhead_per_trial_s']:.2f} s a trial"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--trials", type=int, default=12, help="trials per sweep (default 12)")
    parser.add_argument(
        "--fractions",
        type=lambda text: [float(x) for x in text.split(",")],
        default=[1.0, 0.25],
        help="GPUs per trial, one sweep each; the first is the baseline (default 1,0.25)",
    )
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--model", default="lenet5", help="the trials' model (default lenet5)")
    parser.add_argument(
        "--session", action="store_true", help="the arms in one sparsetune.session(), warmed up"
    )
    add_data_arguments(parser)
    args = parser.parse_args()
    if args.trials < 2:
        parser.error(f"--trials must be at least 2 (got {args.trials})")
    if any(not 0 < f <= 1 for f in args.fractions):
        parser.error(f"--fractions must lie in (0, 1] (got {args.fractions})")
    run_and_print(args, run, report, "gpu-packing-")


if __name__ == "__main__":
    main()
