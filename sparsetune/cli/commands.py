"""The `sparsetune` subcommands: each parses its options, calls the application layer
(`sparsetune.app`) and renders what it returns. The options of `search` and `prune` are generated
from their option models (`cli.options`); heavy libraries load inside the application's calls."""

from __future__ import annotations

import json
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Annotated, Any

import typer

from sparsetune.app.checks import validated
from sparsetune.app.console import say
from sparsetune.app.options import PruneOptions, UiOptions
from sparsetune.app.scheduled_sweep import EXIT_FINISHED, EXIT_NOTHING_TO_DO, EXIT_RESUMED
from sparsetune.app.space import SpaceOptions
from sparsetune.cli import render
from sparsetune.cli.help_format import show_flags_as_flags, summaries_as_one_line
from sparsetune.cli.options import choice_metavar, completer, with_options
from sparsetune.search.options import SweepConfig

app = typer.Typer(
    add_completion=True,  # --install-completion / --show-completion, as typer tools have
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Hyperparameter search for sparse neural networks (Ray Tune, Optuna, MLflow).",
)
show_flags_as_flags()

JSON_HELP = "print one JSON object on stdout, progress on stderr"
JsonFlag = Annotated[bool, typer.Option("--json", help=JSON_HELP)]


def print_json(value: Any) -> None:
    """`--json`: one JSON document on stdout (paths and times as strings)."""
    print(json.dumps(value, default=str))


SweepDir = Annotated[
    Path, typer.Argument(help="a sweep folder (what `sparsetune search --out` wrote)")
]
EXPORT_FORMATS = ("dense", "sparse", "structured")


def _print_version(wanted: bool) -> None:
    if wanted:
        print(f"sparsetune {installed_version('sparsetune')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            help="print the version and exit",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Hyperparameter search for sparse neural networks (Ray Tune, Optuna, MLflow)."""


@app.command()
@with_options(SweepConfig, optional=("model",))
def search(
    given: dict[str, Any],
    resume: Annotated[
        Path | None,
        typer.Option(help="continue the killed sweep in this folder, with its options"),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Search pruning methods and their knobs; print and save the Pareto front."""
    from sparsetune.app.search import FinishedBefore
    from sparsetune.app.search import search as run_search

    result = run_search(given, resume=resume, console=render.console(stderr=True))
    if json_output:  # one object, also for a sweep that had finished before
        print_json(result.summary())
    elif not isinstance(result, FinishedBefore):  # finished before: said on stderr
        render.search_result(render.console(), result)


@app.command()
@with_options(SpaceOptions)
def space(given: dict[str, Any]) -> None:
    """Print a model's search space as one YAML file (`> space.yaml`, edit, pass --space): its
    built-in space with the fragments inline, or the one generated from its prunable layers."""
    from sparsetune.app.space import space as model_space

    result = model_space(validated(SpaceOptions, given))
    say(render.console(stderr=True), f"space: {result.note}")
    print(result.yaml, end="")


SWEEP_EPILOG = (
    f"Exit codes: {EXIT_FINISHED} a new sweep ran to its end; {EXIT_RESUMED} an unfinished sweep "
    f"was resumed and ran to its end; {EXIT_NOTHING_TO_DO} nothing to do (the sweep has finished "
    "and new_sweep starts no new one now); 2 bad input (nothing written); 1 failed; 130 or 143 "
    "stopped by Ctrl-C (SIGINT) or SIGTERM, resumable by running it again. --dry-run exits with "
    "the code it would."
)


@app.command(epilog=SWEEP_EPILOG)
def sweep(
    spec_file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE.yaml", help="a sweep spec (docs/cluster.md)", show_default=False
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="say what it would do (resume, start, nothing)")
    ] = False,
) -> int:
    """Run the sweep a spec file describes; run it again (cron) to resume or repeat it."""
    from sparsetune.app.scheduled_sweep import sweep as run_spec

    out = render.console()
    return run_spec(
        spec_file,
        dry_run=dry_run,
        console=render.console(stderr=True),
        on_result=lambda result: render.search_result(out, result),
    )


@app.command()
@with_options(PruneOptions)
def prune(
    given: dict[str, Any],
    json_output: JsonFlag = False,
) -> None:
    """Train and prune one configuration in this process, with its paper's settings."""
    from sparsetune.app.prune import prune as run_prune

    options = validated(PruneOptions, given)
    result = run_prune(options, console=render.console(stderr=True))
    if json_output:
        print_json(result.summary())
    else:
        render.prune_result(render.console(), result, options.tracking_uri)


@app.command()
def report(
    sweep_dir: SweepDir,
    json_output: JsonFlag = False,
) -> None:
    """Write the Pareto plot (pareto.png, pareto.html) and front.csv into a sweep folder, and
    print the front: the review without MLflow."""
    from sparsetune.app.report import report as write_report

    result = write_report(sweep_dir)
    if json_output:
        print_json(result.summary())
    else:
        render.report_result(render.console(), result)


@app.command("list")
def list_sweeps(
    root: Annotated[
        Path,
        typer.Option(help="the folder the sweeps are in (searched 4 levels deep)"),
    ] = Path("sparsetune-runs"),
    json_output: JsonFlag = False,
) -> None:
    """List the sweeps under a folder: status, trials, front, hypervolume, started."""
    from sparsetune.app.sweeps import list_sweeps as find

    sweeps = find(root)
    if json_output:
        print_json([sweep.summary() for sweep in sweeps])
    else:
        render.sweep_list(render.console(), sweeps, root)


@app.command()
def status(
    sweep_dir: SweepDir,
    json_output: JsonFlag = False,
) -> None:
    """Say how one sweep stands: running (and who runs it), stopped (resumable) or finished."""
    from sparsetune.app.sweeps import sweep_status

    sweep = sweep_status(sweep_dir)
    if json_output:
        print_json(sweep.summary())
    else:
        render.sweep_status(sweep)


@app.command()
@with_options(UiOptions)
def ui(given: dict[str, Any]) -> None:
    """Start the MLflow UI on a sweep's store and print its URL; Ctrl-C stops it."""
    from sparsetune.app.ui import serve, ui_store
    from sparsetune.tracking.ui import UiFailed

    options = validated(UiOptions, given)
    store = ui_store(options)
    progress = render.console(stderr=True)
    try:
        serve(store, options, console=progress, on_ready=render.ui_urls)
    except UiFailed as error:
        say(progress, f"sparsetune: error: {error}")
        raise typer.Exit(1) from None


@app.command()
def export(
    source: Annotated[
        str,
        typer.Argument(
            help="a ticket (round-N.safetensors), a `prune --out` or trial folder (its final "
            "round), or an MLflow run id",
            show_default=False,
        ),
    ],
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="dense, sparse or structured (docs/export.md)",
            metavar=choice_metavar(EXPORT_FORMATS),
            autocompletion=completer(EXPORT_FORMATS),
        ),
    ],
    out: Annotated[Path, typer.Option(help="the file to write, e.g. model.safetensors")],
    register: Annotated[
        str | None,
        typer.Option(help="also register the model under this name in MLflow's model registry"),
    ] = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            help="MLflow store of a run-id SOURCE and of --register (default: $MLFLOW_TRACKING_URI)"
        ),
    ] = None,
    trust_code: Annotated[
        bool,
        typer.Option(
            "--trust-code",
            help="build a ticket whose header names your own factory (package.module:factory) "
            "by importing it; without it only registered, torchvision: and timm: models are built",
        ),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Write a ticket as a dense, sparse or physically smaller (structured) model file."""
    from sparsetune.app.export import export as write_export

    result = write_export(
        source, format, out, register=register, tracking_uri=tracking_uri, trust_code=trust_code
    )
    if json_output:
        print_json(result.summary())
    else:
        render.export_result(result)


summaries_as_one_line(app)  # after the last command above
