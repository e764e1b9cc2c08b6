"""Experiment tracking. MLflow is imported only by `sparsetune.tracking.mlflow_store`, so code
that runs without tracking never pays for it."""

from __future__ import annotations

from pathlib import Path


def default_tracking_uri(sweep_dir: Path) -> str:
    """MLflow on a SQLite file inside the sweep folder."""
    return f"sqlite:///{Path(sweep_dir).resolve() / 'mlflow.db'}"
