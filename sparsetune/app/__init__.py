"""The application layer: what `sparsetune` does, as plain functions over typed options.

The CLI, scheduled sweeps and the Python API call these; nothing here knows of typer. Each
function checks all of its input first (raising `errors.BadInput`, one line), then works, and
returns a result object; progress goes to a rich console passed in (stderr by default).

    prune.prune(PruneOptions)              one configuration in this process -> PruneResult
    search.search(SweepConfig | options)   one sweep, new or resumed -> SearchResult
    scheduled_sweep.sweep(spec_path)       what a sweep spec asks for now -> its exit code
    export.export(source, format, out)     a ticket as a model file -> ExportResult
    report.report(sweep_dir)               a sweep's review files -> ReportResult
    ui.ui_store(UiOptions), ui.serve(...)  the MLflow UI on a sweep's store

`options` holds the option models, `checks` the input checks they share.
"""
