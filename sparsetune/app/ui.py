"""`sparsetune ui`: MLflow's own UI on a sweep's tracking store, served until it is stopped.

`ui_store` resolves and checks the input (which store, that it is one, a free address) before
anything starts; `serve` runs the server until Ctrl-C or a stop signal (warning first when it
listens beyond this machine), and raises `UiFailed` if it dies on its own.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

from sparsetune.app.console import say
from sparsetune.app.errors import BadInput
from sparsetune.app.options import UiOptions

if TYPE_CHECKING:
    from rich.console import Console

    from sparsetune.tracking.ui import Experiment, MlflowUi


def ui_store(options: UiOptions) -> str:
    """The store to serve (`tracking_uri`, else the sweep folder's: `out`, else the one sweep
    under ./sparsetune-runs), with (host, port) free to listen on, checked to be an MLflow store
    (read only) before the server could write its schema into some other file."""
    from sparsetune.tracking.ui import UiInputError, check_address, check_store, resolve_store

    try:
        store = resolve_store(options.out, options.tracking_uri)
        check_address(options.host, options.port)
        check_store(store)
    except UiInputError as error:
        raise BadInput(str(error)) from None
    return store


def serve(
    store: str,
    options: UiOptions,
    *,
    console: Console,
    on_ready: Callable[[MlflowUi, list[Experiment]], None],
) -> None:
    """Serve `store` until Ctrl-C, SIGTERM or SIGHUP; `on_ready` once it answers, with the
    sweep experiments it holds. UiFailed when the server stops on its own."""
    from sparsetune.tracking.ui import MlflowUi, UiFailed, exposure

    def _stop(signum, frame):
        raise KeyboardInterrupt

    # SIGINT too: a process started in the background by a non-interactive shell (cron, CI)
    # inherits SIGINT ignored, and Python then never turns Ctrl-C into KeyboardInterrupt.
    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    handlers = {sig: signal.signal(sig, _stop) for sig in stop_signals}
    server = MlflowUi(store, options.host, options.port)
    warning = exposure(options.host, options.port)
    if warning:
        say(console, f"sparsetune: warning: {warning}")
    say(console, f"starting the MLflow UI on {store}")
    try:
        server.start()
        try:
            experiments = server.sweep_experiments()
        except (OSError, ValueError, KeyError):
            experiments = []
        on_ready(server, experiments)
        if server.network_url:
            say(console, f"from other machines: {server.network_url}")
        say(console, f"server log: {server.log_path}; Ctrl-C stops it")
        code = server.wait()
        raise UiFailed(f"the MLflow server stopped on its own (code {code}): {server.log_tail()}")
    except KeyboardInterrupt:
        say(console, "MLflow UI stopped")
    finally:
        server.stop()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
