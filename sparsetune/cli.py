"""The `sparsetune` command. Each subcommand imports its heavy parts inside its body, so
`sparsetune --help` and input errors answer at once.

Bad input gets one line on stderr naming the problem and the fix, exit code 2, and nothing is
written: every check runs before the sweep folder or an MLflow run is created.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated, NoReturn

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Hyperparameter search for sparse neural networks (Ray Tune, Optuna, MLflow).",
)

EXIT_BAD_INPUT = 2
# `sparsetune sweep`'s exit codes, distinct so that a cron wrapper can tell them apart (1 is a
# failure: an uncaught error, a sweep that did not run to its end).
EXIT_FINISHED = 0  # a new sweep ran to its end
EXIT_RESUMED = 10  # an unfinished sweep was resumed and ran to its end
EXIT_NOTHING_TO_DO = 11  # finished already, and the spec starts no new sweep now


class BadInput(Exception):
    """A user error: reported as one line, exit code 2."""


@app.callback()
def _root() -> None:
    """Hyperparameter search for sparse neural networks (Ray Tune, Optuna, MLflow)."""


MODEL_HELP = (
    "lenet300, lenet5, resnet20, resnet32, resnet32x2, vgg16, vgg19, or "
    "package.module:factory (called with input_shape and num_classes)"
)
DATASET_HELP = "mnist, fashion-mnist, cifar10, cifar100 or synthetic"


@app.command()
def search(
    model: Annotated[str | None, typer.Option(help=MODEL_HELP)] = None,
    objective: Annotated[
        str,
        typer.Option(help="pareto, pareto-flops, pareto3, max-acc or max-compression"),
    ] = "pareto",
    min_compression: Annotated[
        float | None, typer.Option(help="max-acc: the least compression X (e.g. 10)")
    ] = None,
    max_drop: Annotated[
        float | None,
        typer.Option(help="max-compression: most accuracy points below the dense model (e.g. 1)"),
    ] = None,
    sampler: Annotated[
        str, typer.Option(help="auto, tpe, nsga2, gp, random or qmc (docs/search.md)")
    ] = "auto",
    early_stop: Annotated[
        str, typer.Option(help="auto (asha for one objective, else off), asha, dominance, off")
    ] = "auto",
    budget_minutes: Annotated[
        float | None, typer.Option(help="end the sweep after M minutes (running rounds finish)")
    ] = None,
    enqueue: Annotated[
        str | None, typer.Option(help="YAML of configurations to try first, or 'paper'")
    ] = None,
    dataset: Annotated[str, typer.Option(help=DATASET_HELP)] = "fashion-mnist",
    data_dir: Annotated[
        Path | None,
        typer.Option(help="torchvision data folder [default: ~/.cache/sparsetune/data]"),
    ] = None,
    subset: Annotated[int | None, typer.Option(help="train on this many examples")] = None,
    trials: Annotated[int, typer.Option(help="number of trials")] = 8,
    max_concurrent: Annotated[int, typer.Option(help="trials running at once")] = 2,
    cpus_per_trial: Annotated[float, typer.Option(help="CPUs reserved per trial")] = 1.0,
    space: Annotated[
        Path | None, typer.Option(help="search-space YAML [default: the model's built-in space]")
    ] = None,
    methods: Annotated[
        str | None, typer.Option(help="restrict to these methods, comma-separated")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="sweep folder [default: ./sparsetune-runs/<experiment>]")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="continue the killed sweep in this folder, with its options"),
    ] = None,
    experiment: Annotated[
        str | None, typer.Option(help="experiment name [default: <model>-<dataset>-<objective>]")
    ] = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option(help="MLflow tracking URI [default: sqlite file in the sweep folder]"),
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="dense-model cache [default: ~/.cache/sparsetune/cache]")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the sampler and of training")] = 0,
    epochs: Annotated[
        int | None, typer.Option(help="dense training epochs [default: the space's]")
    ] = None,
    val_size: Annotated[int, typer.Option(help="validation examples held out of train")] = 5000,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    address: Annotated[
        str | None,
        typer.Option(
            help="join a running Ray cluster: auto, HOST:PORT of its head, or ray://HOST:PORT "
            "of its Ray Client server, which runs the sweep on the head (docs/cluster.md) "
            "[default: start a local Ray]"
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="a folder every node reaches (holds the sweep folder, cache and Ray results "
            "unless --out / --cache-dir say otherwise), or a URI (s3://, gs://, ...) for Ray's "
            "results only"
        ),
    ] = None,
    gpus_per_trial: Annotated[
        float | None,
        typer.Option(
            help="GPUs reserved per trial; fractions share one (0.25: four trials a GPU) "
            "[default: 1 where --device resolves to cuda, else 0]"
        ),
    ] = None,
) -> None:
    """Search pruning methods and their knobs; print and save the Pareto front."""
    given = {
        "model": model,
        "objective": objective,
        "min_compression": min_compression,
        "max_drop": max_drop,
        "sampler": sampler,
        "early_stop": early_stop,
        "budget_minutes": budget_minutes,
        "enqueue": enqueue,
        "dataset": dataset,
        "data_dir": data_dir,
        "subset": subset,
        "trials": trials,
        "max_concurrent": max_concurrent,
        "cpus_per_trial": cpus_per_trial,
        "space": space,
        "methods": [m.strip() for m in methods.split(",") if m.strip()] if methods else None,
        "out": out,
        "experiment": experiment,
        "tracking_uri": tracking_uri,
        "cache_dir": cache_dir,
        "seed": seed,
        "epochs": epochs,
        "val_size": val_size,
        "device": device,
        "address": address,
        "storage": storage,
        "gpus_per_trial": gpus_per_trial,
    }
    sweep, unfinished = _sweep_to_run(given, resume)
    if sweep is None:
        return
    space_model = _checked_space(sweep)
    if unfinished is not None:
        _check_same_sweep(unfinished, sweep, space_model, resume)
    _check_writable(sweep.sweep_dir, "--out")
    _run_search(sweep, space_model, unfinished, _checked_enqueue(sweep, space_model))


def _run_search(sweep, space_model, unfinished, enqueued: list[dict] | None):
    """Run a checked sweep (new, or continuing `unfinished`) and print its front: `search`'s
    and `sweep`'s common path. Its own checks (data, device, GPUs, cluster) come first."""
    from rich.console import Console

    from sparsetune.search.options import is_ray_client

    through_client = is_ray_client(sweep.address)
    if not through_client:  # under Ray Client the data and devices are the cluster's
        splits = _checked_data(sweep)
        _checked_device(sweep.device)
        _checked_gpus(sweep)

    if sweep.address:
        _send_cluster_token_if_present()
        _checked_cluster(sweep.address)
    from sparsetune.search.sweep import prepare_dense, run_sweep
    from sparsetune.train.loop import TrainingDiverged

    # A table printed to a file or a pipe is read later, not in an 80-column terminal.
    width = None if sys.stdout.isatty() else 160
    progress = Console(stderr=True, width=width)
    try:
        if through_client:
            from sparsetune.search.client import DataUnreadable, run_through_client

            try:
                outcome = run_through_client(
                    sweep, space_model, enqueued=enqueued, resume=unfinished
                )
            except DataUnreadable as error:
                raise BadInput(str(getattr(error, "cause", None) or error)) from None
        else:
            dense = prepare_dense(sweep, space_model, splits, progress)
            outcome = run_sweep(
                sweep,
                space_model,
                dense,
                progress,
                num_classes=splits.num_classes,
                enqueued=enqueued,
                resume=unfinished,
            )
    except TrainingDiverged as error:
        cause = getattr(error, "cause", None) or error  # a Ray task's error wraps it
        raise BadInput(f"the dense stage diverged ({cause}); lower train.lr in the space") from None

    from sparsetune.report.tables import pareto_table

    console = Console(width=width)
    objective = outcome.objective
    title = f"Pareto front: {sweep.experiment_name}"
    if not objective.is_multi:
        bound = f", {objective.bound.description}" if objective.bound else ""
        title = f"Best ticket ({objective.metrics[0]}{bound}): {sweep.experiment_name}"
    console.print(pareto_table(outcome.front, title=title))
    if objective.is_multi:
        from sparsetune.search.hypervolume import describe_axes

        console.print(
            f"hypervolume {outcome.hypervolume:.4f} ({describe_axes(objective.metrics)})",
            highlight=False,
        )
    if outcome.budget_spent:
        console.print(f"--budget-minutes {sweep.budget_minutes:g} spent: the sweep ended early")
    console.print(
        f"{len(outcome.front)} front points, {len(outcome.failures)} failed trials\n"
        f"results: {outcome.sweep_dir / 'pareto.json'}, {outcome.sweep_dir / 'trials.csv'}\n"
        f"MLflow:  {outcome.tracking_uri} (experiment {sweep.experiment_name!r})\n"
        f"review:  sparsetune ui --out {outcome.sweep_dir}  |  "
        f"sparsetune report {outcome.sweep_dir}",
        highlight=False,
    )
    return outcome


SWEEP_EPILOG = (
    "Exit codes: 0 a new sweep ran to its end; 10 an unfinished sweep was resumed and ran to "
    "its end; 11 nothing to do (the sweep has finished and new_sweep starts no new one now); "
    "2 bad input (nothing written); 1 failed. --dry-run exits with the code it would."
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
    from sparsetune.search.scheduled import plan_sweep, warm_start
    from sparsetune.search.spec import load_spec
    from sparsetune.search.state import read_state

    try:
        loaded = load_spec(spec_file)
    except ValueError as error:
        raise BadInput(str(error)) from None
    spec, name = loaded.spec, loaded.path
    # Every model's plan and inputs are checked before the first sweep runs.
    steps = []
    for model in spec.model_names:
        try:
            plan = plan_sweep(loaded.base_dir(model), spec.new_sweep)
            config = loaded.sweep_config(model, plan.folder)
            state = read_state(plan.folder) if plan.action == "resume" else None
        except ValueError as error:
            raise BadInput(str(error)) from None
        space = _checked_space(config)
        points = None
        if state is not None:
            changed = [
                c.removeprefix("--").replace("-", "_") for c in state.differences(config, space)
            ]
            if changed:
                raise BadInput(
                    f"{name}: the unfinished sweep in {plan.folder} has other "
                    f"{', '.join(changed)}; restore them in the spec, or move that folder away "
                    "to start anew"
                )
        if plan.action == "start":
            _check_writable(plan.folder, "out")
            if spec.warm_start and plan.earlier:
                warm = warm_start(plan.earlier, space)
                for note in warm.skipped:
                    print(f"sparsetune: warm start skipped {note}", file=sys.stderr)
                points = warm.points or None
        print(
            plan.describe(model)
            + (f", warm-started with {len(points)} earlier front points" if points else ""),
            file=sys.stderr,
        )
        steps.append((plan, config, space, state, points))

    actions = {plan.action for plan, *_ in steps}
    code = (
        EXIT_NOTHING_TO_DO
        if actions == {"nothing"}
        else EXIT_RESUMED
        if "resume" in actions
        else EXIT_FINISHED
    )
    if dry_run:
        return code
    for plan, config, space, state, points in steps:
        if plan.action != "nothing":
            _run_search(config, space, state, points)
    return code


@app.command()
def prune(
    model: Annotated[
        str,
        typer.Option(help="lenet300, lenet5, resnet20, resnet32, resnet32x2, vgg16, vgg19, ..."),
    ],
    method: Annotated[
        str, typer.Option(help="dense, magnitude, lottery, l0, sensitivity, snip, grasp, random")
    ] = "magnitude",
    dataset: Annotated[str, typer.Option(help=DATASET_HELP)] = "fashion-mnist",
    set_values: Annotated[
        list[str] | None,
        typer.Option("--set", help="a method parameter as key=value (YAML value); repeat for more"),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(help="dense epochs; the method's *epochs knobs scale with them [paper's]"),
    ] = None,
    subset: Annotated[int | None, typer.Option(help="train on this many examples")] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="torchvision data folder [default: ~/.cache/sparsetune/data]"),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="output folder [default: ./sparsetune-runs/prune-<model>-<method>]"),
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="dense-model cache [default: ~/.cache/sparsetune/cache]")
    ] = None,
    tracking_uri: Annotated[
        str | None, typer.Option(help="record an MLflow run there [default: no MLflow]")
    ] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment")] = "sparsetune-prune",
    val_size: Annotated[int, typer.Option(help="validation examples held out of train")] = 5000,
    seed: Annotated[int, typer.Option(help="seed of initialisation and training")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    json_output: Annotated[
        bool, typer.Option("--json", help="print one JSON object on stdout, progress on stderr")
    ] = False,
) -> None:
    """Train and prune one configuration in this process, with its paper's settings."""
    import json

    from rich.console import Console

    from sparsetune.app.options import PruneOptions
    from sparsetune.config import DataConfig
    from sparsetune.recipe import method_recipe

    options = _validated(
        PruneOptions,
        {
            k: v
            for k, v in {
                "model": model,
                "dataset": dataset,
                "method": method,
                "out": out,
                "cache_dir": cache_dir,
                "data_dir": data_dir,
                "epochs": epochs,
                "subset": subset,
                "val_size": val_size,
            }.items()
            if v is not None
        },
    )
    overrides = _parsed_sets(set_values or [])
    try:
        recipe = method_recipe(model, method)
    except ValueError as error:
        raise BadInput(str(error)) from None
    if options.epochs is not None:
        recipe = recipe.scaled_to(options.epochs)
    data = DataConfig(
        name=dataset, data_dir=options.data_dir, subset=options.subset, val_size=options.val_size
    )
    config = _validated_trial(
        model=model,
        data=data,
        train=recipe.train,
        method=method,
        params={**recipe.params, **overrides},
        seed=seed,
        device=device,
    )
    folder = (options.out or Path("sparsetune-runs") / f"prune-{model}-{method}").resolve()
    _check_writable(folder, "--out")
    from sparsetune.data import load_splits
    from sparsetune.pruning.masking import UnknownLayer
    from sparsetune.trial import check_method

    try:
        check_method(config, load_splits(config.data))
    except UnknownLayer as error:
        raise BadInput(f"--set {error}") from None
    except ValueError as error:
        raise BadInput(str(error)) from None
    _checked_device(device)

    from sparsetune.report.tables import layer_table
    from sparsetune.single_run import run_single
    from sparsetune.train.loop import EpochDone, TrainingDiverged

    width = None if sys.stdout.isatty() else 160
    progress = Console(stderr=True, width=width)
    progress.print(
        f"{method} on {model} / {dataset}: dense {config.train.epochs} epochs "
        f"({recipe.source}), params {config.method_config().model_dump()}",
        highlight=False,
    )

    def on_round(result) -> None:
        progress.print(
            f"round {result.round}: val {result.val_acc:.4f}, test {result.test_acc:.4f}, "
            f"{result.compression:.1f}x, FLOPs {100 * result.flops_ratio:.1f}%, "
            f"{result.architecture} ({result.seconds:.0f} s)",
            highlight=False,
        )

    def on_epoch(phase: str, done: EpochDone) -> None:
        # A one-epoch phase (sensitivity's rounds) is already a round line.
        if done.epochs > 1:
            progress.print(f"{phase}: {done.describe()}", highlight=False)

    created = not folder.exists()
    try:
        single = run_single(
            config,
            out=folder,
            cache_dir=options.cache_dir,
            tracking_uri=tracking_uri,
            experiment=experiment,
            on_round=on_round,
            on_epoch=on_epoch,
        )
    except TrainingDiverged as error:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise BadInput(f"training diverged ({error}); lower the learning rate") from None
    summary = single.summary()
    if json_output:
        print(json.dumps(summary, default=str))
        return
    console = Console(width=width)
    console.print(layer_table(summary["layers"], title=f"{method} on {model}: per-layer sparsity"))
    console.print(
        f"val acc {summary['val_acc']:.4f}, test acc {summary['test_acc']:.4f} "
        f"(error {summary['test_error']:.2f}%), compression {summary['compression']:.1f}x, "
        f"FLOPs {100 * summary['flops_ratio']:.1f}%, architecture {summary['architecture']}\n"
        f"results: {folder / 'result.json'}"
        + (f"\nMLflow run {single.run_id} at {tracking_uri}" if single.run_id else ""),
        highlight=False,
    )


def _parsed_sets(values: list[str]) -> dict:
    import yaml

    overrides = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"--set {item!r}: expected key=value, e.g. --set sparsity=0.9")
        try:
            overrides[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise BadInput(f"--set {item!r}: the value is not valid YAML") from None
    return overrides


def _validated_trial(**values):
    from pydantic import ValidationError

    from sparsetune.config import TrialConfig
    from sparsetune.validation import describe_validation_error

    try:
        return TrialConfig(**values)
    except ValidationError as error:
        message = describe_validation_error(error)
        # Method parameters come from --set; name the option the user typed.
        raise BadInput(f"--set: {message}" if "params." in message else message) from None


@app.command()
def report(
    sweep_dir: Annotated[
        Path,
        typer.Argument(help="a sweep folder (what `sparsetune search --out` wrote)"),
    ],
) -> None:
    """Write the Pareto plot (pareto.png, pareto.html) and front.csv into a sweep folder, and
    print the front: the review without MLflow."""
    from rich.console import Console

    from sparsetune.report.review import NotASweep, load_sweep, write_review
    from sparsetune.report.tables import pareto_table

    try:
        results = load_sweep(sweep_dir)
    except NotASweep as error:
        raise BadInput(str(error)) from None
    _check_writable(results.folder, "SWEEP_DIR")
    written = write_review(results.folder)

    console = Console(width=None if sys.stdout.isatty() else 160)
    front = [
        {**row, "key_params": row.get("key_params") or row.get("params") or {}}
        for row in results.front
    ]
    metrics = results.objective_metrics
    title = f"Pareto front: {results.experiment}"
    if len(metrics) == 1:
        title = f"Best ticket ({metrics[0]}): {results.experiment}"
    console.print(pareto_table(front, title=title))
    if results.hypervolume is not None and len(metrics) > 1:
        axes = results.meta.get("hypervolume_axes", "")
        console.print(f"hypervolume {results.hypervolume:.4f} ({axes})", highlight=False)
    published = results.published()
    console.print(
        f"{len(published)} published points drawn for {results.model} on {results.dataset}"
        if published
        else f"no published points for {results.model} on {results.dataset}",
        highlight=False,
    )
    console.print("wrote: " + ", ".join(str(path) for path in written), highlight=False)


@app.command()
def ui(
    out: Annotated[
        Path | None,
        typer.Option(help="sweep folder [default: the one sweep under ./sparsetune-runs]"),
    ] = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option(help="MLflow store URI to serve instead (e.g. sqlite:///path/mlflow.db)"),
    ] = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="port to listen on")] = 5000,
    host: Annotated[
        str, typer.Option(help="interface to bind (0.0.0.0 opens it to the network)")
    ] = "127.0.0.1",
) -> None:
    """Start the MLflow UI on a sweep's store and print its URL; Ctrl-C stops it."""
    import signal

    from sparsetune.tracking.ui import (
        MlflowUi,
        UiFailed,
        UiInputError,
        check_address,
        resolve_store,
    )

    try:
        store = resolve_store(out, tracking_uri)
        check_address(host, port)
    except UiInputError as error:
        raise BadInput(str(error)) from None

    def _stop(signum, frame):
        raise KeyboardInterrupt

    # SIGINT too: a process started in the background by a non-interactive shell (cron, CI)
    # inherits SIGINT ignored, and Python then never turns Ctrl-C into KeyboardInterrupt.
    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    handlers = {sig: signal.signal(sig, _stop) for sig in stop_signals}
    server = MlflowUi(store, host, port)
    print(f"starting the MLflow UI on {store}", file=sys.stderr, flush=True)
    try:
        server.start()
        try:
            experiments = server.sweep_experiments()
        except (OSError, ValueError, KeyError):
            experiments = []
        if len(experiments) == 1:
            print(
                f"MLflow UI: {server.experiment_url(experiments[0])} "
                f"(experiment {experiments[0].name!r})",
                flush=True,
            )
        else:
            print(f"MLflow UI: {server.url}", flush=True)
            for experiment in experiments:
                print(f"  {experiment.name!r}: {server.experiment_url(experiment)}", flush=True)
        print(f"server log: {server.log_path}; Ctrl-C stops it", file=sys.stderr, flush=True)
        code = server.wait()
        raise UiFailed(f"the MLflow server stopped on its own (code {code}): {server.log_tail()}")
    except KeyboardInterrupt:
        print("MLflow UI stopped", file=sys.stderr, flush=True)
    except UiFailed as error:
        print(f"sparsetune: error: {error}", file=sys.stderr, flush=True)
        raise typer.Exit(1) from None
    finally:
        server.stop()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


_RUN_ID_PATTERN = r"[0-9a-f]{32}"  # what MLflow's run ids look like (uuid4 hex)


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
        str, typer.Option("--format", help="dense, sparse or structured (docs/export.md)")
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
    json_output: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Write a ticket as a dense, sparse or physically smaller (structured) model file."""
    import json
    import re

    from sparsetune.export.header import EXPORT_FORMATS
    from sparsetune.tracking import local_sqlite_path

    if format not in EXPORT_FORMATS:
        raise BadInput(f"--format {format!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    out = _checked_out_file(out)
    path, run_id = Path(source).expanduser(), None
    if not path.exists():
        if not re.fullmatch(_RUN_ID_PATTERN, source):
            raise BadInput(
                f"SOURCE {source}: no such file or folder, and not an MLflow run id; pass a "
                "ticket (round-N.safetensors), a `sparsetune prune --out` folder or a run id"
            )
        run_id = source
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if (run_id or register) and not uri:
        needs = f"SOURCE {source} is a run id" if run_id else "--register"
        raise BadInput(
            f"{needs}: needs an MLflow store; pass --tracking-uri (e.g. sqlite:///path/mlflow.db) "
            "or set MLFLOW_TRACKING_URI"
        )
    database = local_sqlite_path(uri) if run_id and uri else None
    if database is not None and not database.is_file():
        raise BadInput(
            f"--tracking-uri {uri}: no MLflow database at {database}; pass the store that holds "
            f"run {run_id}"
        )

    from sparsetune.export import encode, read_ticket

    with tempfile.TemporaryDirectory(prefix="sparsetune-export-") as scratch:
        try:
            if run_id is not None:
                from sparsetune.tracking.registry import download_final_ticket

                path = download_final_ticket(run_id, uri, Path(scratch))
            ticket = read_ticket(path)  # reads the tensors into memory: scratch may go
            exported = encode(ticket, format)
        except ValueError as error:
            raise BadInput(str(error)) from None

    registration = None
    if register:
        from mlflow.exceptions import MlflowException

        from sparsetune.tracking.registry import register_model

        try:
            registration = register_model(
                exported.model, name=register, tracking_uri=uri, info=exported.info, run_id=run_id
            )
        except MlflowException as error:
            message = str(error.message).strip().splitlines()[0]
            raise BadInput(f"--register {register}: {message}") from None
    exported.write(out)  # last: any refusal above leaves nothing behind

    info = exported.info
    summary = {
        "out": str(out),
        "format": format,
        "bytes": exported.size,
        "compression": info.get("compression"),
        "architecture": info.get("architecture"),
        "parameters": sum(p.numel() for p in exported.model.parameters()),
        "model": info["model"],
        "source": str(ticket.path) if run_id is None else f"run {run_id} {ticket.path.name}",
        "registered": None,
    }
    if registration is not None:
        summary["registered"] = {
            "name": registration.name,
            "version": registration.version,
            "run_id": registration.run_id,
            "model_uri": registration.model_uri,
        }
    if json_output:
        print(json.dumps(summary, default=str))
        return
    compression = summary["compression"]
    print(
        f"wrote {out}: {format}, {summary['bytes']:,} bytes, {summary['parameters']:,} "
        f"parameters, compression {compression:.1f}x, architecture {summary['architecture']} "
        f"(from {summary['source']})"
        if isinstance(compression, (int, float))
        else f"wrote {out}: {format}, {summary['bytes']:,} bytes (from {summary['source']})"
    )
    if registration is not None:
        print(
            f"registered {registration.name!r} version {registration.version} (run "
            f"{registration.run_id}); load it with mlflow.pytorch.load_model"
            f"({registration.model_uri!r})"
        )


def _checked_out_file(path: Path, option: str = "--out") -> Path:
    """A file path whose folder exists or can be created, and can be written; nothing created."""
    path = path.expanduser().resolve()
    if path.is_dir():
        raise BadInput(
            f"{option} {path}: is a folder; pass a file path, e.g. {path / 'model.safetensors'}"
        )
    _check_can_create(path, option, "pass a path in a folder you can write")
    return path


# -- input checks: each raises BadInput with one line -------------------------------------


def _validated(model_class, values: dict):
    from pydantic import ValidationError

    from sparsetune.validation import describe_validation_error

    try:
        return model_class.model_validate(values)
    except ValidationError as error:
        message = describe_validation_error(error)
        if message.startswith("--"):  # a check across options names its options itself
            raise BadInput(message) from None
        field, colon, problem = message.partition(":")
        raise BadInput(f"--{field.replace('_', '-')}{colon}{problem}") from None


def _sweep_to_run(given: dict, resume: Path | None):
    """(the sweep to run, the state of the unfinished sweep it continues or None).

    `--resume DIR` runs the sweep recorded in DIR with its recorded options; `search` with an
    `--out` that holds an unfinished sweep continues it too (the same command run again after a
    kill). A finished sweep is not run again: (None, None), said on stderr."""
    from sparsetune.search.options import SweepConfig
    from sparsetune.search.state import STATE_FILE, read_state

    if resume is None:
        if given.get("model") is None:
            raise BadInput(
                "Missing option '--model' (or --resume DIR, to continue a sweep); "
                "see 'sparsetune search --help'"
            )
        sweep = _validated(SweepConfig, {k: v for k, v in given.items() if v is not None})
        folder, option = sweep.sweep_dir, "--out"
    else:
        folder, option = resume.expanduser().resolve(), "--resume"
    try:
        state = read_state(folder) if folder.is_dir() else None
    except ValueError as error:
        raise BadInput(f"{option} {folder}: {error}") from None
    if resume is not None:
        if state is None:
            raise BadInput(
                f"--resume {folder}: no {STATE_FILE} there; pass the --out folder of a sweep "
                "that `sparsetune search` started"
            )
        if given.get("model") not in (None, state.config.get("model")):
            raise BadInput(
                f"--resume {folder}: its sweep is of --model {state.config.get('model')}, not "
                f"{given['model']}; drop --model, or pass another folder"
            )
        sweep = _validated(SweepConfig, {**state.config, "out": str(folder)})
    if state is None:
        return sweep, None
    if state.status == "finished":
        print(
            f"sparsetune: the sweep in {folder} has finished; nothing to do (results in "
            f"{folder / 'pareto.json'}); pass another --out for a new sweep",
            file=sys.stderr,
        )
        return None, None
    return sweep, state


def _check_same_sweep(state, sweep, space, resume: Path | None) -> None:
    """A sweep continued with other options would mix trials of two sweeps in one record."""
    changed = state.differences(sweep, space)
    if changed:
        folder = sweep.sweep_dir
        fix = "restore them" if resume else f"pass the same options, --resume {folder},"
        raise BadInput(
            f"--out {folder}: holds an unfinished sweep whose {', '.join(changed)} differ "
            f"from these; {fix} or pass another --out for a new sweep"
        )


def _checked_enqueue(sweep, space) -> list[dict] | None:
    if sweep.enqueue is None:
        return None
    from sparsetune.search.enqueue import enqueue_path, load_points

    try:
        loaded = load_points(enqueue_path(sweep.enqueue), space, sweep.model)
    except ValueError as error:
        raise BadInput(str(error)) from None
    if loaded.skipped:
        print(
            f"--enqueue: skipped {len(loaded.skipped)}: {'; '.join(loaded.skipped)}",
            file=sys.stderr,
        )
    return loaded.points


def _checked_space(sweep):
    from sparsetune.search.space import default_space_path, load_space

    path = sweep.space or default_space_path(sweep.model)
    try:
        return load_space(path, sweep.methods)
    except ValueError as error:
        raise BadInput(str(error)) from None


def _send_cluster_token_if_present() -> None:
    """A cluster started with token authentication (RAY_AUTH_MODE=token on `ray start`) only
    accepts drivers that send its token, and Ray's driver sends one only in token mode. So when
    a token is at hand (Ray's own places for it) token mode is turned on; an explicit
    RAY_AUTH_MODE wins. Ray reads this when it is imported, hence before the import."""
    token_file = os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token"
    if os.environ.get("RAY_AUTH_TOKEN") or Path(token_file).is_file():
        os.environ.setdefault("RAY_AUTH_MODE", "token")


def _checked_gpus(sweep) -> None:
    """GPUs per trial on a local Ray need a GPU here; a cluster's may be on other nodes."""
    if not sweep.gpus_per_trial or sweep.address:
        return
    import torch

    if not torch.cuda.is_available():
        raise BadInput(
            f"--gpus-per-trial {sweep.gpus_per_trial:g}: no CUDA device is visible here; run "
            "without it, or join a cluster with GPUs with --address (docs/cluster.md)"
        )


def _checked_cluster(address: str) -> None:
    """A head answers at `address` (auto: RAY_ADDRESS, else a cluster started on this machine),
    checked before anything is written. Ray's own refusal comes later and as a traceback."""
    import socket

    where = address
    if address == "auto":
        from ray._private.services import get_ray_address_from_environment

        try:
            where = get_ray_address_from_environment("auto", None)
        except ConnectionError:
            raise BadInput(
                "--address auto: no running Ray cluster found (RAY_ADDRESS is unset and none "
                "was started on this machine); start one with `ray start --head` or pass "
                "HOST:PORT (docs/cluster.md)"
            ) from None
    client = where.startswith("ray://")
    host, _, port = where.removeprefix("ray://").rpartition(":")
    if "://" in host or not port.isdigit():  # a form Ray resolves itself: leave it to Ray
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=10):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        server = "Ray Client server" if client else "Ray head"
        start = (
            "`ray start --head` (its client server listens on --ray-client-server-port, 10001 "
            "by default)"
            if client
            else "`ray start --head --port PORT`"
        )
        raise BadInput(
            f"--address {address}: no {server} answers at {host}:{port} ({reason}); start one "
            f"with {start} or check the address (docs/cluster.md)"
        ) from None


def _checked_data(sweep):
    from sparsetune.data import load_splits

    try:
        return load_splits(sweep.data_config())
    except ValueError as error:
        raise BadInput(str(error)) from None


def _checked_device(device: str) -> None:
    from sparsetune.trial import resolve_device

    try:
        resolve_device(device)
    except ValueError as error:
        raise BadInput(f"--{error}") from None


def _check_writable(path: Path, option: str) -> None:
    """The folder can be created and written, without creating it now."""
    if path.exists() and not path.is_dir():
        raise BadInput(f"{option} {path}: exists and is not a folder; pass a folder path")
    _check_can_create(path, option, f"pass {option} to a folder you can write")


def _check_can_create(path: Path, option: str, fix: str) -> None:
    """`path` (a file or a folder, not there yet or there) can be created and written: its
    nearest existing ancestor is a folder this process can write in. Nothing is created."""
    ancestor = path if path.is_dir() else path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise BadInput(f"{option} {path}: {ancestor} is a file, not a folder; pass another path")
    try:  # os.access says yes to root everywhere; a real probe file tells the truth
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as error:
        raise BadInput(
            f"{option} {path}: cannot write in {ancestor} ({error.strerror}); {fix}"
        ) from None


def _fail(message: str) -> NoReturn:
    print(f"sparsetune: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


def main(argv: list[str] | None = None) -> int:
    # Ray's new console output ignores verbose=0 and prints an experiment box and a TensorBoard
    # hint; the classic output honours it, leaving sparsetune's own progress lines.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="sparsetune", standalone_mode=False)
    except BadInput as error:
        _fail(str(error))
    except typer.TyperException as error:  # typer's (vendored click's) usage errors
        context = getattr(error, "ctx", None)
        if type(error).__name__ == "NoArgsIsHelpError" and context is not None:
            print(context.get_help())
            return EXIT_BAD_INPUT
        message = error.format_message().replace("\n", " ").rstrip(".")
        command = context.command_path if context is not None else "sparsetune"
        _fail(f"{message}; see '{command} --help'")
    except typer.Abort:
        print("sparsetune: interrupted", file=sys.stderr)
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
