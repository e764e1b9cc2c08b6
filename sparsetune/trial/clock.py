"""Where a trial's time goes: wall seconds per phase, summed over the trial.

Phases: `data` (the splits: decoded, or adopted from the sweep's object store), `dense` (the
shared dense stage from the cache, or trained), `train`, `eval` (validation and test passes and
the sparsity report), `ticket` (the round's files), and what the search layer adds: `tracking`
(MLflow) and `report` (the round's checkpoint and its hand-off to Ray). The sweep logs them on
each child run as `time_<phase>_s`, and benchmarks/sweep_throughput.py reads them back to say
what a trial spends outside training."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

COMPUTE_PHASES = ("train", "eval")  # what a trial computes; the rest is overhead


class PhaseClock:
    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - started

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] += seconds

    def metrics(self) -> dict[str, float]:
        return {f"time_{name}_s": round(value, 4) for name, value in sorted(self.seconds.items())}
