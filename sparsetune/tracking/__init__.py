"""Experiment tracking. MLflow is imported only by the modules of this package that talk to it
(`mlflow_store`, and `model_registry` for exported models), never here, so code that runs without
tracking never pays for it."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

# Where MLflow's own tools, and sparsetune's, find the store when no URI is given.
TRACKING_ENV = "MLFLOW_TRACKING_URI"


def default_tracking_uri(sweep_dir: Path) -> str:
    """MLflow on a SQLite file inside the sweep folder."""
    return f"sqlite:///{Path(sweep_dir).resolve() / 'mlflow.db'}"


def is_server_uri(tracking_uri: str) -> bool:
    """A tracking server reached over HTTP, rather than a store this process writes itself."""
    return tracking_uri.startswith(("http://", "https://"))


def local_sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a `sqlite:///...` tracking URI, else None (a server, a folder)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return Path(unquote(tracking_uri.removeprefix("sqlite:///")).partition("?")[0])
