"""Exported tickets in MLflow: fetching a run's final ticket, and registering a model.

`register_model` logs the exported network with `mlflow.pytorch.log_model` in MLflow's "pt2"
format (a `torch.export` program: loading it unpickles nothing and needs no sparsetune), with a
signature inferred from an example batch, and registers it under a name, so that a team can take
it with `mlflow.pytorch.load_model("models:/NAME/VERSION")` or `mlflow.pyfunc.load_model`. The
ticket's metrics go to the run; its architecture string (and format, compression, config hash)
become tags on the run and on the model version.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pytorch
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from sparsetune.export.ticket import ROUND_FILE
from sparsetune.results import REGISTERED_METRICS
from sparsetune.tracking import TRACKING_ENV, local_sqlite_path
from sparsetune.tracking.mlflow_store import MlflowRun, MlflowStore

EXPORT_EXPERIMENT = "sparsetune-export"


@dataclass(frozen=True)
class Registration:
    name: str
    version: int
    run_id: str
    model_uri: str  # "models:/NAME/VERSION"


def download_final_ticket(run_id: str, tracking_uri: str, folder: Path) -> Path:
    """The run's highest `ticket/round-N.safetensors`, downloaded into `folder`; one-line
    ValueError for an unknown run or a run without tickets."""
    client = MlflowClient(tracking_uri)
    try:
        client.get_run(run_id)
        files = client.list_artifacts(run_id, "ticket")
    except MlflowException as error:
        message = str(error.message).strip().splitlines()[0]
        raise ValueError(f"run {run_id} at {tracking_uri}: {message}") from None
    rounds = {
        int(match.group(1)): item.path
        for item in files
        if (match := ROUND_FILE.fullmatch(Path(item.path).name))
    }
    if not rounds:
        raise ValueError(
            f"run {run_id} at {tracking_uri}: has no ticket/round-N.safetensors artifact; pass "
            "the run of a trial (a sweep's child run, or a `sparsetune prune --tracking-uri` run)"
        )
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id,
        artifact_path=rounds[max(rounds)],
        tracking_uri=tracking_uri,
        dst_path=str(folder),
    )
    return Path(local)


@contextlib.contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    """`mlflow.pytorch.log_model` has no tracking-URI argument: it logs to the process-wide URI.
    Set it for the call, then put back what was there, through MLflow's public API: a URI set in
    this process, or none (MLflow then reads $MLFLOW_TRACKING_URI each time; pinning today's
    value would hide a later change of it), and the environment variable, which
    `set_tracking_uri` writes and unsets. A URI set in-process is written to the variable too, so
    one that equals the variable is put back as the variable alone."""
    environment = os.environ.get(TRACKING_ENV)
    current = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    previous = None if current == environment else current
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # None: no URI set in this process, as before
        if environment is None:
            os.environ.pop(TRACKING_ENV, None)
        else:
            os.environ[TRACKING_ENV] = environment


def _artifact_dir(tracking_uri: str) -> Path | None:
    """A new experiment's artifacts next to a local SQLite store (as `sparsetune prune` keeps
    them next to its run), rather than in ./mlruns of whatever folder the command ran in."""
    database = local_sqlite_path(tracking_uri)
    return database.resolve().parent / "mlartifacts" if database is not None else None


def register_model(
    model: Any,
    *,
    name: str,
    tracking_uri: str,
    info: dict[str, Any],
    run_id: str | None = None,
) -> Registration:
    """Log `model` (a torch module in eval mode, taking a batch shaped like `info["input_shape"]`)
    and register it as a new version of `name`. `info` is the export's header: its metrics and
    architecture are recorded. Into run `run_id` when given (the ticket's own run), else into a
    new run of the experiment "sparsetune-export"."""
    import torch

    generator = torch.Generator().manual_seed(0)
    # Batch 2: MLflow exports the batch dimension as dynamic only when the example's is > 1.
    example = torch.randn((2, *info["input_shape"]), generator=generator)
    model = model.eval()
    with torch.no_grad():
        output = model(example)
    signature = infer_signature(example.numpy(), output.numpy())
    tags = {
        "architecture": info.get("architecture", ""),
        "export_format": info["format"],
        "model": info["model"],
        "method": info.get("method", ""),
        "config_hash": info.get("config_hash", ""),
        "compression": info.get("compression"),
    }
    tags = {key: str(value) for key, value in tags.items() if value not in (None, "")}
    step = int(info.get("round") or 0)

    created = run_id is None
    if created:
        store = MlflowStore.open(tracking_uri, EXPORT_EXPERIMENT, _artifact_dir(tracking_uri))
        run = store.start_run(f"export-{name}")
        # Before log_model: it links the run's metrics at `step` to the logged model.
        run.log_metrics({key: info[key] for key in REGISTERED_METRICS if key in info}, step=step)
    else:
        run = MlflowRun(MlflowClient(tracking_uri), run_id)
    client = MlflowClient(tracking_uri)
    try:
        # Created here, in the run's experiment: left to log_model, a model logged with no active
        # run lands in the store's Default experiment, its files in ./mlruns of the current folder.
        logged_model = client.create_logged_model(
            client.get_run(run.run_id).info.experiment_id, name="model", source_run_id=run.run_id
        )
        with _tracking_uri(tracking_uri):
            logged = mlflow.pytorch.log_model(
                model,
                name="model",
                model_id=logged_model.model_id,
                run_id=run.run_id,
                step=step,
                signature=signature,
                input_example=example.numpy(),
                registered_model_name=name,
                serialization_format="pt2",
                # Stated, not inferred: inference reloads the model in a subprocess (seconds),
                # and a pt2 program needs torch alone.
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            )
        run.set_tags(tags)
        version = int(logged.registered_model_version)
        for key, value in tags.items():
            client.set_model_version_tag(name, str(version), key, value)
    except BaseException:
        if created:
            run.finish(failed=True)
        raise
    if created:
        run.finish()
    return Registration(name, version, run.run_id, f"models:/{name}/{version}")
