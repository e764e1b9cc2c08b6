"""Files that appear whole or not at all: written beside their final name, then renamed.

A sweep's driver or a trial's worker can be killed at any instant (SIGKILL, a lost node); a
reader, or the resumed sweep, must then find either the previous file or the new one, never a
file cut short. `os.replace` is atomic within one file system, so the staging file sits in the
same folder, named by process id so that two writers (a retried trial and its ghost) never share
one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def staging_path(path: Path) -> Path:
    """Where to write `path` before `os.replace` moves it into place. The suffix stays last, so
    writers that pick a format by suffix (matplotlib) still see the right one."""
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a staging path to write; on success it replaces `path`, on an error it is removed
    and `path` is left as it was."""
    path = Path(path)
    staging = staging_path(path)
    try:
        yield staging
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_file(path) as staging:
        staging.write_text(text)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_file(path) as staging:
        staging.write_bytes(data)
