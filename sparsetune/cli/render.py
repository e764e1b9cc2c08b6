"""What the commands print on stdout: tables and summary lines of the application's results.

A table printed to a file or a pipe is read later, not in an 80-column terminal: there the
console is 160 columns wide.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from sparsetune.app.export import ExportResult
    from sparsetune.app.prune import PruneResult
    from sparsetune.app.report import ReportResult
    from sparsetune.app.search import SearchResult
    from sparsetune.app.sweeps import SweepSummary
    from sparsetune.tracking.ui import Experiment, MlflowUi


def console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, width=None if sys.stdout.isatty() else 160)


def search_result(out: Console, result: SearchResult) -> None:
    from sparsetune.report.tables import pareto_table
    from sparsetune.search.hypervolume import describe_axes

    sweep, outcome = result.sweep, result.outcome
    objective = outcome.objective
    title = f"Pareto front: {sweep.experiment_name}"
    if not objective.is_multi:
        bound = f", {objective.bound.description}" if objective.bound else ""
        title = f"Best ticket ({objective.metrics[0]}{bound}): {sweep.experiment_name}"
    out.print(pareto_table(outcome.front, title=title))
    if objective.is_multi:
        out.print(
            f"hypervolume {outcome.hypervolume:.4f} ({describe_axes(objective.metrics)})",
            highlight=False,
        )
    epochs = sweep.budget_epochs
    if epochs is not None and outcome.epochs_spent >= epochs:
        out.print(
            f"--budget-epochs {epochs} spent ({outcome.epochs_spent} training epochs): "
            "the sweep ended early"
        )
    elif outcome.budget_spent:
        out.print(f"--budget-minutes {sweep.budget_minutes:g} spent: the sweep ended early")
    out.print(
        f"{len(outcome.front)} front points, {len(outcome.failures)} failed trials\n"
        f"results: {outcome.sweep_dir / 'pareto.json'}, {outcome.sweep_dir / 'trials.csv'}\n"
        f"MLflow:  {outcome.tracking_uri} (experiment {sweep.experiment_name!r})\n"
        f"review:  sparsetune ui --out {outcome.sweep_dir}  |  "
        f"sparsetune report {outcome.sweep_dir}",
        highlight=False,
    )


def prune_result(out: Console, result: PruneResult, tracking_uri: str | None) -> None:
    from sparsetune.report.tables import layer_table

    summary = result.summary()
    title = f"{summary['method']} on {summary['model']}: per-layer sparsity"
    out.print(layer_table(summary["layers"], title=title))
    out.print(
        f"val acc {summary['val_acc']:.4f}, test acc {summary['test_acc']:.4f} "
        f"(error {summary['test_error']:.2f}%), compression {summary['compression']:.1f}x, "
        f"FLOPs {100 * summary['flops_ratio']:.1f}%, architecture {summary['architecture']}\n"
        f"results: {result.out / 'result.json'}"
        + (f"\nMLflow run {result.run_id} at {tracking_uri}" if result.run_id else ""),
        highlight=False,
    )


def report_result(out: Console, result: ReportResult) -> None:
    from sparsetune.report.tables import pareto_table

    results = result.results
    front = [
        {**row, "key_params": row.get("key_params") or row.get("params") or {}}
        for row in results.front
    ]
    metrics = results.objective_metrics
    title = f"Pareto front: {results.experiment}"
    if len(metrics) == 1:
        title = f"Best ticket ({metrics[0]}): {results.experiment}"
    out.print(pareto_table(front, title=title))
    if results.hypervolume is not None and len(metrics) > 1:
        axes = results.meta.get("hypervolume_axes", "")
        out.print(f"hypervolume {results.hypervolume:.4f} ({axes})", highlight=False)
    published = results.published()
    out.print(
        f"{len(published)} published points drawn for {results.model} on {results.dataset}"
        if published
        else f"no published points for {results.model} on {results.dataset}",
        highlight=False,
    )
    out.print("wrote: " + ", ".join(str(path) for path in result.written), highlight=False)


def export_result(result: ExportResult) -> None:
    compression = result.compression
    print(
        f"wrote {result.out}: {result.format}, {result.bytes:,} bytes, {result.parameters:,} "
        f"parameters, compression {compression:.1f}x, architecture {result.architecture} "
        f"(from {result.source})"
        if isinstance(compression, (int, float))
        else f"wrote {result.out}: {result.format}, {result.bytes:,} bytes (from {result.source})"
    )
    registered = result.registered
    if registered is not None:
        print(
            f"registered {registered['name']!r} version {registered['version']} (run "
            f"{registered['run_id']}); load it with mlflow.pytorch.load_model"
            f"({registered['model_uri']!r})"
        )


def ui_urls(server: MlflowUi, experiments: list[Experiment]) -> None:
    """Where the UI answers: the sweep's experiment page when the store holds one sweep."""
    if len(experiments) == 1:
        print(
            f"MLflow UI: {server.experiment_url(experiments[0])} "
            f"(experiment {experiments[0].name!r})",
            flush=True,
        )
        return
    print(f"MLflow UI: {server.url}", flush=True)
    for experiment in experiments:
        print(f"  {experiment.name!r}: {server.experiment_url(experiment)}", flush=True)


def _counts(sweep: SweepSummary) -> str:
    if sweep.finished is None:
        return f"- of {sweep.trials}"
    running = f", {sweep.running} running" if sweep.running else ""
    return f"{sweep.finished} done, {sweep.failed} failed{running} of {sweep.trials}"


def _started(sweep: SweepSummary) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M", time.localtime(sweep.started))


def sweep_list(out: Console, sweeps: list[SweepSummary], root: Path) -> None:
    from rich.table import Table

    if not sweeps:
        out.print(f"no sweeps under {root}", highlight=False)
        return
    table = Table(title=f"Sweeps under {root}")
    for column in ("sweep", "status", "model / data / objective", "trials", "front", "hv"):
        table.add_column(column)
    table.add_column("started")
    base = root.expanduser().resolve()
    for sweep in sweeps:
        where = (
            sweep.folder.relative_to(base) if sweep.folder.is_relative_to(base) else sweep.folder
        )
        hypervolume = "-" if sweep.hypervolume is None else f"{sweep.hypervolume:.4f}"
        table.add_row(
            str(where),
            sweep.status,
            f"{sweep.model} / {sweep.dataset} / {sweep.objective}",
            _counts(sweep),
            "-" if sweep.front is None else str(sweep.front),
            hypervolume,
            _started(sweep),
        )
    out.print(table)


def sweep_status(sweep: SweepSummary) -> None:
    lines = [
        f"sweep {sweep.experiment} in {sweep.folder}",
        f"status: {sweep.status}"
        + (f" ({sweep.holder})" if sweep.holder else "")
        + (
            f"; continue it with: sparsetune search --resume {sweep.folder}"
            if sweep.status == "stopped"
            else ""
        ),
        f"{sweep.model} on {sweep.dataset}, objective {sweep.objective}",
        f"trials: {_counts(sweep)}",
        "front: "
        + ("-" if sweep.front is None else f"{sweep.front} points")
        + ("" if sweep.hypervolume is None else f", hypervolume {sweep.hypervolume:.4f}"),
        f"started {_started(sweep)}"
        + (f", resumed {sweep.resumed} times" if sweep.resumed else ""),
        f"MLflow: {sweep.tracking_uri}"
        + (f", parent run {sweep.parent_run_id}" if sweep.parent_run_id else ""),
    ]
    print("\n".join(lines))
