"""The sweep driver: Ray Tune runs the trials, Optuna chooses them, MLflow records them.

Order of events: train (or find) the shared dense model once (`prepare_dense`); then `run_sweep`
resolves the strategy, opens the sweep's records (state file, MLflow parent run: `records.py`),
builds the searcher (`searcher.py`), runs the Tuner (`tuner.py`), and at the end computes the
front over every (trial, round), writes `pareto.json` and `trials.csv`, attaches them to the
parent run and adds what a reviewer opens first (`records.record_review`). Input is validated
before this module is called; nothing here is reached with a bad config.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.stopper import Stopper
from rich.console import Console

from sparsetune.config import TrainConfig, TrialConfig
from sparsetune.data import load_splits
from sparsetune.data.shared import splits_payload
from sparsetune.data.tensors import Splits
from sparsetune.identity import dense_key
from sparsetune.pruning import METHODS
from sparsetune.search import private_api, session
from sparsetune.search.choices import resolve_early_stop, resolve_sampler
from sparsetune.search.hypervolume import describe_axes
from sparsetune.search.interrupt import StopSignals, SweepAborted
from sparsetune.search.local_ray import stop_ray, trial_slots
from sparsetune.search.objectives import Objective, resolve_objective
from sparsetune.search.options import SweepConfig
from sparsetune.search.progress import SweepProgress
from sparsetune.search.records import (
    SweepEnd,
    SweepRecords,
    drop_lost_child_runs,
    log_results,
    open_records,
    record_review,
    write_results,
)
from sparsetune.search.samplers import make_sampler
from sparsetune.search.searcher import DefineByRun, SweepSearch
from sparsetune.search.space import SearchSpace
from sparsetune.search.state import SweepState
from sparsetune.search.stopping import (
    BudgetStopper,
    DominanceStopper,
    EpochBudget,
    asha,
    epochs_spent,
)
from sparsetune.search.trainable import TrialTemplate, sparsetune_trial
from sparsetune.search.tuner import (
    TunerEnd,
    TunerPlan,
    cluster_line,
    run_tuner,
    start_ray,
)
from sparsetune.train.dense_cache import CachedDense, DenseCache
from sparsetune.train.loop import EpochDone
from sparsetune.trial import resolve_device, train_dense


@dataclass(frozen=True)
class SweepOutcome:
    sweep_dir: Path
    front: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    failures: dict[str, str]
    parent_run_id: str | None
    tracking_uri: str
    objective: Objective
    hypervolume: float
    budget_spent: bool
    epochs_spent: int = 0  # training epochs of the trials, the dense stage excluded


def dense_recipe(sweep: SweepConfig, space: SearchSpace) -> TrainConfig:
    """The space's dense recipe, with `--epochs` applied."""
    if sweep.epochs is None:
        return space.train
    return space.train.model_copy(update={"epochs": sweep.epochs})


def prepare_dense(
    sweep: SweepConfig, space: SearchSpace, splits: Splits, console: Console
) -> CachedDense:
    """Train (or find) the sweep's dense model once, on the driver, with all its cores, before
    any trial starts: no trial then waits on the cache lock holding a CPU it does not use.
    Raises TrainingDiverged before anything is written when the recipe diverges."""
    train = dense_recipe(sweep, space)
    config = TrialConfig(
        model=sweep.model,
        data=sweep.data_config(),
        train=train,
        method="dense",
        seed=sweep.seed,
        device=sweep.device,
        weights=sweep.weights,
    )
    key = dense_key(config)
    how = f"{train.epochs} epochs" if sweep.weights is None else f"from --weights {sweep.weights}"
    console.print(
        f"dense stage: {sweep.model} on {sweep.dataset}, {how} (cache key {key})",
        highlight=False,
    )
    if sweep.weights is not None:
        from sparsetune.models.weights import initialisation_note

        for method in space.method_names:
            console.print(
                f"under --weights, {method} {initialisation_note(method)}", highlight=False
            )

    def say_epoch(phase: str, done: EpochDone) -> None:
        if done.finished:  # a line an epoch: the sweep's log is read later, not watched
            console.print(f"{phase}: {done.describe()}", highlight=False)

    device = resolve_device(sweep.device)
    dense = DenseCache(sweep.cache_dir).get_or_train(
        key, lambda: train_dense(config, splits.to(device), device, on_epoch=say_epoch)
    )
    source = "trained now" if dense.trained_here else "from cache"
    console.print(
        f"dense model: val_acc {dense.checkpoint.metrics['val_acc']:.4f} ({source})",
        highlight=False,
    )
    return dense


@dataclass(frozen=True)
class Strategy:
    """How the sweep searches: the resolved objective, sampler and early stop (see choices.py)."""

    objective: Objective
    sampler: str
    early_stop: str
    deadline: float | None  # time.time() at which the budget is spent

    @classmethod
    def resolve(
        cls, sweep: SweepConfig, space: SearchSpace, dense: CachedDense, num_classes: int
    ) -> Strategy:
        objective = resolve_objective(
            sweep.objective,
            min_compression=sweep.min_compression,
            max_drop=sweep.max_drop,
            dense_val_acc=dense.checkpoint.metrics["val_acc"],
            num_classes=num_classes,
        )
        sampler = resolve_sampler(
            sweep.sampler, objective, conditional=space.is_conditional, trials=sweep.trials
        )
        budget = sweep.budget_minutes
        deadline = time.time() + 60 * budget if budget is not None else None
        return cls(objective, sampler, resolve_early_stop(sweep.early_stop, objective), deadline)

    def describe(self, enqueued: list[dict[str, Any]] | None) -> str:
        """One line for the console when the sweep starts."""
        objective = self.objective
        return (
            f"objective {objective.name}"
            + (f" ({objective.bound.description})" if objective.bound else "")
            + (f", front above {objective.floor.description}" if objective.floor else "")
            + f", sampler {self.sampler}, early stop {self.early_stop}"
            + (
                f", {len(enqueued)} enqueued point{'s' * (len(enqueued) != 1)} first"
                if enqueued
                else ""
            )
        )


def run_sweep(
    sweep: SweepConfig,
    space: SearchSpace,
    dense: CachedDense,
    console: Console,
    *,
    num_classes: int,
    enqueued: list[dict[str, Any]] | None = None,
    resume: SweepState | None = None,
    trial_gpus: float | None = None,
    stop: StopSignals | None = None,
    ray_started: bool = False,
) -> SweepOutcome:
    """Run the trials over the prepared dense model; write and record the results.

    `resume`: the state of an unfinished sweep in the same folder (the CLI has checked that it
    is the same sweep), which this call continues: see docs/resume.md. `trial_gpus`: GPUs per
    trial decided elsewhere (Ray Client: where the dense stage ran), instead of from
    `--gpus-per-trial` or this process's device. `stop`: the signals the caller holds
    (`interrupt.py`); a first one stops the Tuner with its state saved, writes what finished
    and raises `SweepInterrupted`, the sweep left resumable. `ray_started`: the caller has started
    this sweep's local Ray (`local_ray.started_early`), which the sweep takes as one it started:
    it stops it at its end."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "study created" says nothing to act on
    strategy = Strategy.resolve(sweep, space, dense, num_classes)
    stop = stop or StopSignals(sweep.sweep_dir, "", active=False)
    # Ray before the records: the driver imports their libraries while ray.init waits
    started_ray = ray_started or start_ray(sweep)
    in_session = session.active()  # sparsetune.session(): Ray is this process's, kept up
    stop.install()  # ray.init puts its own SIGTERM handler (sys.exit, then a C++ abort)
    ray_up = contextlib.ExitStack()  # closed once: after the Tuner, or on a failure before it
    if started_ray:
        ray_up.callback(stop_ray)
    with ray_up:
        if (not started_ray and not in_session) or sweep.address:
            console.print(cluster_line(), highlight=False)
        records = open_records(
            sweep,
            space,
            resume,
            console,
            parent_params=_parent_params(sweep, space, dense, strategy),
            parent_tags={"sparsetune.role": "sweep", "objective": strategy.objective.name},
        )
        console.print(strategy.describe(enqueued), highlight=False)
        template = _trial_template(sweep, space, records)
        key_params = {name: METHODS[name].key_params for name in space.method_names}
        progress = SweepProgress(strategy.objective, sweep.trials, console, key_params, num_classes)
        epochs = (
            EpochBudget(sweep.budget_epochs, template, progress) if sweep.budget_epochs else None
        )
        searcher = _searcher(
            sweep,
            space,
            strategy,
            template,
            records,
            enqueued,
            resumed=resume is not None,
            epochs=epochs,
        )
        study = private_api.searcher_study(searcher)
        if study is not None:  # what `sparsetune status` needs for the hypervolume mid-sweep
            study.set_user_attr("num_classes", num_classes)
        plan = TunerPlan(
            trainable=_trainable(sweep, template, trial_gpus),
            searcher=searcher,
            scheduler=asha(strategy.objective) if strategy.early_stop == "asha" else None,
            callbacks=[progress],
            stoppers=_stoppers(strategy, num_classes, progress),
            trials=sweep.trials,
            max_concurrent=sweep.max_concurrent,
            name=records.state.ray_name,
            storage=sweep.ray_storage(records.sweep_dir),
        )
        with stop.deferring():  # from here a first stop signal ends the Tuner, not the process
            tuner_end: TunerEnd | None = None
            aborted = False
            try:
                tuner_end = run_tuner(
                    plan,
                    resume=resume is not None,
                    # killed before Ray saved anything: nothing runs the study's RUNNING trials
                    fail_unsaved=lambda: searcher.fail_running_trials(
                        "the sweep was killed before Ray saved it"
                    ),
                    stop=stop,
                    own_ray=(started_ray and not sweep.address) or in_session,
                )
            except SweepAborted:  # a second signal: out at once, as a SIGKILL would leave it
                aborted = True
                raise
            finally:
                ray_up.close()
                if not aborted:
                    ended = _ENDS.get(tuner_end, "interrupted")  # None: run_tuner raised
                    outcome = _finish(
                        sweep,
                        records,
                        progress,
                        strategy,
                        dense,
                        ended,
                        resumed=resume is not None,
                        # a resumed sweep stopped before its Tuner restored the rows: keep files
                        write=tuner_end != "not started",
                    )
                    if in_session:  # after the results: booting workers would slow _finish
                        session.prepare_next_sweep(trial_slots(sweep))
    if ended == "interrupted":
        raise stop.stopped()
    return outcome


_ENDS: dict[TunerEnd | None, SweepEnd] = {None: "failed", "finished": "finished"}


def _parent_params(
    sweep: SweepConfig, space: SearchSpace, dense: CachedDense, strategy: Strategy
) -> dict[str, Any]:
    """The parameters a new MLflow parent run records: the sweep as asked and as resolved."""
    objective = strategy.objective
    return (
        {k: v for k, v in sweep.model_dump(mode="json").items() if v is not None}
        | {"space": space.source, "dense_key": dense.key}
        | {"dense_epochs": dense_recipe(sweep, space).epochs}
        | {"sampler_used": strategy.sampler, "early_stop_used": strategy.early_stop}
        | ({"constraint": objective.bound.description} if objective.bound else {})
    )


def _trial_template(sweep: SweepConfig, space: SearchSpace, records: SweepRecords) -> TrialTemplate:
    return TrialTemplate(
        model=sweep.model,
        data=sweep.data_config(),
        train=dense_recipe(sweep, space),
        seed=sweep.seed,
        device=sweep.device,
        threads=max(1, int(sweep.cpus_per_trial)),
        sweep_dir=records.sweep_dir,
        cache_dir=sweep.cache_dir,
        tracking_uri=records.tracking_uri,
        experiment_id=records.store.experiment_id,
        parent_run_id=records.parent.run_id,
        weights=sweep.weights,
    )


def _searcher(
    sweep: SweepConfig,
    space: SearchSpace,
    strategy: Strategy,
    template: TrialTemplate,
    records: SweepRecords,
    enqueued: list[dict[str, Any]] | None,
    *,
    resumed: bool,
    epochs: EpochBudget | None = None,
) -> SweepSearch:
    """The Optuna searcher over the space, on the sweep's study in `optuna.db`."""
    objective = strategy.objective
    multi = objective.is_multi
    return SweepSearch(
        space=DefineByRun(space, template),
        metric=list(objective.metrics) if multi else objective.metrics[0],
        mode=list(objective.modes) if multi else objective.modes[0],
        sampler=make_sampler(strategy.sampler, trials=sweep.trials, seed=sweep.seed),
        storage=optuna.storages.RDBStorage(f"sqlite:///{records.sweep_dir / 'optuna.db'}"),
        study_name=records.state.study_name,
        # Enqueued points went into the study when it was created: not a second time.
        points_to_evaluate=None if resumed else (enqueued or None),
        objective=objective,
        deadline=strategy.deadline,
        epochs=epochs,
    )


def _stoppers(strategy: Strategy, num_classes: int, progress: SweepProgress) -> list[Stopper]:
    stoppers: list[Stopper] = []
    if strategy.deadline is not None:
        stoppers.append(BudgetStopper(strategy.deadline))
    if strategy.early_stop == "dominance":
        stoppers.append(DominanceStopper(strategy.objective, num_classes, history=progress))
    return stoppers


def _trainable(sweep: SweepConfig, template: TrialTemplate, trial_gpus: float | None) -> Any:
    """The trial function with the sweep's fixed parts and each trial's CPU and GPU share."""
    gpus = trial_gpus if trial_gpus is not None else sweep.gpus_per_trial
    if gpus is None:  # one GPU each where the driver's device is one; none on a CPU driver
        gpus = 1.0 if resolve_device(sweep.device).type == "cuda" else 0.0
    # The sweep's data, decoded once here, goes to Ray's object store with the template: each
    # worker adopts it instead of decoding the dataset again (data/shared.py).
    data = splits_payload(load_splits(template.data))
    return tune.with_resources(
        tune.with_parameters(sparsetune_trial, template=template, data=data),
        {"cpu": sweep.cpus_per_trial, "gpu": gpus},
    )


def _finish(
    sweep: SweepConfig,
    records: SweepRecords,
    progress: SweepProgress,
    strategy: Strategy,
    dense: CachedDense,
    ended: SweepEnd,
    *,
    resumed: bool,
    write: bool = True,
) -> SweepOutcome:
    """Write the results and the review, record them on the parent run and close the records.
    Called when the Tuner ended, failed or was interrupted: what finished is kept either way.
    `write=False`: the Tuner never ran, so the files written before stay as they are."""
    front = progress.front()
    rows = progress.rows + _failure_rows(progress, records)
    meta = _results_meta(sweep, records, progress, strategy, dense)
    if write:
        write_results(records, sweep, front, rows, meta)
        log_results(
            records,
            front,
            counts={
                "front_size": len(front),
                "trials_finished": len(progress.done),
                "trials_failed": len(progress.failures),
                "epochs_spent": meta["epochs_spent"],
            },
            hypervolume_history=progress.hypervolume_history,
            final={"trials_done": len(progress.done), "hypervolume": meta["hypervolume"]},
        )
        record_review(
            records.sweep_dir, records.store, records.parent, front, rows, progress.console
        )
    if resumed and ended == "finished":
        drop_lost_child_runs(
            records, known=progress.done | set(progress.failures) | progress.running
        )
    records.close(ended)
    return SweepOutcome(
        records.sweep_dir,
        front,
        rows,
        dict(progress.failures),
        records.parent.run_id,
        records.parent.client.tracking_uri,
        strategy.objective,
        meta["hypervolume"],
        meta["budget_spent"],
        meta["epochs_spent"],
    )


def _failure_rows(progress: SweepProgress, records: SweepRecords) -> list[dict[str, Any]]:
    """The rows of failed trials, with the MLflow run each started (none reported its run id)."""
    failure_rows = progress.failure_rows()
    if not failure_rows:
        return []
    run_ids = records.child_run_ids()
    return [{**row, "run_id": run_ids.get(row["trial_id"])} for row in failure_rows]


def _results_meta(
    sweep: SweepConfig,
    records: SweepRecords,
    progress: SweepProgress,
    strategy: Strategy,
    dense: CachedDense,
) -> dict[str, Any]:
    """`pareto.json`'s header: what was searched, how, and how it went."""
    objective = strategy.objective
    spent = sum(epochs_spent(progress.rows).values())
    epochs_out = sweep.budget_epochs is not None and spent >= sweep.budget_epochs
    return {
        "experiment": sweep.experiment_name,
        "objective": {
            "name": objective.name,
            "metrics": objective.metrics,
            "modes": objective.modes,
            "constraint": objective.bound.description if objective.bound else None,
            "chance_floor": objective.floor.minimum if objective.floor else None,
        },
        "sampler": strategy.sampler,
        "early_stop": strategy.early_stop,
        "budget_spent": epochs_out
        or (strategy.deadline is not None and time.time() >= strategy.deadline),
        "budget_epochs": sweep.budget_epochs,
        "epochs_spent": spent,  # training epochs of the trials (sparsetune.pruning.epochs)
        "hypervolume": progress.hypervolume(),
        "hypervolume_axes": describe_axes(objective.metrics),
        "hypervolume_history": progress.hypervolume_history,
        "model": sweep.model,
        "dataset": sweep.dataset,
        "dense": {"key": dense.key, **dense.checkpoint.metrics},
        "trials": {
            "requested": sweep.trials,
            "finished": len(progress.done),
            "failed": len(progress.failures),
            "infeasible": len({r["trial_id"] for r in progress.rows if not r["feasible"]}),
        },
        "parent_run_id": records.parent.run_id,
    }
