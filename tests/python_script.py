"""Running a Python script in a new interpreter (a process's first import, its own Ray, its
own exit), for tests that check what such a process does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def script_json(
    script: str,
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> Any:
    """Run `script` with `args` in a new interpreter, which must exit 0; the JSON its last line
    of output holds."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
