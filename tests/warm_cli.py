"""The `sparsetune` command of the CLI tests, each run in a process of its own forked from one
interpreter that has imported torch and torchvision once.

A new interpreter spends about 2.5 s importing torch (4.5 s with torchvision) before a command
does anything, and the suite runs some four hundred commands, most of them refusals that take
milliseconds after that. Forked, each command still has a process of its own: its folder, its
environment, PYTHONPATH on sys.path where a new interpreter puts it, stdin from /dev/null, its
own stdout, stderr and exit code, user modules imported fresh, `python -m sparsetune.cli` run as
the interpreter runs it, non-daemon threads and atexit handlers at the end. Only torch and
torchvision are loaded before the fork. sparsetune is not: each command imports it after its
PYTHONPATH is in place, so it reads the entry points (plugins) a new interpreter would read. Nor
is Ray (its gRPC threads do not survive a fork): a command that starts a sweep imports it, as in
a new interpreter.

What differs from a new interpreter is start-up itself, which tests/test_import.py and the
tests that start `sparsetune` with subprocess.Popen (signals, terminals) still run for real;
SPARSETUNE_TESTS_FRESH_CLI=1 runs every command of the suite in a new interpreter instead.

The server is this file run as a script: JSON lines on stdin ({id, args, cwd, env, stdout,
stderr}: the two files to write), JSON lines on stdout ({id, pid} when a command starts, {id,
returncode} when it ends). It stops when its stdin closes.
"""

from __future__ import annotations

import atexit
import importlib
import itertools
import json
import os
import queue
import runpy
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path

# The costly imports of the commands (2 and 1.8 s), none of them reading the command's
# environment or PYTHONPATH when imported.
WARM_MODULES = ("torch", "torchvision")
FRESH = os.environ.get("SPARSETUNE_TESTS_FRESH_CLI") == "1"


def run(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float, fresh: bool = False):
    """`python -m sparsetune.cli ARGS` in `cwd` with exactly `env`, as subprocess.run(...,
    capture_output=True, text=True, timeout=timeout) would run it; `fresh`: in a new
    interpreter."""
    command = [sys.executable, "-m", "sparsetune.cli", *args]
    if fresh or FRESH:
        return subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
    return _server().run(command, args, cwd, env, timeout)


class _Server:
    """The test process's end of one warm server."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="warm-cli-"))
        self.log = open(self.folder / "server.log", "w+")  # noqa: SIM115 (lives with the server)
        self.process = subprocess.Popen(
            [sys.executable, __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={**os.environ, "SPARSETUNE_OFFLINE": "1"},
        )
        self.ids = itertools.count()
        self.lock = threading.Lock()
        self.waiting: dict[int, queue.Queue] = {}
        threading.Thread(target=self._read, name="warm-cli-reader", daemon=True).start()

    def run(self, command, args, cwd, env, timeout):
        with self.lock:
            name = next(self.ids)
            answers = self.waiting[name] = queue.Queue()
        files = {s: self.folder / f"{name}.{s}" for s in ("stdout", "stderr")}
        request = {"id": name, "args": list(args), "cwd": str(cwd), "env": env}
        request.update({stream: str(path) for stream, path in files.items()})
        with self.lock:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        pid = self._answer(answers, "pid", 120)
        try:
            returncode = self._answer(answers, "returncode", timeout)
        except queue.Empty:
            os.kill(pid, signal.SIGKILL)
            self._answer(answers, "returncode", 60)
            out, err = (self._take(files[s]) for s in ("stdout", "stderr"))
            raise subprocess.TimeoutExpired(command, timeout, out, err) from None
        finally:
            with self.lock:
                self.waiting.pop(name, None)
        out, err = (self._take(files[s]) for s in ("stdout", "stderr"))
        return subprocess.CompletedProcess(command, returncode, out, err)

    def _answer(self, answers: queue.Queue, key: str, timeout: float):
        answer = answers.get(timeout=timeout)
        if answer is None:
            self.log.seek(0)
            raise RuntimeError(f"the warm CLI server stopped:\n{self.log.read()[-3000:]}")
        return answer[key]

    @staticmethod
    def _take(path: Path) -> str:
        with open(path, newline=None) as text:  # universal newlines, as text=True reads
            content = text.read()
        path.unlink()
        return content

    def _read(self) -> None:
        for line in self.process.stdout:
            answer = json.loads(line)
            with self.lock:
                answers = self.waiting.get(answer["id"])
            if answers is not None:
                answers.put(answer)
        with self.lock:  # the server is gone: every waiting command hears it
            for answers in self.waiting.values():
                answers.put(None)


_started: _Server | None = None
_starting = threading.Lock()


def _server() -> _Server:
    global _started
    with _starting:
        if _started is None or _started.process.poll() is not None:
            _started = _Server()
        return _started


# --- the server process


def serve() -> None:
    for name in WARM_MODULES:
        importlib.import_module(name)
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)  # read with os.read: no buffer hides a line
    pending = b""
    running: dict[int, int] = {}  # pid -> request id
    open_input = True
    while open_input or running:
        if open_input and selector.select(timeout=0.02 if running else None):
            chunk = os.read(0, 1 << 16)
            open_input = bool(chunk)
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                request = json.loads(line)
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _become_the_command(request)
                running[pid] = request["id"]
                _answer({"id": request["id"], "pid": pid})
        while running:  # once the input is closed, wait for the last commands
            pid, status = os.waitpid(-1, os.WNOHANG if open_input else 0)
            if pid == 0:
                break
            _answer({"id": running.pop(pid), "returncode": os.waitstatus_to_exitcode(status)})


def _answer(answer: dict) -> None:
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


def _become_the_command(request: dict) -> None:
    """Run `python -m sparsetune.cli ARGS` as a new interpreter in the request's folder and
    environment would; never returns."""
    code = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        # sys.path as a new interpreter builds it: -m's folder first, then PYTHONPATH.
        python_path = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
        sys.path[0:1] = [os.getcwd(), *python_path]
        for fd, name, flags in (
            (0, os.devnull, os.O_RDONLY),
            (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
            (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        ):
            opened = os.open(name, flags)
            os.dup2(opened, fd)
            os.close(opened)
        sys.argv = ["-m", *request["args"]]  # runpy puts the module's path first
        try:
            runpy.run_module("sparsetune.cli", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as stop:
            code = _exit_code(stop)
        except BaseException:
            traceback.print_exc()  # what the interpreter prints for an uncaught exception
            code = 1
        threading._shutdown()  # an interpreter's exit: non-daemon threads, then atexit
        atexit._run_exitfuncs()
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _exit_code(stop: SystemExit) -> int:
    """The exit status the interpreter gives `sys.exit(stop.code)`."""
    if stop.code is None:
        return 0
    if isinstance(stop.code, int):
        return stop.code & 0xFF
    print(stop.code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    serve()
