"""What the commands print on stdout: tables and summary lines of the application's results.

A table printed to a file or a pipe is read later, not in an 80-column terminal: there the
console is 160 columns wide.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from sparsetune.app.export import ExportResult
    from sparsetune.app.prune import PruneResult
    from sparsetune.app.report import ReportResult
    from sparsetune.app.search import SearchResult
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
