"""The `sparsetune` command. Each subcommand imports its heavy parts inside its body, so
`sparsetune --help` and input errors answer at once.

Bad input gets one line on stderr naming the problem and the fix, exit code 2, and nothing is
written: every check runs before the sweep folder or an MLflow run is created.
"""

from __future__ import annotations

import os
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


class BadInput(Exception):
    """A user error: reported as one line, exit code 2."""


@app.callback()
def _root() -> None:
    """Hyperparameter search for sparse neural networks (Ray Tune, Optuna, MLflow)."""


@app.command()
def search(
    model: Annotated[str, typer.Option(help="model name: lenet300, lenet5")],
    objective: Annotated[str, typer.Option(help="what to maximise: pareto")] = "pareto",
    dataset: Annotated[str, typer.Option(help="mnist, fashion-mnist or synthetic")] = (
        "fashion-mnist"
    ),
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
        str | None, typer.Option(help="join this Ray cluster (default: start a local one)")
    ] = None,
) -> None:
    """Search pruning methods and their knobs; print and save the Pareto front."""
    from rich.console import Console

    from sparsetune.config import SweepConfig

    given = {
        "model": model,
        "objective": objective,
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
    }
    sweep = _validated(SweepConfig, {k: v for k, v in given.items() if v is not None})
    space_model = _checked_space(sweep)
    _check_writable(sweep.sweep_dir, "--out")
    splits = _checked_data(sweep)
    _checked_device(sweep.device)

    if sweep.address:
        _send_cluster_token_if_present()
    from sparsetune.search.sweep import prepare_dense, run_sweep
    from sparsetune.train.loop import TrainingDiverged

    # A table printed to a file or a pipe is read later, not in an 80-column terminal.
    width = None if sys.stdout.isatty() else 160
    progress = Console(stderr=True, width=width)
    try:
        dense = prepare_dense(sweep, space_model, splits, progress)
    except TrainingDiverged as error:
        raise BadInput(f"the dense stage diverged ({error}); lower train.lr in the space") from None
    outcome = run_sweep(sweep, space_model, dense, progress)

    from sparsetune.report.tables import pareto_table

    console = Console(width=width)
    console.print(pareto_table(outcome.front, title=f"Pareto front: {sweep.experiment_name}"))
    console.print(
        f"{len(outcome.front)} front points, {len(outcome.failures)} failed trials\n"
        f"results: {outcome.sweep_dir / 'pareto.json'}, {outcome.sweep_dir / 'trials.csv'}\n"
        f"MLflow:  {outcome.tracking_uri} (experiment {sweep.experiment_name!r}; "
        f"mlflow ui --backend-store-uri {outcome.tracking_uri})",
        highlight=False,
    )


# -- input checks: each raises BadInput with one line -------------------------------------


def _validated(model_class, values: dict):
    from pydantic import ValidationError

    from sparsetune.config import describe_validation_error

    try:
        return model_class.model_validate(values)
    except ValidationError as error:
        raise BadInput("--" + describe_validation_error(error).replace("_", "-", 1)) from None


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
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise BadInput(f"{option} {path}: {ancestor} is a file, not a folder; pass another path")
    try:  # os.access says yes to root everywhere; a real probe file tells the truth
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as error:
        raise BadInput(
            f"{option} {path}: cannot write in {ancestor} ({error.strerror}); "
            f"pass {option} to a folder you can write"
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
