"""`StopSignals`, with real signals sent to this process: a first SIGINT or SIGTERM raises at
once outside the Tuner and is held for Tune inside it, a second aborts, the old handlers come
back, and a sweep in a worker thread installs nothing. The sweep end to end:
test_interrupt_e2e.py."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from sparsetune.search.interrupt import (
    TUNE_SIGINT_SWITCH,
    StopSignals,
    SweepAborted,
    SweepInterrupted,
)
from sparsetune.search.state import STATE_FILE


def _send(signum: int) -> None:
    os.kill(os.getpid(), signum)  # the handler runs before os.kill returns to the next bytecode


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_the_first_signal_outside_the_tuner_stops_at_once(tmp_path, signum, code):
    (tmp_path / STATE_FILE).write_text("{}")
    with pytest.raises(SweepInterrupted) as caught:
        with StopSignals(tmp_path, f"sparsetune search --resume {tmp_path}"):
            _send(signum)
            pytest.fail("the signal did not stop the block")
    assert caught.value.exit_code == code
    assert caught.value.line == f"interrupted; continue with: sparsetune search --resume {tmp_path}"


def test_a_sweep_stopped_before_its_state_exists_says_so(tmp_path):
    with pytest.raises(SweepInterrupted) as caught, StopSignals(tmp_path, "unused"):
        _send(signal.SIGINT)
    assert caught.value.line == (
        "interrupted before the sweep started; nothing to continue, run the command again"
    )


def test_inside_the_tuner_the_first_signal_is_passed_to_tune_and_the_second_aborts(tmp_path):
    asked: list[int] = []
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGUSR1, lambda signum, frame: asked.append(signum))  # Tune's, here
    try:
        with StopSignals(tmp_path, "again") as stop:
            assert os.environ[TUNE_SIGINT_SWITCH] == "1"  # Tune's SIGINT handler stays out
            assert not stop.forward_to_tune()  # no signal yet: nothing to pass on
            with stop.deferring():
                _send(signal.SIGTERM)
                assert stop.signum == signal.SIGTERM and asked == []
                assert stop.forward_to_tune()  # what the Tuner's callback does at its next step
                assert asked == [signal.SIGUSR1]
                assert not stop.forward_to_tune()  # once
                with pytest.raises(SweepAborted) as caught:
                    _send(signal.SIGINT)
                assert caught.value.exit_code == 130
                # a third signal ends the process the default way
                assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
                assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        assert isinstance(stop.stopped(), SweepInterrupted)
        assert stop.stopped().exit_code == 143
    finally:
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    assert {s: signal.getsignal(s) for s in before} == before
    assert TUNE_SIGINT_SWITCH not in os.environ


def test_a_sweep_in_a_worker_thread_installs_nothing(tmp_path):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    seen = {}

    def sweep() -> None:
        with StopSignals(tmp_path, "again") as stop, stop.deferring():
            seen["handlers"] = {s: signal.getsignal(s) for s in before}
            seen["asked"] = stop.forward_to_tune()

    worker = threading.Thread(target=sweep)
    worker.start()
    worker.join()
    assert seen == {"handlers": before, "asked": False}


def test_an_inactive_one_installs_nothing(tmp_path):
    before = signal.getsignal(signal.SIGINT)
    with StopSignals(tmp_path, "", active=False):
        assert signal.getsignal(signal.SIGINT) is before
