"""The Python API in a real Jupyter kernel (ipykernel, driven through jupyter_client as a notebook
front end drives it): `sparsetune.search_async` leaves the kernel's event loop free while its
sweep runs, and a plain `sparsetune.search` in a cell runs a sweep and shows its progress. And
one sweep at a time in a process: a second waits for the first."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from queue import Empty

import pytest
from cli_helpers import SMALL_SPACE

import sparsetune
from sparsetune.app import api
from sparsetune.app.errors import BadInput

# Seconds a step may take at most: starting the kernel, a trivial cell, a whole small sweep (a
# minute on two idle cores; the bounds leave room for a busy machine, and keep a hang finite).
KERNEL_START = 60
PROMPT = 20
SWEEP = 480


AFTER_IDLE = 1.0  # seconds of quiet on IOPub after a cell's idle status


class Kernel:
    """An ipykernel running this test's interpreter (a kernelspec of its own in `folder`, so no
    other installed `python3` kernel is picked), with a client that runs cells and collects
    what each sends to the front end."""

    def __init__(self, folder: Path) -> None:
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import KernelManager

        spec = folder / "kernels" / "sparsetune-test"
        spec.mkdir(parents=True)
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        kernel_json = {"argv": argv, "display_name": "sparsetune test", "language": "python"}
        (spec / "kernel.json").write_text(json.dumps(kernel_json))
        specs = KernelSpecManager(kernel_dirs=[str(spec.parent)])
        self.manager = KernelManager(kernel_name="sparsetune-test", kernel_spec_manager=specs)
        self.manager.start_kernel(cwd=str(folder))
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=KERNEL_START)

    def run(self, code: str, timeout: float) -> list[tuple[str, str]]:
        """Run a cell; its outputs, in order, as (kind, text): `stdout`, `stderr`, `display`
        (a display's text), `clear_output`, `error` (the traceback). Fails the test if the cell
        has not finished within `timeout` seconds, or if it raised."""
        msg_id = self.client.execute(code)
        deadline = time.monotonic() + timeout
        outputs: list[tuple[str, str]] = []
        idle = False
        while True:
            left = deadline - time.monotonic()
            try:
                # IOPub does not order a cell's stream messages before its idle status (the
                # kernel's IO thread flushes on its own clock): after idle, take what comes
                # within a short quiet spell too.
                message = self.client.get_iopub_msg(timeout=AFTER_IDLE if idle else max(left, 0.01))
            except Empty:
                if idle:
                    break
                pytest.fail(f"the cell took over {timeout} s: {code!r}; outputs {outputs}")
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream":
                outputs.append((content["name"], content["text"]))
            elif kind in ("display_data", "execute_result"):
                outputs.append(("display", content["data"].get("text/plain", "")))
            elif kind == "clear_output":
                outputs.append(("clear_output", ""))
            elif kind == "error":
                outputs.append(("error", "\n".join(content["traceback"])))
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
        errors = [text for kind, text in outputs if kind == "error"]
        assert not errors, f"the cell raised: {code!r}\n{errors[0][-3000:]}"
        return outputs

    def shut_down(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


def printed(outputs: list[tuple[str, str]]) -> str:
    return "".join(text for kind, text in outputs if kind == "stdout")


@pytest.mark.slow
def test_search_async_leaves_the_kernel_free_and_search_runs_in_a_cell(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(SMALL_SPACE)
    common = (
        f'"lenet300", data="synthetic", space={str(space)!r}, '
        f"cache_dir={str(tmp_path / 'cache')!r}, val_size=500, seed=0"
    )
    out = tmp_path / "async-sweep"
    kernel = Kernel(tmp_path)
    try:
        kernel.run(
            "import asyncio, json, sparsetune\n"
            f"task = asyncio.ensure_future(sparsetune.search_async({common}, trials=2, "
            f"max_concurrent=2, out={str(out)!r}, quiet=True))",
            PROMPT,
        )
        # The sweep runs in a thread: the kernel answers the next cell at once.
        started = time.monotonic()
        assert printed(kernel.run("print(1 + 1, task.done())", PROMPT)) == "2 False\n"
        # ... and still does once a trial has its folder (Ray is running the trials).
        while not (out / "trials").is_dir():
            assert time.monotonic() - started < SWEEP, "no trial started"
            time.sleep(0.5)
        outputs = kernel.run("print(task.done())", PROMPT)
        assert printed(outputs) == "False\n", outputs

        summary = printed(
            kernel.run(
                "run = await task\n"
                "print(json.dumps({'front': len(run.front), 'hypervolume': run.hypervolume, "
                "'sweep_dir': str(run.sweep_dir), 'tickets': [str(p.ticket) for p in run.front "
                "if p.ticket]}))",
                SWEEP,
            )
        )
        found = json.loads(summary.strip().splitlines()[-1])
        assert found["front"] > 0 and found["hypervolume"] > 0
        assert found["sweep_dir"] == str(out.resolve())
        assert (out / "trials.csv").is_file() and (out / "pareto.json").is_file()
        assert all(Path(ticket).is_file() for ticket in found["tickets"])

        # A plain `search` in a cell: the cell runs the sweep to its end, and its progress
        # shows in the cell (Ray's notebook reporter would clear the cell's output).
        plain = tmp_path / "plain-sweep"
        outputs = kernel.run(
            f"run = sparsetune.search({common}, trials=1, max_concurrent=1, out={str(plain)!r})\n"
            "print(json.dumps({'front': len(run.front), 'hypervolume': run.hypervolume}))",
            SWEEP,
        )
        found = json.loads(printed(outputs).strip().splitlines()[-1])
        assert found["front"] > 0 and found["hypervolume"] > 0
        assert (plain / "pareto.json").is_file()
        progress = "".join(text for kind, text in outputs if kind in ("display", "stderr"))
        assert "dense stage: lenet300 on synthetic" in progress
        assert "trials: 1 done, 0 running, 0 failed of 1" in progress
        assert ("clear_output", "") not in outputs
    finally:
        kernel.shut_down()


def test_a_sweep_started_while_another_runs_waits_for_it(tmp_path):
    """They would share the process's Ray, which the first shuts down at its end."""

    def bad_sweep() -> asyncio.Future:
        return asyncio.ensure_future(
            sparsetune.search_async("lenet300", space=tmp_path / "no.yaml", quiet=True)
        )

    async def second_sweep() -> None:
        with pytest.raises(BadInput, match="no.yaml"):  # alone, it is refused at once
            await asyncio.wait_for(bad_sweep(), timeout=PROMPT)
        with api._ONE_SWEEP:  # as a sweep running in this process holds it
            task = bad_sweep()
            await asyncio.sleep(1)
            assert not task.done()
        with pytest.raises(BadInput, match="no.yaml"):  # once the first has ended
            await asyncio.wait_for(task, timeout=PROMPT)

    asyncio.run(second_sweep())
    assert list(tmp_path.iterdir()) == []
