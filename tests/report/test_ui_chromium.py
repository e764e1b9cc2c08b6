"""Review in the MLflow UI, for real: a small sweep, `sparsetune ui` on its folder, and Debian's
headless Chromium rendering MLflow's React pages. Checks that the experiment, its runs and the
Pareto plot artifact are reachable, and saves screenshots of the parent run page and of the plot
in the artifact view to $SPARSETUNE_TEST_ARTIFACTS (default: test-artifacts/ at the repository
root, git-ignored). With $SPARSETUNE_UI_SWEEP set to a finished sweep's folder, the same checks
and screenshots run on that sweep instead of a small new one: scripts/docs-images shoots the
README's picture of the UI this way, from a real sweep.

Chromium reaches the UI under a name of its own (UI_HOST, mapped to 127.0.0.1 by Chromium and
allowed by the server), as a colleague's browser would: under localhost MLflow 3 opens its
assistant panel over a third of every page.

Every process the test starts (the `sparsetune ui` command, the MLflow server under it, each
Chromium) is stopped, also when an assertion fails."""

from __future__ import annotations

import functools
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
from cli_helpers import SMALL_SPACE, run_sweep_cli, sweep_runs
from PIL import Image

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
UI_HOST = "mlflow-ui.sparsetune.test"
CHILD_RUNS_LISTED = 10  # a run page lists this many child runs, then offers "Load more"


def chromium() -> str:
    for candidate in (
        os.environ.get("SPARSETUNE_CHROMIUM"),
        shutil.which("chromium-headless-shell"),
        "/usr/lib/chromium/chromium-headless-shell",
    ):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail("chromium-headless-shell is missing: scripts/setup installs it (Debian package)")


def artifacts_dir() -> Path:
    folder = Path(os.environ.get("SPARSETUNE_TEST_ARTIFACTS") or REPO / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """Every process under `pid`, from /proc (children first found, then theirs)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(process: subprocess.Popen) -> None:
    for pid in [process.pid, *descendants(process.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(30)


class Browser:
    """One headless Chromium per page, in a process group of its own, killed whatever happens."""

    def __init__(self, profile: Path, host: str):
        self.binary = chromium()
        self.profile = profile
        self.host = host  # resolved to 127.0.0.1 by Chromium itself

    def run(self, url: str, *mode: str, budget_ms: int = 20000, size: str = "1600,1100") -> str:
        command = [
            self.binary,
            "--headless",
            "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            f"--user-data-dir={self.profile}",
            f"--window-size={size}",
            f"--host-resolver-rules=MAP {self.host} 127.0.0.1",
            # The UI is a single-page app: let its scripts and fetches run before reading.
            f"--virtual-time-budget={budget_ms}",
            *mode,
            url,
        ]
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        try:
            out, _ = process.communicate(timeout=120)
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(30)
        assert process.returncode == 0, f"chromium exited {process.returncode} on {url}"
        return out

    def dom_showing(self, url: str, *words: str, tries: int = 4) -> str:
        """The page's DOM once every one of `words` is in its text, as a person waits for a page
        to fill in: the app fetches runs and metric histories after it starts, from a one-worker
        server that is slow while other tests load the machine. Each try waits longer; the last
        DOM is returned either way, for the caller's assertion to show."""
        for attempt in range(1, tries + 1):
            dom = self.run(url, "--dump-dom", budget_ms=20000 * attempt)
            if all(word in text_of(dom) for word in words):
                break
        return dom

    def screenshot(self, url: str, path: Path, size: str = "1600,1100") -> Path:
        path.unlink(missing_ok=True)
        self.run(url, f"--screenshot={path}", size=size)
        assert path.is_file(), f"no screenshot of {url}"
        return path


def text_of(dom: str) -> str:
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


def assert_not_blank(path: Path) -> None:
    assert path.stat().st_size > 20_000, path
    with Image.open(path) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 22)
    assert colours is not None and len(colours) > 50, f"{path} looks blank"


def get(url: str) -> tuple[bytes, str]:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read(), response.headers.get("Content-Type", "")


def a_finished_sweep(tmp_path: Path) -> tuple[Path, str]:
    """(folder, experiment): $SPARSETUNE_UI_SWEEP's sweep, or a small new one."""
    given = os.environ.get("SPARSETUNE_UI_SWEEP")
    if not given:
        _, out = run_sweep_cli(tmp_path, SMALL_SPACE, 3, "ui-review")
        return out, "ui-review"
    from sparsetune.app.sweeps import sweep_status

    status = sweep_status(Path(given))
    assert status.status == "finished", f"SPARSETUNE_UI_SWEEP={given} is {status.status}"
    return status.folder, status.experiment


def test_a_finished_sweep_in_the_real_mlflow_ui_and_chromium(tmp_path):
    out, experiment = a_finished_sweep(tmp_path)
    client, (parent,), children = sweep_runs(out, experiment)
    experiment_id = parent.info.experiment_id
    run_id = parent.info.run_id
    front = [c for c in children if c.data.tags.get("pareto") == "true"]
    assert front and all("architecture" in c.data.tags for c in children)

    port = free_port()
    errors = tmp_path / "ui-stderr.txt"
    with errors.open("w") as stderr:
        ui = subprocess.Popen(
            [sys.executable, "-m", "sparsetune.cli", "ui", "--out", str(out), "--port", str(port)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={
                **os.environ,
                "SPARSETUNE_OFFLINE": "1",
                "MLFLOW_SERVER_ALLOWED_HOSTS": f"127.0.0.1:{port},{UI_HOST}:{port}",
                "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS": f"http://{UI_HOST}:{port}",
            },
            start_new_session=True,
        )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in ui.stdout], daemon=True).start()
    try:
        try:
            printed = lines.get(timeout=240)
        except queue.Empty:
            pytest.fail(f"`sparsetune ui` printed no URL; stderr: {errors.read_text()[-2000:]}")
        base = f"http://127.0.0.1:{port}"

        def page_url(route: str = "", host: str = "127.0.0.1") -> str:
            """A page of the experiment, in the UI's training view (not its GenAI view)."""
            return (
                f"http://{host}:{port}/#/experiments/{experiment_id}{route}"
                "?workflowType=machine_learning"
            )

        assert printed.strip() == f"MLflow UI: {page_url()} (experiment '{experiment}')"

        browser = Browser(tmp_path / "chromium-profile", UI_HOST)
        browse = functools.partial(page_url, host=UI_HOST)
        # The experiment page lists the sweep's parent run (its children fold under it).
        text = text_of(browser.dom_showing(browse(), parent.info.run_name, "matching runs"))
        assert experiment in text and parent.info.run_name in text, text[:3000]
        assert "matching runs" in text, text[:3000]
        # The parent run page: its child runs (ten, then "Load more"), the hypervolume, the tags.
        names = [child.info.run_name for child in children]
        listed = min(len(names), CHILD_RUNS_LISTED)
        words = (names if len(names) == listed else ["Load more"]) + ["hypervolume", "Pareto front"]
        dom = browser.dom_showing(browse(f"/runs/{run_id}"), *words)
        text = text_of(dom)
        assert sum(name in text for name in names) >= listed, text[:3000]
        assert "hypervolume" in text and "pareto_run_ids" in text, text[:3000]
        # Its description: the front in a line and the Pareto plot, from the artifact route.
        assert f"Pareto front of {experiment}" in text, text[:3000]
        assert f"get-artifact?path=review%2Fpareto.png&amp;run_uuid={run_id}" in dom
        # Its charts: the hypervolume curve among them.
        text = text_of(
            browser.dom_showing(
                browse(f"/runs/{run_id}/model-metrics"), "hypervolume", "front_size"
            )
        )
        assert "hypervolume" in text and "front_size" in text, text[:3000]
        # A front member's page shows its architecture and pareto tag without opening files.
        architecture = front[0].data.tags["architecture"]
        text = text_of(
            browser.dom_showing(browse(f"/runs/{front[0].info.run_id}"), architecture, "pareto")
        )
        assert front[0].data.tags["architecture"] in text and "pareto" in text, text[:3000]

        # The review artifacts, through the UI server's own endpoints.
        listing, _ = get(f"{base}/ajax-api/2.0/mlflow/artifacts/list?run_id={run_id}&path=review")
        names = {f["path"] for f in json.loads(listing)["files"]}
        assert names == {"review/pareto.png", "review/pareto.html", "review/front.csv"}
        png, kind = get(f"{base}/get-artifact?path=review/pareto.png&run_uuid={run_id}")
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000, kind
        html, _ = get(f"{base}/get-artifact?path=review/pareto.html&run_uuid={run_id}")
        assert b"<svg" in html and front[0].info.run_id.encode() in html

        saved = artifacts_dir()
        for route, name, size in (
            (f"/runs/{run_id}", "ui-parent-run.png", "1600,1500"),
            (f"/runs/{run_id}/model-metrics", "ui-parent-run-charts.png", "1600,1100"),
            (
                f"/runs/{run_id}/artifacts/review/pareto.png",
                "ui-parent-run-pareto-artifact.png",
                "1600,1100",
            ),
            (
                f"/runs/{run_id}/artifacts/review/pareto.html",
                "ui-parent-run-pareto-html.png",
                "1600,1100",
            ),
        ):
            assert_not_blank(browser.screenshot(browse(route), saved / name, size))
        shutil.copy(out / "pareto.png", saved / "ui-sweep-pareto.png")

        # Ctrl-C stops the UI and the server under it.
        ui.send_signal(signal.SIGINT)
        assert ui.wait(60) == 0
        assert "MLflow UI stopped" in errors.read_text()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        if ui.poll() is None:
            kill_tree(ui)
