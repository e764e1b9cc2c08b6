"""`sparsetune export`: a ticket, from a file, a `prune --out` folder or an MLflow run id, written
as a dense, sparse or structured model file, and registered in MLflow's model registry if asked.

Every check runs before the file is written: `--out` is a regular file or not there yet (never
a folder, a FIFO, a device, nor the source ticket itself); the ticket's header and tensors are
checked, its model is built (user code named by the header only with `--trust-code`), and the
whole file is encoded in memory. Then the file is written atomically, and registered last."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sparsetune.app.checks import checked_out_file
from sparsetune.app.errors import BadInput
from sparsetune.tracking import TRACKING_ENV

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
    trust_code: bool = False,
) -> ExportResult:
    """Write the ticket at `source` (a file, a folder's final round, or a run id in the MLflow
    store at `tracking_uri`, else $MLFLOW_TRACKING_URI) to `out` in `format`; with `register`,
    also register it under that name in the store's model registry. `trust_code` lets a
    ticket whose header names a user factory (`package.module:factory`) import it."""
    from sparsetune.export.header import EXPORT_FORMATS

    if format not in EXPORT_FORMATS:
        raise BadInput(f"--format {format!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    out = checked_out_file(out)
    uri = tracking_uri or os.environ.get(TRACKING_ENV)
    path, run_id = _checked_source(source, uri, register)

    from sparsetune.export import encode, find_ticket, read_ticket

    with tempfile.TemporaryDirectory(prefix="sparsetune-export-") as scratch:
        try:
            if run_id is not None:
                from sparsetune.tracking.model_registry import download_final_ticket

                path = download_final_ticket(run_id, uri, Path(scratch))
            else:
                _check_not_the_source(out, find_ticket(path))
            ticket = read_ticket(path, trust_code=trust_code)  # tensors in memory: scratch may go
            exported = encode(ticket, format)
            parameters = sum(p.numel() for p in exported.model.parameters())  # builds it
            data = exported.to_bytes()
        except ValueError as error:
            raise BadInput(str(error)) from None
    try:  # everything above succeeded: nothing is left behind before this
        exported.write(out, data)  # atomically: a failed write leaves no partial file
    except OSError as error:  # the disk filled up, or the folder changed since it was checked
        raise BadInput(
            f"--out {out}: cannot write it ({error.strerror or type(error).__name__}); pass a "
            "path in a folder you can write"
        ) from None
    registered = _registered(exported, register, uri, run_id) if register else None
    info = exported.info
    return ExportResult(
        out=str(out),
        format=format,
        bytes=len(data),
        compression=info.get("compression"),
        architecture=info.get("architecture"),
        parameters=parameters,
        model=info["model"],
        source=str(ticket.path) if run_id is None else f"run {run_id} {ticket.path.name}",
        registered=registered,
    )


def _check_not_the_source(out: Path, ticket: Path) -> None:
    """`--out` must not be the ticket being exported (or a link to it): writing would replace
    the source with its own export."""
    if out.exists() and os.path.samefile(out, ticket):
        raise BadInput(
            f"--out {out}: is the source ticket itself; pass another path, e.g. "
            f"{out.with_name(out.stem + '-export.safetensors')}"
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
    if (run_id or register) and uri:  # the store is checked before anything is written
        from sparsetune.search.options import check_tracking_uri

        try:
            check_tracking_uri(uri)
        except ValueError as error:
            raise BadInput(f"--tracking-uri {error}") from None
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
