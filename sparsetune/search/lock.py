"""One sparsetune at a time on a sweep folder: an exclusive lock, and who holds it.

Two processes on the same sweep would share one Optuna study, one Ray experiment and one MLflow
parent run, and the first thing they collide on is MLflow's schema migration. `search` and
`sweep` take `<out>/.sparsetune.lock` (an `fcntl.flock` on it) after their input checks and hold
it until they end; a second one is refused in one line naming the holder. The kernel drops the
lock with the process that held it, so a killed sweep leaves no lock behind: the file stays
(removing it could let two processes lock two files of the same name), and its JSON (pid, host,
command, start time) is read only to say who holds the lock. It is written in place through the
locked descriptor: replacing it (`atomic.py`) would give the next process another file to lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = ".sparsetune.lock"


class SweepFolderBusy(ValueError):
    """Another process holds the sweep folder's lock; the message says which."""


@contextlib.contextmanager
def sweep_folder_lock(folder: Path) -> Iterator[Path]:
    """Hold the lock of the sweep folder `folder` (created if missing) for the `with` block;
    yields the lock file. SweepFolderBusy (one line) when another process holds it."""
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    locked = False
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SweepFolderBusy(
                f"another sparsetune is running this sweep ({_holder(descriptor)})"
            ) from None
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(sys.argv)[:500],
            "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        }
        locked = True
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, (json.dumps(holder) + "\n").encode(), 0)
        yield path
    finally:
        if locked and created and os.listdir(folder) == [LOCK_FILE]:
            # a folder this call made and nothing else used (stopped before the sweep began)
            path.unlink()
            folder.rmdir()
        os.close(descriptor)  # releases the lock


def lock_holder(folder: Path) -> str | None:
    """Who holds the sweep folder's lock ("pid N on HOST since TIME"), or None when no process
    does (a finished or a killed sweep). Asks without taking it for longer than the question."""
    try:
        descriptor = os.open(Path(folder) / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder(descriptor)
    else:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        return None
    finally:
        os.close(descriptor)


def _holder(descriptor: int) -> str:
    """ "pid N on HOST since TIME" from the holder's JSON, as far as it can be read."""
    try:
        holder = json.loads(os.pread(descriptor, 4096, 0))
        host, since = (" ".join(str(holder[key]).split())[:80] for key in ("host", "since"))
        return f"pid {int(holder['pid'])} on {host} since {since}"
    except (OSError, ValueError, TypeError, KeyError):
        return "its details unreadable"
