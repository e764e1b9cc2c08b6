"""`sparsetune export`: a ticket, from a file, a `prune --out` folder or an MLflow run id, written
as a dense, sparse or structured model file, and registered in MLflow's model registry if asked.
Every check runs before the file is written; the file is written last."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sparsetune.app.checks import checked_out_file
from sparsetune.app.errors import BadInput

RUN_ID_PATTERN = r"[0-9a-f]{32}"  # what MLflow's run ids look like (uuid4 hex)


@dataclass(frozen=True)
class ExportResult:
    out: str
    format: str
    bytes: int
    compression: float | None
    architecture: str | None
    parameters: int
    model: str
    source: str  # the ticket's path, or "run RUN_ID round-N.safetensors"
    registered: dict[str, Any] | None  # name, version, run_id, model_uri

    def summary(self) -> dict[str, Any]:
        """What `--json` prints."""
        return asdict(self)


def export(
    source: str,
    format: str,
    out: Path,
    *,
    register: str | None = None,
    tracking_uri: str | None = None,
) -> ExportResult:
    """Write the ticket at `source` (a file, a folder's final round, or a run id in the MLflow
    store at `tracking_uri`, else $MLFLOW_TRACKING_URI) to `out` in `format`; with `register`,
    also register it under that name in the store's model registry."""
    from sparsetune.export.header import EXPORT_FORMATS

    if format not in EXPORT_FORMATS:
        raise BadInput(f"--format {format!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    out = checked_out_file(out)
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    path, run_id = _checked_source(source, uri, register)

    from sparsetune.export import encode, read_ticket

    with tempfile.TemporaryDirectory(prefix="sparsetune-export-") as scratch:
        try:
            if run_id is not None:
                from sparsetune.tracking.model_registry import download_final_ticket

                path = download_final_ticket(run_id, uri, Path(scratch))
            ticket = read_ticket(path)  # reads the tensors into memory: scratch may go
            exported = encode(ticket, format)
        except ValueError as error:
            raise BadInput(str(error)) from None
    registered = _registered(exported, register, uri, run_id) if register else None
    exported.write(out)  # last: any refusal above leaves nothing behind
    info = exported.info
    return ExportResult(
        out=str(out),
        format=format,
        bytes=exported.size,
        compression=info.get("compression"),
        architecture=info.get("architecture"),
        parameters=sum(p.numel() for p in exported.model.parameters()),
        model=info["model"],
        source=str(ticket.path) if run_id is None else f"run {run_id} {ticket.path.name}",
        registered=registered,
    )


def _checked_source(source: str, uri: str | None, register: str | None) -> tuple[Path, str | None]:
    """(the ticket's path, None) for a path that exists, else (_, the run id) for a run id in a
    store that exists."""
    from sparsetune.tracking import local_sqlite_path

    path, run_id = Path(source).expanduser(), None
    if not path.exists():
        if not re.fullmatch(RUN_ID_PATTERN, source):
            raise BadInput(
                f"SOURCE {source}: no such file or folder, and not an MLflow run id; pass a "
                "ticket (round-N.safetensors), a `sparsetune prune --out` folder or a run id"
            )
        run_id = source
    if (run_id or register) and not uri:
        needs = f"SOURCE {source} is a run id" if run_id else "--register"
        raise BadInput(
            f"{needs}: needs an MLflow store; pass --tracking-uri (e.g. sqlite:///path/mlflow.db) "
            "or set MLFLOW_TRACKING_URI"
        )
    database = local_sqlite_path(uri) if run_id and uri else None
    if database is not None and not database.is_file():
        raise BadInput(
            f"--tracking-uri {uri}: no MLflow database at {database}; pass the store that holds "
            f"run {run_id}"
        )
    return path, run_id


def _registered(exported: Any, name: str, uri: str, run_id: str | None) -> dict[str, Any]:
    from mlflow.exceptions import MlflowException

    from sparsetune.tracking.model_registry import register_model

    try:
        registration = register_model(
            exported.model, name=name, tracking_uri=uri, info=exported.info, run_id=run_id
        )
    except MlflowException as error:
        message = str(error.message).strip().splitlines()[0]
        raise BadInput(f"--register {name}: {message}") from None
    return {
        "name": registration.name,
        "version": registration.version,
        "run_id": registration.run_id,
        "model_uri": registration.model_uri,
    }
