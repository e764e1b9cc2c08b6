"""The sweep folder's lock: one holder at a time, the holder named, no lock outliving its
process, nothing left in a folder that only the lock used. Two real `search` processes:
test_interrupt_e2e.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from sparsetune.search.lock import LOCK_FILE, SweepFolderBusy, sweep_folder_lock


def _hold_in_another_process(folder) -> subprocess.Popen:
    """A process that takes the lock and waits (it prints "held" once it holds it)."""
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from sparsetune.search.lock import sweep_folder_lock
        with sweep_folder_lock(Path({str(folder)!r})):
            print("held", flush=True)
            time.sleep(600)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_holder_is_refused_with_the_first_one_named(tmp_path):
    folder = tmp_path / "sweep"
    holder = _hold_in_another_process(folder)
    try:
        written = (folder / LOCK_FILE).read_text()
        details = json.loads(written)
        assert details["pid"] == holder.pid and details["host"] == socket.gethostname()
        with pytest.raises(SweepFolderBusy) as refused, sweep_folder_lock(folder):
            pytest.fail("took a held lock")
        assert str(refused.value) == (
            f"another sparsetune is running this sweep (pid {holder.pid} on "
            f"{details['host']} since {details['since']})"
        )
        assert (folder / LOCK_FILE).read_text() == written  # the refused one changed nothing
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_of_a_killed_process_does_not_block(tmp_path):
    folder = tmp_path / "sweep"
    holder = _hold_in_another_process(folder)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with sweep_folder_lock(folder) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_unreadable_holder_details_still_give_one_line(tmp_path):
    holder = _hold_in_another_process(tmp_path)
    try:
        # what a crafted or half-written lock file looks like to the next process
        (tmp_path / LOCK_FILE).write_text("{not json\n" * 1000)
        with pytest.raises(SweepFolderBusy, match=r"\(its details unreadable\)$"):
            with sweep_folder_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()


def test_a_folder_only_the_lock_used_is_removed_and_one_in_use_is_kept(tmp_path):
    with sweep_folder_lock(tmp_path / "new"):
        pass
    assert not (tmp_path / "new").exists()  # created here, nothing written but the lock
    with sweep_folder_lock(tmp_path / "used") as path:
        (path.parent / "sweep-state.json").write_text("{}")
    assert sorted(p.name for p in (tmp_path / "used").iterdir()) == [LOCK_FILE, "sweep-state.json"]
    with sweep_folder_lock(tmp_path):  # there before: kept, with its lock file
        pass
    assert (tmp_path / LOCK_FILE).is_file()
