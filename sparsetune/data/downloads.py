"""Fetching a file-backed dataset's files (MNIST-like, CIFAR): a folder that a failed fetch can
remove again, the offline switch (`SPARSETUNE_OFFLINE=1`), and torchvision's download run in a
staging folder under a short socket timeout, quietly, with a one-line reason when it fails."""

from __future__ import annotations

import contextlib
import io
import os
import re
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

DOWNLOAD_TIMEOUT_S = 10.0


def make_data_folder(dataset: str, folder: Path) -> Path | None:
    """Create `folder` (and parents); return the topmost folder this created, so that a failed
    fetch can remove what it made, or None if `folder` existed. One-line ValueError if it can't."""
    created, probe = None, folder
    while not probe.exists():
        created, probe = probe, probe.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"dataset {dataset!r}: cannot create {folder} ({error.strerror}); "
            "pass a writable --data-dir"
        ) from None
    return created


def offline_reason() -> str | None:
    """Why no download will be tried (SPARSETUNE_OFFLINE is set), or None."""
    if os.environ.get("SPARSETUNE_OFFLINE", "") not in ("", "0"):
        return "the download was skipped (SPARSETUNE_OFFLINE is set; unset it to download)"
    return None


def download_into(folder: Path, fetch: Callable[[Path], None]) -> str | None:
    """Call `fetch(staging)`: download into `staging`, a fresh folder inside `folder` (so that a
    rename moves the files into place atomically), then move them. Return None on success, else
    why it failed, in a few words. The folder is removed afterwards either way."""
    try:
        with (
            download_timeout(),
            tempfile.TemporaryDirectory(dir=folder, prefix=".downloading-") as staging,
            # Progress bars and "Downloading ..." lines would flood every trial's log.
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            fetch(Path(staging))
    except (RuntimeError, OSError) as error:
        return f"the download failed ({short_reason(error)})"
    return None


@contextlib.contextmanager
def download_timeout(seconds: float = DOWNLOAD_TIMEOUT_S) -> Iterator[None]:
    # torchvision offers no timeout; without one an unreachable mirror that drops packets blocks
    # for minutes. The default is process-wide, so restore it at once.
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous_timeout)


def short_reason(error: Exception) -> str:
    # torchvision joins every mirror's error into one multi-line message; the last one will do.
    text = str(error)
    url_errors = re.findall(r"<urlopen error (.*?)>", text)
    if url_errors:
        return url_errors[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:160]
