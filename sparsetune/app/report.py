"""`sparsetune report`: a finished sweep reviewed without MLflow (Pareto plot, front.csv)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsetune.app.checks import check_writable
from sparsetune.app.errors import BadInput

if TYPE_CHECKING:
    from sparsetune.report.review import SweepResults


@dataclass(frozen=True)
class ReportResult:
    results: SweepResults  # the sweep's front, rows and meta, as read back
    written: list[Path]  # the review files written into the sweep folder

    def summary(self) -> dict[str, Any]:
        """What `report --json` prints: the sweep's record, and the files written."""
        return self.results.summary() | {"written": [str(path) for path in self.written]}


def report(sweep_dir: Path) -> ReportResult:
    """Write the Pareto plot (pareto.png, pareto.html) and front.csv into `sweep_dir`."""
    from sparsetune.report.review import NotASweep, load_sweep, write_review

    try:
        results = load_sweep(sweep_dir)
    except NotASweep as error:
        raise BadInput(str(error)) from None
    check_writable(results.folder, "SWEEP_DIR")
    try:
        written = write_review(results.folder)
    except NotASweep as error:
        raise BadInput(str(error)) from None
    except OSError as error:  # none of the three files was moved into place
        where = error.filename2 or error.filename or results.folder
        raise BadInput(f"{where}: cannot write the review there ({error.strerror})") from None
    return ReportResult(results, written)
