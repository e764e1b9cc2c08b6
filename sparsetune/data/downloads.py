"""Fetching a file-backed dataset's files (MNIST-like, CIFAR): a folder that a failed fetch can
remove again, the offline switch (`SPARSETUNE_OFFLINE=1`), torchvision's download run in a
staging folder under a short socket timeout, quietly, with a one-line reason when it fails, and
the checks of files found on disk (md5, whole gzip streams) that name a damaged file.

A damaged file never escapes as the exception its reader happens to raise: a gzip stream cut
short raises EOFError, which click (the CLI's parser) takes for Ctrl-D and reports as
"interrupted". Here it becomes `DamagedFile`, a ValueError naming the file and what is wrong.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import re
import shutil
import socket
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from sparsetune.atomic import atomic_file

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
    # A download cut short can surface as any of these while torchvision unpacks it.
    except (RuntimeError, OSError, EOFError, zlib.error, tarfile.TarError) as error:
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


class DamagedFile(ValueError):
    """A file on disk is not what it should be; `str()` is "<path> <what is wrong>", to which the
    caller adds the fix (delete it, reinstall a package, ...), which only it knows."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path} {problem}")
        self.path = path
        self.problem = problem


_CHUNK = 1 << 20


def file_md5(path: Path) -> str:
    """The md5 of a file's bytes (what torchvision publishes for its resources)."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with path.open("rb") as handle:
            _copy(handle, digest.update)
    except OSError as error:
        raise DamagedFile(path, f"cannot be read ({error.strerror})") from None
    return digest.hexdigest()


def gunzip(packed: Path, into: Path | None = None) -> str:
    """Decompress the gzip file `packed`, into the file `into` when given (it appears whole, or
    not at all: `sparsetune.atomic`); return the md5 of the decompressed bytes. DamagedFile if
    `packed` is not one whole gzip stream (truncated, bytes changed, not gzip at all)."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        handle = packed.open("rb")
        empty = os.fstat(handle.fileno()).st_size == 0
    except OSError as error:
        raise DamagedFile(packed, f"cannot be read ({error.strerror})") from None
    if empty:  # gzip reads an empty file as an empty stream, without complaint
        handle.close()
        raise DamagedFile(packed, "is empty (0 bytes)")
    try:
        with handle, gzip.GzipFile(fileobj=handle) as stream:
            if into is None:
                _copy(stream, digest.update)
            else:
                with atomic_file(into) as staging, staging.open("wb") as out:

                    def write(chunk: bytes) -> None:
                        digest.update(chunk)
                        out.write(chunk)

                    _copy(stream, write)
    except EOFError:
        raise DamagedFile(packed, "is cut short (the gzip stream ends early)") from None
    except (gzip.BadGzipFile, zlib.error) as error:
        raise DamagedFile(packed, f"is not a valid gzip file ({short_reason(error)})") from None
    except OSError as error:  # reading `packed` or writing `into` failed: no fault of the file
        raise ValueError(
            f"cannot unpack {packed} into {into} ({error.strerror}); free some space or pass "
            "another --data-dir"
        ) from None
    return digest.hexdigest()


def _copy(source: BinaryIO, sink: Callable[[bytes], object]) -> None:
    while chunk := source.read(_CHUNK):
        sink(chunk)


def remove_created(created: Path | None) -> None:
    """Remove the folder `make_data_folder` created (None: it created none)."""
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
