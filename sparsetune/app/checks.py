"""Checks of user input, each raising `BadInput` with one line that names the option and the fix.

They run before anything is written: each command calls the ones it needs before it creates its
first file, folder or MLflow run. Heavy libraries are imported inside the check that needs them.
"""

from __future__ import annotations

import math
import os
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from sparsetune.app.errors import BadInput
from sparsetune.validation import PathKind, check_path_kind, describe_validation_error

if TYPE_CHECKING:
    from sparsetune.config import TrainConfig
    from sparsetune.data import Splits
    from sparsetune.search.options import SweepConfig
    from sparsetune.search.space import SearchSpace

Options = TypeVar("Options", bound=BaseModel)


def flag(field: str) -> str:
    """The command-line flag of an option field: `val_size` -> `--val-size`."""
    return "--" + field.replace("_", "-")


def validated(model_class: type[Options], values: dict[str, Any]) -> Options:
    """`values` as `model_class`; a bad value is BadInput naming its flag."""
    try:
        return model_class.model_validate(values)
    except ValidationError as error:
        message = describe_validation_error(error)
        if message.startswith("--"):  # a check across options names its options itself
            raise BadInput(message) from None
        field, colon, problem = message.partition(":")
        raise BadInput(f"{flag(field)}{colon}{problem}") from None


def checked_space(sweep: SweepConfig, notes: list[str]) -> SearchSpace:
    """The sweep's search space (`--space`, else the model's built-in one), validated. A model
    without a built-in space gets one generated from its prunable layers for the sweep's data
    (which this loads), and a line that says so appended to `notes`: the caller says them once
    every check has passed, so that a refusal stays one line."""
    from sparsetune.search.space import default_space_path, load_space

    path = sweep.space or default_space_path(sweep.model)
    if sweep.space is None and not path.is_file():
        from sparsetune.search.generated_space import generate_space
        from sparsetune.search.options import is_ray_client

        try:
            splits = checked_data(sweep)
        except BadInput as error:
            if not is_ray_client(sweep.address):
                raise
            raise BadInput(
                f"{error}; {sweep.model} has no built-in space, and one is generated from the data "
                "read here: write it where the data is, `sparsetune space --model "
                f"{sweep.model} --dataset {sweep.dataset} > space.yaml`, and pass --space"
            ) from None
        try:
            generated = generate_space(
                sweep.model, splits.input_shape, splits.num_classes, sweep.methods
            )
        except ValueError as error:
            raise BadInput(str(error)) from None
        notes.append(f"space: {generated.note(sweep.dataset)}")
        return generated.space
    try:
        return load_space(path, sweep.methods)
    except ValueError as error:
        raise BadInput(str(error)) from None


def checked_enqueue(
    sweep: SweepConfig, space: SearchSpace, notes: list[str]
) -> list[dict[str, Any]] | None:
    """The `--enqueue` points that fit the space (those of other methods skipped, with a line
    that says so appended to `notes`); for `auto`, the papers' points that fit
    (`search.enqueue.auto_points`)."""
    from sparsetune.search.enqueue import AUTO, NONE, auto_points, enqueue_path, load_points

    if sweep.enqueue == NONE:
        return None
    dense = dense_stage(sweep, space)

    def fits(where: str, method: str, params: dict[str, Any]) -> None:
        if dense is not None:
            check_params_fit(f"{where}: ", method, params, dense)

    if sweep.enqueue == AUTO:
        return auto_points(space, sweep.model, sweep.trials, check=fits).points or None
    try:
        loaded = load_points(enqueue_path(sweep.enqueue), space, sweep.model, check=fits)
    except ValueError as error:
        raise BadInput(str(error)) from None
    if loaded.skipped:
        notes.append(f"--enqueue: skipped {len(loaded.skipped)}: {'; '.join(loaded.skipped)}")
    return loaded.points


def checked_data(sweep: SweepConfig) -> Splits:
    """The sweep's data, loaded (and downloaded where allowed): a missing dataset is bad input."""
    from sparsetune.data import load_splits

    try:
        return load_splits(sweep.data_config())
    except ValueError as error:
        raise BadInput(str(error)) from None


def check_device(device: str) -> None:
    from sparsetune.trial import resolve_device

    try:
        resolve_device(device)
    except ValueError as error:
        raise BadInput(f"--{error}") from None


def check_resources(sweep: SweepConfig) -> None:
    """One trial's `--cpus-per-trial` and `--gpus-per-trial` fit one machine: this one for a
    local Ray (sized as `search.local_ray` sizes it: every CPU, the GPUs unless --device
    cpu), else the largest live node of the `--address` cluster (joined after `check_cluster`).
    Ray would otherwise queue the trials for a placement it can never make, a silent hang.
    Under Ray Client the cluster's scheduler answers for itself."""
    from sparsetune.search.options import is_ray_client

    if is_ray_client(sweep.address):
        return
    if sweep.address:
        cpus, gpus = _largest_node(sweep.address)
        where = f"the largest node of the cluster at {sweep.address} has"
        fix = "ask for at most that, or add a larger node"
    else:
        cpus = float(os.cpu_count() or 1)
        gpus = 0.0
        if sweep.gpus_per_trial and sweep.device != "cpu":
            import torch

            gpus = float(torch.cuda.device_count())
        where = "this machine has"
        fix = "ask for at most that, or join a larger cluster with --address (docs/cluster.md)"
    if sweep.cpus_per_trial > cpus:
        raise BadInput(
            f"--cpus-per-trial {sweep.cpus_per_trial:g}: {where} {cpus:g} CPUs, and Ray would "
            f"wait for ever to place a trial; {fix}"
        )
    wanted = sweep.gpus_per_trial or 0
    if wanted and not gpus and not sweep.address:
        raise BadInput(
            f"--gpus-per-trial {wanted:g}: no CUDA device is visible here; run without it, or "
            "join a cluster with GPUs with --address (docs/cluster.md)"
        )
    if wanted > gpus:
        raise BadInput(
            f"--gpus-per-trial {wanted:g}: {where} {gpus:g} GPUs, and Ray would wait for ever to "
            f"place a trial; {fix}"
        )


def _largest_node(address: str) -> tuple[float, float]:
    """(CPUs, GPUs) of the largest live node of the cluster at `address`, each the most any one
    node has: a trial runs on one node. Joins the cluster for the question and leaves it (a
    Ray this process had joined already is asked and left alone)."""
    import ray

    joined = not ray.is_initialized()
    try:
        if joined:
            ray.init(
                address=address, log_to_driver=False, logging_level="ERROR", configure_logging=True
            )
        nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    except Exception as error:  # Ray's refusal (version, token): one line, not its trace
        problem = (str(error).strip().splitlines() or [""])[0][:200]
        raise BadInput(
            f"--address {address}: cannot join the cluster ({type(error).__name__}: {problem}); "
            "check the address and that the cluster runs this Ray version (docs/cluster.md)"
        ) from None
    finally:
        if joined and ray.is_initialized():
            ray.shutdown()
    cpus = max((node.get("CPU", 0.0) for node in nodes), default=0.0)
    return cpus, max((node.get("GPU", 0.0) for node in nodes), default=0.0)


def check_cluster(address: str) -> None:
    """A head answers at `address` (auto: RAY_ADDRESS, else a cluster started on this machine),
    checked before anything is written. Ray's own refusal comes later and as a traceback."""
    where = address
    if address == "auto":
        from sparsetune.search.private_api import ray_address_from_environment

        try:
            where = ray_address_from_environment("auto")
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


def check_kind(path: Path, expected: PathKind, option: str) -> None:
    """`path` is a regular file or a folder as `expected`, or not there yet and creatable
    (`validation.check_path_kind`, the one check of path kinds); BadInput naming `option`."""
    try:
        check_path_kind(path, expected, option)
    except ValueError as error:
        raise BadInput(str(error)) from None


def check_writable(path: Path, option: str) -> None:
    """The folder can be created and written, without creating it now."""
    check_kind(path, "folder", option)
    check_can_create(path, option, f"pass {option} to a folder you can write")


def checked_out_file(path: Path, option: str = "--out") -> Path:
    """A file path whose folder exists or can be created, and can be written; nothing created.
    An existing path must be a regular file: never a folder, a FIFO or a device."""
    path = path.expanduser().resolve()
    if path.is_dir():
        raise BadInput(
            f"{option} {path}: is a folder; pass a file path, e.g. {path / 'model.safetensors'}"
        )
    check_kind(path, "file", option)
    check_can_create(path, option, "pass a path in a folder you can write")
    return path


def check_stores(cache_dir: Path, tracking_uri: str | None) -> None:
    """Where a run writes besides its folder can be written: the dense cache (`--cache-dir`)
    and the MLflow store of `--tracking-uri` (a SQLite file, which must be one if it exists;
    a file store's folder). A server's URI is left to the server. Nothing is created."""
    from sparsetune.search.options import sqlite_file

    check_writable(cache_dir, "--cache-dir")
    if tracking_uri is None:
        return
    database = sqlite_file(tracking_uri)
    if database is None:
        if Path(tracking_uri).is_absolute():  # a file store's folder (MLFLOW_ALLOW_FILE_STORE)
            check_writable(Path(tracking_uri), "--tracking-uri")
        return
    option = f"--tracking-uri {tracking_uri}"
    check_kind(database, "file", "--tracking-uri")
    check_can_create(database, "--tracking-uri", "pass sqlite:///PATH in a folder you can write")
    if not database.exists():
        return
    if not os.access(database, os.R_OK | os.W_OK):
        raise BadInput(f"{option}: cannot write {database}; pass a database file you can write")
    with database.open("rb") as handle:
        header = handle.read(len(SQLITE_HEADER))
    if header and header != SQLITE_HEADER:
        raise BadInput(
            f"{option}: {database} is not an SQLite database; pass a new file or an MLflow one"
        )


SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite 3 database


def check_can_create(path: Path, option: str, fix: str) -> None:
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


def check_model(model: str, splits: Splits, weights: Path | None = None) -> None:
    """`--model` builds, takes one batch of the data on the CPU and answers with one score per
    class of the data; with `weights`, the file loads into it (`--weights`). Run before anything
    is written: a model that does not fit the data fails here, not after the dense stage."""
    import torch

    from sparsetune.models import build_model

    try:
        built = build_model(model, splits.input_shape, splits.num_classes)
    except ValueError as error:
        problem, prefix = str(error), f"model {model!r}"
        if problem.startswith(prefix):  # build_model names the model too: say it once
            problem = problem.removeprefix(prefix).removeprefix(":").strip()
        raise BadInput(f"--model {model}: {problem}") from None
    _check_prunable(model, built)
    if weights is not None:
        from sparsetune.models.weights import load_weights

        try:
            load_weights(built, weights)
        except ValueError as error:
            raise BadInput(f"--weights {weights}: {error}") from None
    batch = _first_inputs(splits)
    try:
        with torch.no_grad():
            output = built.eval()(batch)
    except Exception as error:  # the model's own code refused the input: one line, not a trace
        problem = (str(error).strip().splitlines() or [""])[0]
        raise BadInput(
            f"--model {model}: it cannot take the data's input of shape "
            f"{tuple(splits.input_shape)} ({type(error).__name__}: {problem}); pick a model built "
            "for this input, or data of the shape the model expects"
        ) from None
    if not isinstance(output, torch.Tensor) or output.dim() < 1:
        raise BadInput(
            f"--model {model}: its output is a {type(output).__name__}, not a tensor of class "
            "scores; return one score per class from forward()"
        )
    if output.shape[-1] != splits.num_classes:
        raise BadInput(
            f"--model {model}: its output has {output.shape[-1]} classes, the data has "
            f"{splits.num_classes}; give the factory a num_classes argument (sparsetune passes "
            "it) or make its last layer output that many"
        )


def _check_prunable(model: str, built: Any) -> None:
    """A model with nothing to prune has no compression to report (it would be 0/0: "infx",
    and Infinity in the result files): refused, naming what sparsetune prunes."""
    from sparsetune.pruning.masking import prunable_parameters

    names = prunable_parameters(built)
    if sum(built.get_parameter(name).numel() for name in names) == 0:
        what = (
            f"its {len(names)} Linear or Conv layer(s) have empty weights"
            if names
            else "it has no Linear or Conv layer"
        )
        raise BadInput(
            f"--model {model}: {what}, so nothing to prune; point --model at a network with "
            "such layers (sparsetune prunes their weights)"
        )


def _first_inputs(splits: Splits) -> Any:
    """Two examples of the training data (two: BatchNorm would refuse a batch of one in some
    models), on the CPU."""
    train = splits.train
    if hasattr(train, "x"):
        return train.x[:2].cpu()
    import torch

    return torch.stack([train[index][0] for index in range(min(2, len(train)))]).cpu()


@dataclass(frozen=True)
class DenseStage:
    """What a run's dense stage will hold, known before it trains: its optimiser steps (None
    under `--weights`, which skips the training) and so the rewind points theta_j it keeps
    (`train.dense_cache.rewind_points`)."""

    steps: int | None
    steps_per_epoch: int
    how: str  # in words, for messages: "1 epoch x 34 batches of 60: 34 steps"

    @classmethod
    def of(cls, train: TrainConfig, train_size: int, weights: Path | None = None) -> DenseStage:
        from sparsetune.train.dense_cache import dense_steps

        if weights is not None:
            return cls(None, 0, "--weights skips the dense training that makes theta_j, j > 0")
        per_epoch = dense_steps(train_size, train.batch_size, 1)
        steps = dense_steps(train_size, train.batch_size, train.epochs)
        epochs = f"{train.epochs} epoch{'s' if train.epochs != 1 else ''}"
        how = (
            f"the dense stage trains {epochs} x {per_epoch} batches of {train.batch_size} "
            f"({train_size} training examples): {steps} steps"
        )
        return cls(steps, per_epoch, how)

    @property
    def rewind_points(self) -> tuple[int, ...]:
        from sparsetune.train.dense_cache import rewind_points

        return rewind_points(self.steps)

    def reason(self, knob: str, values: list[Any]) -> str:
        """Why `values` of `knob` cannot run here, and what length of dense stage would allow
        them: one clause for a message."""
        kept = ", ".join(str(j) for j in self.rewind_points)
        if self.steps is None:
            return f"{self.how} (it has theta_0 only)"
        epochs = math.ceil(max(values) / self.steps_per_epoch) if self.steps_per_epoch else 0
        return (
            f"{self.how}, so theta_j exists for j = {kept} only ({knob} {max(values)} needs "
            f"--epochs {epochs} or more)"
        )


# The method knobs whose possible values depend on the run (model, data, dense stage), not only
# on the method's Config: name -> the values this run allows. A knob of any method, as the
# search layer sees it: `rewind_iteration` is lottery's, and any method's that rewinds.
RUN_LIMITED_KNOBS: dict[str, Callable[[DenseStage], tuple[Any, ...]]] = {
    "rewind_iteration": lambda dense: dense.rewind_points,
}


def dense_stage(sweep: SweepConfig, space: SearchSpace) -> DenseStage | None:
    """The dense stage of the sweep over `space` (its `train:` recipe, `--epochs` applied, on
    the training split after `--subset` and `--val-size`), from the data loaded here; None
    under Ray Client, whose data is the cluster's."""
    from sparsetune.search.options import is_ray_client

    if sweep.weights is not None:
        return DenseStage.of(space.train, 0, sweep.weights)
    if is_ray_client(sweep.address):
        return None
    train = space.train
    if sweep.epochs is not None:  # as `search.sweep.dense_recipe` applies it
        train = train.model_copy(update={"epochs": sweep.epochs})
    return DenseStage.of(train, len(checked_data(sweep).train))


def space_for_run(
    sweep: SweepConfig, space: SearchSpace, notes: list[str] | None = None
) -> SearchSpace:
    """`space` narrowed to what this run can give (`narrowed_space` on the sweep's
    `dense_stage`): a knob's choices that no trial could run with are left out, and the line
    that says so appended to `notes` (for the caller to print once every check has passed); a
    space that fixes one is refused."""
    dense = dense_stage(sweep, space)
    if dense is None:
        return space
    narrowed, note = narrowed_space(space, dense)
    if note and notes is not None:
        notes.append(note)
    return narrowed


def narrowed_space(space: SearchSpace, dense: DenseStage) -> tuple[SearchSpace, str | None]:
    """(`space` with every run-limited knob (`RUN_LIMITED_KNOBS`) kept to the values `dense`
    allows, one line naming what was dropped and why, or None). Choices outside the allowed
    values are dropped (a single one left becomes a fixed value), an integer range becomes the
    allowed values inside it. A fixed value, or choices or a range with no allowed value left,
    is BadInput. The same options narrow the same way, so a resumed sweep's space (and
    identity) is the one it started with."""
    from sparsetune.search.space import ParamSpec

    methods = dict(space.methods)
    dropped = []
    for method, params in space.methods.items():
        for knob, spec in params.items():
            if knob not in RUN_LIMITED_KNOBS:
                continue
            allowed = RUN_LIMITED_KNOBS[knob](dense)
            if spec.value is not None:
                if spec.value not in allowed:
                    raise BadInput(
                        f"--space: the space fixes {method}'s {knob} at {spec.value}, and "
                        f"{dense.reason(knob, [spec.value])}; set {knob}: one of "
                        f"{', '.join(map(str, allowed))} for {method} in --space"
                    )
                continue
            if spec.choices is not None:
                kept = [value for value in spec.choices if value in allowed]
                gone = [value for value in spec.choices if value not in allowed]
                asked = ", ".join(map(str, spec.choices))
            else:  # a range would sample values between the allowed ones: only those can run
                assert spec.low is not None and spec.high is not None
                kept = [value for value in allowed if spec.low <= value <= spec.high]
                high = int(spec.high) if spec.integer else spec.high
                gone = [high] if high not in kept else []
                asked = f"in [{spec.low:g}, {spec.high:g}]"
            if not kept:
                raise BadInput(
                    f"--space: the space gives {method}'s {knob} {asked}, and "
                    f"{dense.reason(knob, gone or kept)}; allow one of "
                    f"{', '.join(map(str, allowed))} for {method} in --space"
                )
            if spec.choices is not None and not gone:
                continue
            narrowed = (
                ParamSpec(value=kept[0], when=spec.when)
                if len(kept) == 1
                else ParamSpec(choices=kept, when=spec.when)
            )
            methods[method] = {**methods[method], knob: narrowed}
            if gone:
                dropped.append(
                    f"{method}.{knob} {', '.join(map(str, gone))} left out: "
                    f"{dense.reason(knob, gone)}"
                )
    note = f"space: {'; '.join(dropped)}" if dropped else None
    return space.model_copy(update={"methods": methods}), note


def check_params_fit(where: str, method: str, params: dict[str, Any], dense: DenseStage) -> None:
    """The method's parameters (`params`, by knob) can run on this `dense` stage: a
    run-limited knob (`RUN_LIMITED_KNOBS`) at a value it cannot give is BadInput, starting
    with `where` (the option that gave the value)."""
    for knob, limit in RUN_LIMITED_KNOBS.items():
        value = params.get(knob)
        allowed = limit(dense)
        if value is not None and value not in allowed:
            raise BadInput(
                f"{where}{method} {knob} {value}: {dense.reason(knob, [value])}; pick one of "
                f"{', '.join(map(str, allowed))}"
            )
