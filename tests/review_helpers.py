"""A finished sweep's folder built by hand (pareto.json and trials.csv as the sweep writes them),
so that the review can be tested without Ray or MLflow."""

from __future__ import annotations

from pathlib import Path

from sparsetune.report.results import write_pareto_json, write_trials_csv

# (method, trial, round, val_acc, test_acc, compression, params): LeNet-300-100 on MNIST-like data
POINTS = [
    ("dense", "t0", 0, 0.982, 0.9830, 1.0, {}),
    ("magnitude", "t1", 1, 0.981, 0.9825, 4.0, {"criterion": "std", "c_fc": 1.2}),
    ("magnitude", "t1", 2, 0.979, 0.9810, 11.5, {"criterion": "std", "c_fc": 1.2}),
    ("magnitude", "t2", 1, 0.960, 0.9590, 3.0, {"criterion": "global", "sparsity": 0.6}),
    ("sensitivity", "t3", 1, 0.975, 0.9770, 30.0, {"variant": "unspecific", "lmbda": 1e-4}),
    ("snip", "t4", 0, 0.950, 0.9520, 50.0, {"sparsity": 0.98}),
    ("l0", "t5", 0, 0.930, 0.9310, 8.0, {"l0_lambda": 0.1}),
]
FRONT_KEYS = {("t0", 0), ("t1", 1), ("t1", 2), ("t3", 1), ("t4", 0)}  # the non-dominated ones


def run_id(trial: str) -> str:
    return f"run{trial}".ljust(32, "0")


def make_sweep(folder: Path, *, model: str = "lenet300", dataset: str = "mnist") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for method, trial, round_, val, test, compression, params in POINTS:
        rows.append(
            {
                "trial_id": trial,
                "status": "ok",
                "feasible": True,
                "round": round_,
                "method": method,
                "val_acc": val,
                "test_acc": test,
                "compression": compression,
                "flops_ratio": 1 / compression,
                "remaining_weights": int(266200 / compression),
                "architecture": "784-300-100",
                "seconds": 1.0,
                "config_hash": f"{trial}hash".ljust(16, "0"),
                "run_id": run_id(trial),
                "params": params,
                "key_params": params,
            }
        )
    rows.append(
        {
            "trial_id": "t6",
            "status": "failed",
            "method": "grasp",
            "params": {"sparsity": 0.9},
            "run_id": run_id("t6"),
            "error": "TrainingDiverged: training loss became nan",
        }
    )
    front = [r for r in rows if (r["trial_id"], r.get("round")) in FRONT_KEYS]
    meta = {
        "experiment": "review-test",
        "objective": {"name": "pareto", "metrics": ["val_acc", "compression"]},
        "hypervolume": 1.2345,
        "hypervolume_axes": "accuracy above chance x log10 compression",
        "model": model,
        "dataset": dataset,
        "parent_run_id": "parent".ljust(32, "0"),
    }
    write_pareto_json(folder / "pareto.json", front, meta)
    write_trials_csv(folder / "trials.csv", rows)
    return folder
