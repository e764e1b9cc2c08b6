"""Crafted and damaged record files, read back by the commands that read them: `search --resume`
and `search --out` (sweep-state.json), `sweep` (sweep-state.json; an earlier sweep's
pareto.json for the warm start), `report` (pareto.json, trials.csv) and `ui` (sweep.json, the
store it finds). Each answers in one line that names the file, exits 2, prints no traceback
and writes nothing; nothing is quoted beyond a short excerpt.

Most cases run the CLI's `main` in this process (the boundary a user's command goes through);
the ones that could block (a FIFO, a server) run the real command in a subprocess.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from cli_helpers import assert_one_error_line, run_cli
from review_helpers import make_sweep

from sparsetune.cli import main
from sparsetune.report.review import REVIEW_FILES
from sparsetune.results import RECORD_LIMIT
from sparsetune.search.state import STATE_FILE, SweepState

BINARY = bytes(range(256)) * 8 + b"\xff\xfe\x00"
HUGE = "x" * 1_000_000


def cli(capsys, *args: str) -> tuple[int, str]:
    """`sparsetune ARGS` through the CLI's entry point: (exit code, stderr). An exception that
    escapes the boundary fails the test with its traceback."""
    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.err


def assert_refused(code: int, stderr: str, *words: str) -> str:
    """Exit 2 and one `sparsetune: error:` line holding `words`, short (no file quoted)."""
    lines = stderr.strip().splitlines()
    assert code == 2, stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("sparsetune: error: "), stderr[-2000:]
    for word in words:
        assert word in lines[0], lines[0]
    assert len(lines[0]) < 600, lines[0][:300]
    return lines[0]


def listing(folder: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*"))


def _write(path: Path, content: bytes | str | dict | list | None) -> None:
    """`content` at `path`: bytes or text as they are, JSON for a dict or list, a folder for
    None."""
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        path.write_text(json.dumps(content))  # NaN and Infinity as JSON's extensions


def _huge_file(path: Path, prefix: bytes = b'{"a": "') -> None:
    with path.open("wb") as handle:  # sparse: larger than the cap, nothing on disk
        handle.write(prefix)
        handle.truncate(RECORD_LIMIT + 1)


# --- sweep-state.json -------------------------------------------------------------------------


def _state() -> dict:
    """A state as `sparsetune search` writes it, as JSON."""
    state = SweepState(
        sweep_id="20260302-040506",
        status="running",
        identity={"model": "lenet300"},
        config={"model": "lenet300", "dataset": "synthetic"},
        study_name="s-20260302-040506",
        ray_name="sweep-20260302-040506",
        tracking_uri="sqlite:///x.db",
        started=1_772_424_306.0,
    )
    return dataclasses.asdict(state)


STATES = {
    "not-json": "{ not json",
    "binary": BINARY,
    "empty": b"",
    "wrong-type": [1, 2, 3],
    "missing-key": {k: v for k, v in _state().items() if k != "ray_name"},
    "unknown-key": _state() | {"surprise": 1},
    "nan-time": _state() | {"started": float("nan")},
    "far-time": _state() | {"started": 1e300},
    "negative": _state() | {"resumed": -1},
    "status": _state() | {"status": "done"},
    "format": _state() | {"format": 99},
    "identity-list": _state() | {"identity": []},
    "huge-string": _state() | {"sweep_id": HUGE},
    "path-escape": _state() | {"ray_name": "../../elsewhere"},
    "run-id": _state() | {"parent_run_id": "../x"},
    "folder": None,
}


def _crafted_state(folder: Path, content) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / STATE_FILE, content)
    return folder


@pytest.mark.parametrize("content", list(STATES.values()), ids=list(STATES))
def test_search_resume_refuses_a_crafted_state(tmp_path, capsys, content):
    sweep = _crafted_state(tmp_path / "sweep", content)
    before = listing(tmp_path)
    code, stderr = cli(capsys, "search", "--resume", str(sweep))
    assert_refused(code, stderr, "--resume", STATE_FILE, "restore it")
    assert HUGE[:200] not in stderr
    assert listing(tmp_path) == before


@pytest.mark.parametrize("kind", ["binary", "missing-key", "path-escape", "folder"])
def test_search_out_refuses_a_folder_with_a_crafted_state(tmp_path, capsys, kind):
    sweep = _crafted_state(tmp_path / "sweep", STATES[kind])
    before = listing(tmp_path)
    code, stderr = cli(
        capsys, "search", "--model", "lenet300", "--dataset", "synthetic", "--out", str(sweep)
    )
    assert_refused(code, stderr, "--out", STATE_FILE)
    assert listing(tmp_path) == before


def test_a_huge_state_file_is_refused_unread(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    _huge_file(sweep / STATE_FILE)
    code, stderr = cli(capsys, "search", "--resume", str(sweep))
    assert_refused(code, stderr, STATE_FILE, "larger than 64 MiB")


SPEC = "model: lenet300\ndataset: synthetic\ntrials: 2\nout: runs\n"


@pytest.mark.parametrize("kind", ["not-json", "wrong-type", "far-time", "path-escape"])
def test_sweep_refuses_a_crafted_state_in_its_folders(tmp_path, capsys, kind):
    (tmp_path / "spec.yaml").write_text(SPEC + "new_sweep: daily\n")
    _crafted_state(tmp_path / "runs" / "2026-03-01", STATES[kind])
    before = listing(tmp_path)
    code, stderr = cli(capsys, "sweep", str(tmp_path / "spec.yaml"), "--dry-run")
    assert_refused(code, stderr, "2026-03-01", STATE_FILE)
    assert listing(tmp_path) == before


def test_a_state_without_an_option_newer_versions_record_is_not_a_difference():
    from sparsetune.search.options import SweepConfig
    from sparsetune.search.space import default_space_path, load_space
    from sparsetune.search.state import identity

    sweep = SweepConfig(model="lenet300", dataset="synthetic")
    space = load_space(default_space_path("lenet300"))
    recorded = identity(sweep, space)
    older = {k: v for k, v in recorded.items() if k != "trials"}
    state = SweepState("x", "running", older, {}, "s", "r", "sqlite:///x.db")
    assert state.differences(sweep, space) == []
    changed = SweepConfig(model="lenet300", dataset="synthetic", trials=sweep.trials + 1)
    assert state.differences(changed, space) == []  # unknown: not recorded then
    assert SweepState("x", "running", recorded, {}, "s", "r", "x").differences(changed, space) == [
        "--trials"
    ]


# --- pareto.json and trials.csv, read by `report` ----------------------------------------------


def _pareto(sweep: Path) -> dict:
    return json.loads((sweep / "pareto.json").read_text())


def _with_point(sweep: Path, **changes) -> dict:
    pareto = _pareto(sweep)
    pareto["front"][0] |= changes
    return pareto


def _without_in_point(sweep: Path, key: str) -> dict:
    pareto = _pareto(sweep)
    del pareto["front"][0][key]
    return pareto


PARETO = {
    "not-json": lambda s: "{ not json",
    "binary": lambda s: BINARY,
    "empty": lambda s: b"",
    "wrong-type": lambda s: [1, 2],
    "front-not-a-list": lambda s: _pareto(s) | {"front": {"a": 1}},
    "point-not-an-object": lambda s: _pareto(s) | {"front": ["x"]},
    "missing-key": lambda s: _without_in_point(s, "test_acc"),
    "nan": lambda s: _with_point(s, compression=float("nan")),
    "zero": lambda s: _with_point(s, compression=0),
    "negative": lambda s: _with_point(s, val_acc=-0.5),
    "string-number": lambda s: _with_point(s, round="1"),
    "path-escape": lambda s: _with_point(s, trial_id="../../../etc"),
    "huge-string": lambda s: _with_point(s, method=HUGE),
    "hypervolume": lambda s: _pareto(s) | {"hypervolume": "big"},
    "folder": lambda s: None,
}


@pytest.mark.parametrize("craft", list(PARETO.values()), ids=list(PARETO))
def test_report_refuses_a_crafted_pareto_json_and_writes_nothing(sweep_dir, capsys, craft):
    _assert_report_refuses(sweep_dir, capsys, "pareto.json", craft)


def _assert_report_refuses(sweep_dir: Path, capsys, name: str, craft) -> None:
    """`report` on the sweep with its `name` replaced by what `craft` makes: one line naming the
    file, no quote of the huge string, nothing written."""
    content = craft(sweep_dir)
    (sweep_dir / name).unlink()
    _write(sweep_dir / name, content)
    before = listing(sweep_dir)
    code, stderr = cli(capsys, "report", str(sweep_dir))
    assert_refused(code, stderr, name, "restore it")
    assert HUGE[:200] not in stderr
    assert listing(sweep_dir) == before
    assert not any((sweep_dir / review).exists() for review in REVIEW_FILES)


def _trials(sweep: Path, line: int, column: str, value: str) -> str:
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO((sweep / "trials.csv").read_text())))
    rows[line][column] = value
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


TRIALS = {
    "binary": lambda s: BINARY,
    "no-header": lambda s: "1,2,3\n",
    "status": lambda s: _trials(s, 0, "status", "great"),
    "nan": lambda s: _trials(s, 0, "val_acc", "nan"),
    "negative": lambda s: _trials(s, 1, "compression", "-4"),
    "not-a-number": lambda s: _trials(s, 1, "remaining_weights", "many"),
    "params-not-json": lambda s: _trials(s, 0, "params", "{not json"),
    "params-a-list": lambda s: _trials(s, 0, "params", "[1, 2]"),
    "ok-without-numbers": lambda s: _trials(s, 0, "compression", ""),
    "path-escape": lambda s: _trials(s, 2, "trial_id", "../x"),
    "huge-string": lambda s: _trials(s, 0, "architecture", HUGE),
    "extra-values": lambda s: (s / "trials.csv").read_text() + "t9,ok" + ",1" * 30 + "\n",
    "unknown-column": lambda s: "trial_id,status,surprise\nt1,ok,1\n",
    "folder": lambda s: None,
}


@pytest.mark.parametrize("craft", list(TRIALS.values()), ids=list(TRIALS))
def test_report_refuses_a_crafted_trials_csv_and_writes_nothing(sweep_dir, capsys, craft):
    _assert_report_refuses(sweep_dir, capsys, "trials.csv", craft)


def test_a_fully_pruned_round_reads_back(sweep_dir, capsys):
    """Compression is +inf when every prunable weight is pruned (the sweep writes Infinity):
    a record, not a crafted file."""
    pareto = _with_point(sweep_dir, compression=float("inf")) | {"hypervolume": float("inf")}
    _write(sweep_dir / "pareto.json", pareto)
    _write(sweep_dir / "trials.csv", _trials(sweep_dir, 0, "compression", "inf"))
    code, stderr = cli(capsys, "report", str(sweep_dir))
    assert code == 0, stderr
    assert all((sweep_dir / name).is_file() for name in REVIEW_FILES)


def test_huge_result_files_are_refused_unread(sweep_dir, capsys):
    for name in ("pareto.json", "trials.csv"):
        kept = (sweep_dir / name).read_bytes()
        _huge_file(sweep_dir / name)
        code, stderr = cli(capsys, "report", str(sweep_dir))
        assert_refused(code, stderr, name, "larger than 64 MiB")
        (sweep_dir / name).write_bytes(kept)
    code, _ = cli(capsys, "report", str(sweep_dir))
    assert code == 0  # the folder as the sweep wrote it is reviewed


def test_a_fifo_as_a_result_file_is_refused_without_blocking(sweep_dir):
    (sweep_dir / "pareto.json").unlink()
    os.mkfifo(sweep_dir / "pareto.json")
    result = run_cli("report", str(sweep_dir), cwd=sweep_dir, timeout=120)
    assert_one_error_line(result, ["pareto.json", "not a regular file"])


def test_a_review_that_fails_midway_leaves_no_file(sweep_dir, capsys):
    (sweep_dir / "front.csv").mkdir()  # the last of the three cannot be moved into place
    before = listing(sweep_dir)
    code, stderr = cli(capsys, "report", str(sweep_dir))
    assert_refused(code, stderr, "front.csv")
    assert listing(sweep_dir) == before
    assert not (sweep_dir / "pareto.png").exists() and not (sweep_dir / "pareto.html").exists()


# --- an earlier sweep's pareto.json, read by `sweep` for the warm start -----------------------


@pytest.mark.parametrize("kind", ["binary", "point-not-an-object", "huge-string"])
def test_sweep_skips_a_damaged_earlier_front_in_one_line(tmp_path, capsys, kind):
    (tmp_path / "spec.yaml").write_text(SPEC + "new_sweep: always\n")
    earlier = make_sweep(tmp_path / "runs" / "2026-03-01T000000")
    SweepState("x", "finished", {}, {}, "s", "r", "sqlite:///x.db").write(earlier)
    content = PARETO[kind](earlier)
    _write(earlier / "pareto.json", content)
    before = listing(tmp_path)
    code, stderr = cli(capsys, "sweep", str(tmp_path / "spec.yaml"), "--dry-run")
    assert code == 0, stderr
    (skipped,) = [line for line in stderr.splitlines() if "warm start skipped" in line]
    assert "2026-03-01T000000" in skipped and "not readable" in skipped
    assert len(skipped) < 600 and HUGE[:200] not in stderr
    assert listing(tmp_path) == before


# --- sweep.json and the store, read by `ui` ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ui(folder: Path, *args: str):
    return run_cli("ui", *args, "--port", str(free_port()), cwd=folder, timeout=120)


SWEEP_JSONS = {
    "not-json": "{ not json",
    "binary": BINARY,
    "wrong-type": [1],
    "uri-not-a-string": {"tracking_uri": 5},
    "huge-uri": {"tracking_uri": "sqlite:///" + HUGE},
}


@pytest.mark.parametrize("content", list(SWEEP_JSONS.values()), ids=list(SWEEP_JSONS))
def test_ui_refuses_a_crafted_sweep_json(tmp_path, content):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    _write(sweep / "sweep.json", content)
    before = listing(tmp_path)
    result = _ui(tmp_path, "--out", str(sweep))
    assert_one_error_line(result, ["sweep.json", "restore it"])
    assert HUGE[:200] not in result.stderr
    assert listing(tmp_path) == before


def _other_database(path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE notes (text TEXT)")
    connection.commit()
    connection.close()


STORES = {
    "text": ("hello, I am not a database\n", "not a SQLite database"),
    "binary": (BINARY, "not a SQLite database"),
    "zero-bytes": (b"", "an empty file"),
    "another-database": (_other_database, "without MLflow's tables"),
    "damaged-database": (b"SQLite format 3\x00" + BINARY, "damaged SQLite database"),
    "folder": (None, "MLflow store"),
}


@pytest.mark.parametrize(("content", "words"), list(STORES.values()), ids=list(STORES))
def test_ui_refuses_a_store_that_is_not_an_mlflow_database(tmp_path, content, words):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    if callable(content):
        content(sweep / "mlflow.db")
    else:
        _write(sweep / "mlflow.db", content)
    before = listing(tmp_path)
    for args in (["--out", str(sweep)], ["--tracking-uri", f"sqlite:///{sweep / 'mlflow.db'}"]):
        result = _ui(tmp_path, *args)
        assert_one_error_line(result, ["mlflow.db", words])
        assert listing(tmp_path) == before  # read only: not even a journal


def test_ui_refuses_a_file_given_as_a_file_store(tmp_path):
    (tmp_path / "notes.txt").write_text("not a store\n")
    result = _ui(tmp_path, "--tracking-uri", str(tmp_path / "notes.txt"))
    assert_one_error_line(result, ["notes.txt", "a file, not an MLflow store"])


@pytest.mark.slow
def test_ui_on_every_interface_warns_and_prints_urls_that_answer(tmp_path):
    """`ui --host 0.0.0.0`: a warning before it starts, this machine's URL on stdout and the
    network one on stderr, and MLflow answers at the network one (its Host and Origin checks
    let the printed name through, and nothing else)."""
    from mlflow.tracking import MlflowClient

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    client = MlflowClient(tracking_uri=f"sqlite:///{sweep / 'mlflow.db'}")
    experiment = client.create_experiment("crafted")
    run = client.create_run(experiment, tags={"sparsetune.role": "sweep"})
    client.set_terminated(run.info.run_id)

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "sparsetune.cli", "ui", "--out", str(sweep)]
        + ["--host", "0.0.0.0", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SPARSETUNE_OFFLINE": "1"},
    )
    try:
        ready = server.stdout.readline()  # blocks until the server answers (or exits)
        assert ready.startswith("MLflow UI: http://127.0.0.1:"), ready + server.stderr.read()
        stderr_lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("other machines" in s for s in stderr_lines):
            stderr_lines.append(server.stderr.readline())
        warning = next(line for line in stderr_lines if "warning" in line)
        assert "every network interface" in warning and "--host 127.0.0.1" in warning
        network = next(line for line in stderr_lines if "other machines" in line).split()[-1]
        assert "0.0.0.0" not in network and network.endswith(f":{port}")

        search = urllib.request.Request(
            f"{network}/api/2.0/mlflow/runs/search",
            data=json.dumps({"experiment_ids": [experiment]}).encode(),
            headers={"Content-Type": "application/json", "Origin": network},
        )
        with urllib.request.urlopen(search, timeout=30) as response:
            assert json.loads(response.read())["runs"][0]["info"]["run_id"] == run.info.run_id
        foreign = urllib.request.Request(
            f"{network}/api/2.0/mlflow/runs/search",
            data=b"{}",
            headers={"Content-Type": "application/json", "Origin": "http://attacker.example"},
        )
        with pytest.raises(urllib.error.HTTPError, match="403"):
            urllib.request.urlopen(foreign, timeout=30)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)
    assert server.returncode == 0
