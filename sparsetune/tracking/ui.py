"""`sparsetune ui`: the MLflow UI on a sweep's tracking store, as a child process.

The server is MLflow's own (`python -m mlflow server`, same interpreter), so what a reviewer sees
is exactly MLflow's UI; this module only finds the store, checks the port, starts the server,
waits until it answers, names the sweep's experiment and stops the server (its whole process
group) when asked. MLflow itself is not imported here.

On this project's small machines the server runs one worker, and without MLflow 3's job runner
(GenAI evaluation jobs, which a sweep's store never uses): two fewer processes to start and stop.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sparsetune.tracking import default_tracking_uri, is_server_uri, local_sqlite_path

DEFAULT_PORT = 5000
DEFAULT_RUNS_DIR = Path("sparsetune-runs")  # where `sparsetune search` puts sweeps by default
SWEEP_ROLE_FILTER = "tags.`sparsetune.role` = 'sweep'"
ML_VIEW = "workflowType=machine_learning"


class UiInputError(ValueError):
    """The store or the address cannot be used: one line for the user."""


class UiFailed(RuntimeError):
    """The server did not start, or stopped on its own."""


def _store_of(folder: Path) -> str | None:
    """The tracking store a sweep folder was recorded in, or None if it is not a sweep folder."""
    if (folder / "mlflow.db").is_file():
        return default_tracking_uri(folder)
    sweep_file = folder / "sweep.json"
    if not sweep_file.is_file():
        return None
    try:
        uri = json.loads(sweep_file.read_text()).get("tracking_uri")
    except (OSError, ValueError, AttributeError):
        return None
    if not uri:
        return None
    if is_server_uri(uri):
        raise UiInputError(
            f"{folder}: this sweep was recorded on the tracking server {uri}, which has its own "
            f"UI; open {uri} in a browser"
        )
    return uri


def resolve_store(out: Path | None, tracking_uri: str | None) -> str:
    """The backend store URI to serve: `--tracking-uri`, or the sweep folder's store (`--out`,
    else the one sweep under ./sparsetune-runs). UiInputError names the fix."""
    if out is not None and tracking_uri is not None:
        raise UiInputError("--out and --tracking-uri: pass one of them, not both")
    if tracking_uri is not None:
        if is_server_uri(tracking_uri):
            raise UiInputError(
                f"--tracking-uri {tracking_uri}: that is already a tracking server with its own "
                "UI; open it in a browser (or pass the server's --backend-store-uri)"
            )
        path = local_sqlite_path(tracking_uri)
        if path is not None and not path.is_file():
            raise UiInputError(
                f"--tracking-uri {tracking_uri}: no MLflow store at {path}; pass the URI a sweep "
                "recorded to"
            )
        return tracking_uri
    folder = out if out is not None else DEFAULT_RUNS_DIR
    where = f"--out {folder}" if out is not None else f"./{DEFAULT_RUNS_DIR}"
    if not folder.is_dir():
        raise UiInputError(
            f"{where}: no such folder; pass --out SWEEP_FOLDER (what `sparsetune search --out` "
            "wrote) or --tracking-uri URI"
        )
    store = _store_of(folder)
    if store is not None:
        return store
    sweeps = sorted(p for p in folder.iterdir() if p.is_dir() and (p / "sweep.json").is_file())
    stores = {p: s for p in sweeps if (s := _store_of(p)) is not None}
    if len(stores) == 1:
        return next(iter(stores.values()))
    if len(stores) > 1:
        names = ", ".join(p.name for p in stores)
        raise UiInputError(
            f"{where}: holds {len(stores)} sweeps ({names}); pass --out with one of them"
        )
    raise UiInputError(
        f"{where}: no MLflow store (mlflow.db) there; pass --out SWEEP_FOLDER (what "
        "`sparsetune search --out` wrote) or --tracking-uri URI"
    )


def check_address(host: str, port: int) -> None:
    """Fail now, with one line, if the server could not bind (host, port)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise UiInputError(f"--host {host}: not an address here ({error.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # As uvicorn does: a port left in TIME_WAIT by a server that just stopped is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise UiInputError(f"--port {port}: already in use; pass a free --port") from None
            raise UiInputError(
                f"--host {host} --port {port}: cannot listen there ({error.strerror})"
            ) from None


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    name: str


class MlflowUi:
    """One `mlflow server` child process on `store_uri`, in a process group of its own."""

    def __init__(self, store_uri: str, host: str = "127.0.0.1", port: int = DEFAULT_PORT):
        self.store_uri = store_uri
        self.host = host
        self.port = port
        self.process: subprocess.Popen | None = None
        self._log_dir: Path | None = None
        self.log_path = Path(os.devnull)  # until start() makes the server's log

    @property
    def url(self) -> str:
        """Where a browser on this machine reaches the server."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def experiment_url(self, experiment: Experiment) -> str:
        # MLflow 3's UI opens in its GenAI view (traces) unless told otherwise, per browser:
        # the parameter lands on the training runs table, where a sweep's runs are.
        return f"{self.url}/#/experiments/{experiment.experiment_id}?{ML_VIEW}"

    def start(self, timeout: float = 180.0) -> None:
        command = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            self.store_uri,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        env = {**os.environ}
        env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        self._log_dir = Path(tempfile.mkdtemp(prefix="sparsetune-ui-"))
        self.log_path = self._log_dir / "mlflow-server.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own group: stop() ends uvicorn with it
            )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise UiFailed(f"the MLflow server exited (code {code}): {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        self.stop()
        raise UiFailed(f"the MLflow server did not answer within {timeout:.0f} s")

    def log_tail(self) -> str:
        try:
            lines = [ln.strip() for ln in self.log_path.read_text(errors="replace").splitlines()]
        except OSError:
            return "no log"
        lines = [ln for ln in lines if ln]
        return lines[-1] if lines else "no output"

    def _api(self, path: str, payload: dict | None = None) -> dict:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.url}/api/2.0/mlflow/{path}",
            data=data,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def sweep_experiments(self) -> list[Experiment]:
        """The experiments that hold a sweep's parent run (newest experiment first)."""
        found = self._api("experiments/search?max_results=1000").get("experiments", [])
        experiments = {e["experiment_id"]: Experiment(e["experiment_id"], e["name"]) for e in found}
        if not experiments:
            return []
        runs = self._api(
            "runs/search",
            {
                "experiment_ids": list(experiments),
                "filter": SWEEP_ROLE_FILTER,
                "max_results": 1000,
            },
        ).get("runs", [])
        ids = {run["info"]["experiment_id"] for run in runs}
        return sorted(
            (experiments[i] for i in ids if i in experiments),
            key=lambda e: int(e.experiment_id) if e.experiment_id.isdigit() else 0,
            reverse=True,
        )

    def wait(self) -> int:
        """Block until the server exits on its own; its exit code."""
        assert self.process is not None
        return self.process.wait()

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM to the server's process group (uvicorn shuts down cleanly), SIGKILL after
        `grace` seconds; then remove the log."""
        process = self.process
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            except ProcessLookupError:
                pass
        if process is not None:
            try:  # children that outlived their parent (the group id is the leader's pid)
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self._log_dir is not None:
            self.log_path.unlink(missing_ok=True)
            try:
                self._log_dir.rmdir()
            except OSError:
                pass
            self._log_dir = None
