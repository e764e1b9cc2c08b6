"""Progress on long work: under a pseudo-terminal `prune` and `search` draw a live bar (phase or
trials, share done, elapsed, ETA) redrawn in place; without a terminal (a pipe: CI, cron, Ray's
logs) the same news comes as plain lines, with no escape codes."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import MAGNITUDE_GLOBAL_SPACE, run_cli, sweep_arguments

# Enough training that the bar is drawn many times: real Fashion-MNIST, two dense epochs.
PRUNE = [
    *("prune", "--model", "lenet300", "--dataset", "fashion-mnist", "--subset", "20000"),
    *("--method", "magnitude", "--epochs", "2", "--set", "rounds=1", "--val-size", "2000"),
]
ESCAPE = "\x1b["
BAR = "━"  # rich's bar glyph


def run_in_terminal(args: list[str], cwd: Path, timeout: float = 600) -> tuple[int, str]:
    """`sparsetune ARGS` with stdout and stderr on a pseudo-terminal: (exit code, what it drew)."""
    leader, follower = pty.openpty()
    env = {
        **os.environ,
        "SPARSETUNE_OFFLINE": "1",
        "TERM": "xterm-256color",
        "COLUMNS": "140",
        "LINES": "40",
    }
    for variable in ("NO_COLOR", "TERM_PROGRAM", "CI", "FORCE_COLOR", "TTY_COMPATIBLE"):
        env.pop(variable, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "sparsetune.cli", *args],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        cwd=cwd,
        env=env,
        close_fds=True,
    )
    os.close(follower)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], timeout)
            if not ready:
                process.kill()
                raise AssertionError(
                    "no output for too long:\n" + b"".join(chunks).decode()[-3000:]
                )
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other end closed, the process has exited
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
    return process.wait(timeout=60), b"".join(chunks).decode(errors="replace")


def test_prune_draws_a_live_bar_on_a_terminal_and_plain_lines_in_a_pipe(tmp_path):
    # Each run its own cache: each trains its dense stage, the phase the bar is checked on.
    tty = ["--out", str(tmp_path / "tty"), "--cache-dir", str(tmp_path / "tty-cache")]
    code, drawn = run_in_terminal([*PRUNE, *tty], tmp_path)
    assert code == 0, drawn[-3000:]
    assert ESCAPE in drawn and BAR in drawn  # a bar, redrawn in place
    assert "dense: epoch 1/2" in drawn and "ETA" in drawn
    assert "round 1:" in drawn  # the record lines still scroll above it

    pipe = ["--out", str(tmp_path / "pipe"), "--cache-dir", str(tmp_path / "pipe-cache")]
    piped = run_cli(*PRUNE, *pipe, cwd=tmp_path)
    assert piped.returncode == 0, piped.stderr[-3000:]
    assert ESCAPE not in piped.stderr + piped.stdout and BAR not in piped.stderr
    assert "dense: epoch 1/2, loss " in piped.stderr and "ETA" in piped.stderr
    assert "round 1:" in piped.stderr


@pytest.mark.slow
def test_search_draws_a_live_bar_on_a_terminal_and_plain_lines_in_a_pipe(tmp_path):
    arguments, out = sweep_arguments(tmp_path, MAGNITUDE_GLOBAL_SPACE, 3, "live")
    code, drawn = run_in_terminal(["search", *arguments], tmp_path)
    assert code == 0, drawn[-3000:]
    assert ESCAPE in drawn and BAR in drawn
    assert "of 3 | front:" in drawn and "ETA" in drawn
    assert "Pareto front: live" in drawn
    # Without a terminal, plain lines: tests/search/test_sweep_e2e.py (the four-trial sweep).
