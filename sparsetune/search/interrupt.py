"""Ctrl-C and SIGTERM during a sweep: stop it so that `--resume` continues it.

A sweep keeps its three records in step only if Ray Tune ends its loop itself: it then saves its
experiment state one last time with the running trials still unfinished (so that
`Tuner.restore(resume_unfinished=True)` continues them) and stops their workers. That is what
Tune does on its own Ctrl-C handler and on SIGUSR1; a SIGTERM would otherwise reach Ray's
`sys.exit` handler and abort in Ray's C++ core, and Tune's SIGINT handler lets the sweep look
finished. So while a sweep runs, `StopSignals` holds SIGINT and SIGTERM:

- the first signal is recorded. Before the Tuner runs (the dense stage) it raises
  `SweepInterrupted` at once, as Ctrl-C would; once `deferring()` is on (Ray and the Tuner),
  the Tuner's callback (`tuner.StopForwarder`) passes it on to Tune as SIGUSR1 at Tune's next
  step, the sweep writes what finished and `run_sweep` raises `SweepInterrupted` at its end;
- a second signal raises `SweepAborted` wherever the sweep is: no more saving, as a SIGKILL
  would leave it (resumable too: docs/resume.md), and puts the default handlers back, so that a
  third ends the process.

The application turns both into the exit code (128 + the signal: 130, 143) and one line saying
how to continue. Outside the main thread (a sweep in a worker thread: `search_async`) nothing is
installed: Python delivers signals to the main thread only. No Ray here: the CLI imports this.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from sparsetune.search.state import STATE_FILE

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Tune's own SIGINT handler would take Ctrl-C from us (and mark nothing); it reads this variable
# when the Tuner starts. Its SIGUSR1 handler, always installed, is how we ask it to stop.
TUNE_SIGINT_SWITCH = "TUNE_DISABLE_SIGINT_HANDLER"


class _Stopped:
    """What a stopped sweep says: the signal, and how to continue it."""

    def __init__(self, signum: int, sweep_dir: Path, continue_with: str) -> None:
        self.signum = signum
        self.sweep_dir = sweep_dir
        self.continue_with = continue_with
        super().__init__(self.line)

    @property
    def exit_code(self) -> int:
        """128 + the signal, as a shell reports a process the signal ended: 130, 143."""
        return 128 + self.signum

    @property
    def resumable(self) -> bool:
        """Whether the sweep had started its records (its state file) when it stopped."""
        return (self.sweep_dir / STATE_FILE).is_file()

    @property
    def line(self) -> str:
        if self.resumable:
            return f"interrupted; continue with: {self.continue_with}"
        return "interrupted before the sweep started; nothing to continue, run the command again"


class SweepInterrupted(_Stopped, Exception):
    """The first SIGINT or SIGTERM stopped the sweep; what ran is saved and the sweep can be
    continued (`continue_with`)."""


class SweepAborted(_Stopped, BaseException):
    """A second signal ended the sweep at once, unsaved since Ray's last save: a BaseException,
    so that no `except Exception` on the way (Ray's loop cleans up on one) holds it up."""


class StopSignals:
    """Holds SIGINT and SIGTERM while a sweep runs in `sweep_dir` (a context manager; the old
    handlers come back on exit). `continue_with`: the command that continues the sweep."""

    def __init__(self, sweep_dir: Path, continue_with: str, *, active: bool = True) -> None:
        self.sweep_dir = Path(sweep_dir)
        self.continue_with = continue_with
        self.signum: int | None = None  # the first signal, once one came
        self.forwarded = False  # Tune was asked to stop (StopForwarder)
        self._active = active  # False: installs nothing (a sweep whose caller holds no signals)
        self._deferring = False
        self._installed = False
        self._saved: dict[int, Any] = {}
        self._saved_switch: str | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __enter__(self) -> StopSignals:
        if not self._active or threading.current_thread() is not threading.main_thread():
            return self
        for signum in (*STOP_SIGNALS, signal.SIGUSR1):
            self._saved[signum] = signal.getsignal(signum)
        self._saved_switch = os.environ.get(TUNE_SIGINT_SWITCH)
        os.environ[TUNE_SIGINT_SWITCH] = "1"
        self._installed = True
        self.install()
        return self

    def install(self) -> None:
        """(Re)install the handlers: `ray.init` puts its own SIGTERM handler in place."""
        if self._installed:
            for signum in STOP_SIGNALS:
                signal.signal(signum, self._handle)

    def __exit__(self, *exc: object) -> None:
        if not self._installed:
            return
        for signum, handler in self._saved.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        if self._saved_switch is None:
            os.environ.pop(TUNE_SIGINT_SWITCH, None)
        else:
            os.environ[TUNE_SIGINT_SWITCH] = self._saved_switch
        self._installed = False

    @contextlib.contextmanager
    def deferring(self) -> Iterator[None]:
        """While on, the first signal is only recorded: the Tuner stops at its next step
        (`StopForwarder`), and the sweep ends writing what finished."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            for each in STOP_SIGNALS:  # a third signal ends the process the default way
                default = signal.default_int_handler if each == signal.SIGINT else signal.SIG_DFL
                signal.signal(each, default)
            raise SweepAborted(signum, self.sweep_dir, self.continue_with)
        self.signum = signum
        if not self._deferring:
            raise SweepInterrupted(signum, self.sweep_dir, self.continue_with)

    def forward_to_tune(self) -> bool:
        """Ask the running Tuner to stop, once a signal came (called in Tune's loop, in the
        main thread, where Tune has installed its SIGUSR1 handler). True if asked now."""
        if self.signum is None or self.forwarded or not self._installed:
            return False
        if signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, signal.SIG_IGN, None):
            return False  # not Tune's: SIGUSR1's default action would end the process
        self.forwarded = True
        os.kill(os.getpid(), signal.SIGUSR1)
        return True

    def stopped(self) -> SweepInterrupted:
        """The exception that ends a sweep the first signal stopped (SIGINT if none came)."""
        return SweepInterrupted(self.signum or signal.SIGINT, self.sweep_dir, self.continue_with)
