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
import ipaddress
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sparsetune.results import SweepRecord, read_json_record
from sparsetune.tracking import default_tracking_uri, is_server_uri, local_sqlite_path

DEFAULT_PORT = 5000
DEFAULT_RUNS_DIR = Path("sparsetune-runs")  # where `sparsetune search` puts sweeps by default
SWEEP_ROLE_FILTER = "tags.`sparsetune.role` = 'sweep'"
ML_VIEW = "workflowType=machine_learning"
# Hosts that mean "every interface", and where a browser on this machine reaches them.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class UiInputError(ValueError):
    """The store or the address cannot be used: one line for the user."""


class UiFailed(RuntimeError):
    """The server did not start, or stopped on its own."""


def _store_of(folder: Path) -> str | None:
    """The tracking store a sweep folder was recorded in, or None if it is not a sweep folder."""
    if (folder / "mlflow.db").exists():
        return default_tracking_uri(folder)
    sweep_file = folder / "sweep.json"
    if not sweep_file.exists():
        return None
    try:
        uri = read_json_record(sweep_file, SweepRecord).tracking_uri
    except ValueError as error:
        raise UiInputError(
            f"{sweep_file}: not a sparsetune sweep.json ({error}); restore it, or pass "
            "--tracking-uri URI"
        ) from None
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
    sweeps = sorted(p for p in folder.iterdir() if p.is_dir() and (p / "sweep.json").exists())
    stores = {p: s for p in sweeps if (s := _store_of(p)) is not None}
    if len(set(stores.values())) == 1:  # one sweep, or several recorded to one shared store
        return next(iter(stores.values()))
    if len(stores) > 1:
        names = ", ".join(p.name for p in stores)
        raise UiInputError(
            f"{where}: holds {len(stores)} sweeps with {len(set(stores.values()))} MLflow stores "
            f"({names}); pass --out with one of them (sweeps recorded to one store with "
            "--tracking-uri or MLFLOW_TRACKING_URI open together)"
        )
    raise UiInputError(
        f"{where}: no MLflow store (mlflow.db) there; pass --out SWEEP_FOLDER (what "
        "`sparsetune search --out` wrote) or --tracking-uri URI"
    )


# The first bytes of every SQLite 3 database file.
SQLITE_MAGIC = b"SQLite format 3\x00"
# Tables every MLflow tracking store has: a database without them is not one (and `mlflow
# server` would write MLflow's schema into it).
MLFLOW_TABLES = {"alembic_version", "experiments", "runs"}


def check_store(store_uri: str) -> None:
    """Fail now, with one line, when a local store is not an MLflow store: a SQLite path that is
    an empty file, a text or random file, or another program's database; a file where MLflow's
    file store would be a folder. Read only: nothing is created or changed."""
    scheme = urllib.parse.urlsplit(store_uri).scheme
    path = local_sqlite_path(store_uri)
    if path is None:
        if scheme not in ("", "file") or len(scheme) == 1:  # a server's database (or C:\)
            return
        folder = Path(urllib.parse.unquote(urllib.parse.urlsplit(store_uri).path))
        if folder.exists() and not folder.is_dir():
            raise UiInputError(
                f"{store_uri}: a file, not an MLflow store (a file store is a folder; a SQLite "
                "store is sqlite:///PATH); pass the store a sweep recorded to"
            )
        return
    fix = "pass the mlflow.db a sweep recorded to (--out SWEEP_FOLDER or --tracking-uri URI)"
    if not path.is_file():
        raise UiInputError(f"{path}: not a file, so not an MLflow store; {fix}")
    try:
        with path.open("rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
    except OSError as error:
        raise UiInputError(f"{path}: cannot be read ({error.strerror}); {fix}") from None
    if not head:
        raise UiInputError(f"{path}: an empty file, not an MLflow store; {fix}")
    if head != SQLITE_MAGIC:
        raise UiInputError(f"{path}: not a SQLite database, so not an MLflow store; {fix}")
    tables = _sqlite_tables(path)
    if tables is None:
        raise UiInputError(f"{path}: a damaged SQLite database; {fix}")
    if not MLFLOW_TABLES <= tables:
        raise UiInputError(f"{path}: a SQLite database without MLflow's tables; {fix}")


def _sqlite_tables(path: Path) -> set[str] | None:
    """The table names of a SQLite file, opened read-only and immutable (no journal, no lock
    file, nothing written); None when SQLite cannot read it."""
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro&immutable=1"
    try:
        connection = sqlite3.connect(uri, uri=True)
        try:
            rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            return {str(name) for (name,) in rows}
        finally:
            connection.close()
    except sqlite3.Error:
        return None


def exposure(host: str, port: int) -> str | None:
    """A warning when (host, port) is reachable from other machines: MLflow's UI has no login,
    so whoever reaches it reads (and can edit) every run. None for a loopback address."""
    if host in _WILDCARDS:
        where = "every network interface"
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            address = ipaddress.ip_address(str(infos[0][4][0]).partition("%")[0])
        except (OSError, ValueError):
            return None  # check_address says what is wrong with it
        if address.is_loopback:
            return None
        where = "every network interface" if address.is_unspecified else f"the network at {address}"
    shown = host or "''"
    return (
        f"--host {shown} listens on {where}: anyone who can reach port {port} can "
        "read and change these runs (MLflow's UI has no login); pass --host 127.0.0.1 to keep "
        "it to this machine"
    )


# MLflow's default Host patterns for private networks, kept when the list is given.
_PRIVATE_HOSTS = ("10.*", "192.168.*", "172.1[6-9].*", "172.2?.*", "172.3[01].*")


def network_names() -> list[str]:
    """How other machines may name this one: its host name and full name where they resolve,
    then its addresses (the one that routes outward first). Nothing is sent anywhere."""
    found: list[str] = []
    name = socket.gethostname()
    for candidate in (name, socket.getfqdn(name)):
        try:
            infos = socket.getaddrinfo(candidate, None, type=socket.SOCK_STREAM)
        except OSError:
            continue
        found.append(candidate)
        found += [str(info[4][0]) for info in infos]
    try:  # a UDP socket "connected" to an outside address: its local end is the outward one
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))
            found.insert(1 if found else 0, str(probe.getsockname()[0]))
    except OSError:
        pass
    unique = [n for n in dict.fromkeys(found) if n and not _is_loopback(n)]
    return unique


def _is_loopback(name: str) -> bool:
    try:
        return ipaddress.ip_address(name.partition("%")[0]).is_loopback
    except ValueError:
        return name == "localhost"


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _http(host: str, port: int) -> str:
    return f"http://{_bracketed(host)}:{port}"


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
        return _http(_WILDCARDS.get(self.host, self.host), self.port)

    @property
    def network_url(self) -> str | None:
        """Where other machines reach a server listening on every interface: this machine's
        name, or its address (0.0.0.0 itself is no address to browse to); None for any other
        host."""
        if self.host not in _WILDCARDS:
            return None
        names = network_names()
        return _http(names[0] if names else _WILDCARDS[self.host], self.port)

    def _network_env(self) -> dict[str, str]:
        """MLflow's server answers only Host headers and cross-origin writes it knows (DNS
        rebinding and CORS protection: localhost and private addresses by default). Listening
        on every interface, it is told this machine's names and addresses too, so that the
        printed network URL works; settings of the user's own win."""
        if self.host not in _WILDCARDS:
            return {}
        names = network_names()
        local = ["localhost", "127.0.0.1", "[::1]"]
        hosts = [_bracketed(name) for name in names] + local
        return {
            "MLFLOW_SERVER_ALLOWED_HOSTS": ",".join(
                [*hosts, *(f"{host}:{self.port}" for host in hosts), *_PRIVATE_HOSTS]
            ),
            "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS": ",".join(_http(n, self.port) for n in names),
        }

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
        env = {**self._network_env(), **os.environ}
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
