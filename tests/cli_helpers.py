"""Running the real `sparsetune` command in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# A small LeNet-300-100 search on synthetic data: what the CLI tests run unless they test names.
SYNTHETIC_RUN = ["--model", "lenet300", "--dataset", "synthetic", "--val-size", "500"]


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600):
    """Run `sparsetune ARGS` with the test's interpreter; returns the CompletedProcess."""
    full_env = {**os.environ, "SPARSETUNE_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "sparsetune.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
