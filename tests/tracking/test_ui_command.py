"""`sparsetune ui` before it starts anything: which store it serves, and one-line errors for a
store that is not there, two choices at once, or a port in use. The real server and browser run
in tests/report/test_ui_chromium.py."""

from __future__ import annotations

import json
import socket

import pytest
from cli_helpers import run_cli

from sparsetune.tracking import default_tracking_uri
from sparsetune.tracking.ui import MlflowUi, UiInputError, check_address, resolve_store


def _sweep(folder, tracking_uri=None, db=True):
    folder.mkdir(parents=True)
    (folder / "sweep.json").write_text(json.dumps({"tracking_uri": tracking_uri}))
    if db:
        (folder / "mlflow.db").touch()
    return folder


def test_a_sweep_folder_serves_its_own_store(tmp_path):
    sweep = _sweep(tmp_path / "a")
    assert resolve_store(sweep, None) == default_tracking_uri(sweep)


def test_a_sweep_recorded_elsewhere_serves_that_store(tmp_path):
    db = tmp_path / "shared.db"
    db.touch()
    sweep = _sweep(tmp_path / "a", tracking_uri=f"sqlite:///{db}", db=False)
    assert resolve_store(sweep, None) == f"sqlite:///{db}"
    remote = _sweep(tmp_path / "b", tracking_uri="http://10.0.0.5:5000", db=False)
    with pytest.raises(UiInputError, match="open http://10.0.0.5:5000 in a browser"):
        resolve_store(remote, None)


def test_the_runs_folder_with_one_sweep_serves_it_and_with_two_asks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UiInputError, match="./sparsetune-runs: no such folder"):
        resolve_store(None, None)
    first = _sweep(tmp_path / "sparsetune-runs" / "first")
    assert resolve_store(None, None) == default_tracking_uri(first)
    _sweep(tmp_path / "sparsetune-runs" / "second")
    with pytest.raises(
        UiInputError, match=r"holds 2 sweeps with 2 MLflow stores \(first, second\)"
    ):
        resolve_store(None, None)


def test_a_folder_of_sweeps_sharing_one_store_serves_it(tmp_path):
    """Sweeps recorded to one store (--tracking-uri, MLFLOW_TRACKING_URI) open together."""
    shared = tmp_path / "shared.db"
    shared.touch()
    uri = f"sqlite:///{shared}"
    for name in ("monday", "tuesday"):
        _sweep(tmp_path / "runs" / name, tracking_uri=uri, db=False)
    assert resolve_store(tmp_path / "runs", None) == uri


@pytest.mark.parametrize(
    ("out", "uri", "message"),
    [
        ("x", "sqlite:///y.db", "pass one of them, not both"),
        (None, "http://127.0.0.1:5000", "already a tracking server"),
        (None, "sqlite:////nowhere/mlflow.db", "no MLflow store at /nowhere/mlflow.db"),
        ("empty", None, "no MLflow store (mlflow.db) there"),
    ],
)
def test_bad_stores(tmp_path, out, uri, message):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UiInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_store(tmp_path / out if out else None, uri)


def test_a_port_in_use_is_refused_before_anything_starts():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(UiInputError, match=f"--port {port}: already in use"):
            check_address("127.0.0.1", port)
    with pytest.raises(UiInputError, match="--host no-such-host.invalid: not an address"):
        check_address("no-such-host.invalid", 5000)


def test_urls_name_a_reachable_host():
    assert MlflowUi("sqlite:///x", "0.0.0.0", 5001).url == "http://127.0.0.1:5001"
    assert MlflowUi("sqlite:///x", "::1", 5001).url == "http://[::1]:5001"


def test_the_command_answers_bad_input_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    for args in (
        ["--out", "empty"],
        ["--out", "empty", "--tracking-uri", "sqlite:///x.db"],
        ["--port", "0"],
    ):
        result = run_cli("ui", *args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("sparsetune: error:"), result.stderr
        assert result.stderr.strip().count("\n") == 0, result.stderr
    sweep = _sweep(tmp_path / "sweep")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("ui", "--out", str(sweep), "--port", str(port), cwd=tmp_path)
    assert result.returncode == 2 and "already in use" in result.stderr
    assert not (tmp_path / "mlruns").exists()
