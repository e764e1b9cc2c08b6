"""Real Ray nodes for the cluster tests: `ray start --block` processes, each in a session of its
own, so that a test stops exactly what it started (its process group), whatever happens."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY_CLI = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def short_temp_dir() -> Path:
    """Ray's Unix sockets must fit 107 bytes: a short folder, not pytest's deep tmp_path."""
    return Path(tempfile.mkdtemp(prefix="st-ray-", dir="/tmp"))


def ray_node(*arguments: str, env: dict[str, str]) -> subprocess.Popen:
    # Ray's dashboard agent serves the Jobs API on a fixed port (52365) unless told otherwise;
    # another Ray on this machine (a parallel test's) holding it leaves the agent up without it,
    # and `ray job submit` then answers "No available agent" for good.
    agent_port = f"--dashboard-agent-listen-port={free_port()}"
    return subprocess.Popen(
        [
            RAY_CLI,
            "start",
            "--block",
            "--num-cpus=2",
            "--disable-usage-stats",
            agent_port,
            *arguments,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )


def wait_for_nodes(address: str, count: int, env: dict[str, str], timeout: float = 120) -> None:
    """Until `ray status` lists `count` live nodes."""
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = subprocess.run(
            [RAY_CLI, "status", f"--address={address}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        active = status.partition("Active:")[2].partition("Pending:")[0]
        if len(re.findall(r"\bnode_[0-9a-f]+", active)) >= count:
            return
        time.sleep(2)
    raise AssertionError(f"the cluster never had {count} nodes:\n{status}")


def stop(process: subprocess.Popen | None, sig: signal.Signals, grace: float = 3) -> None:
    """Signal the node's whole process group and wait `grace` seconds; SIGKILL it if it has not
    gone (a `ray start --block` head has taken over 30 s to stop on a loaded machine)."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
        process.wait(grace)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
