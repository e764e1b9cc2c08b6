"""The sweep driver: Ray Tune runs the trials, Optuna chooses them, MLflow records them.

Order of events: train (or find) the shared dense model once, open the MLflow parent run, run the
Tuner, then compute the front over every (trial, round), write `pareto.json` and `trials.csv`,
attach them to the parent run, and add what a reviewer opens first (`record_review`). Input is
validated before this module is called; nothing here is reached with a bad config.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import ray
import torch
from ray import tune
from ray.tune.stopper import CombinedStopper, Stopper
from rich.console import Console

from sparsetune.atomic import atomic_write_text
from sparsetune.config import TrainConfig, TrialConfig
from sparsetune.data.tensors import Splits
from sparsetune.identity import dense_key, trial_hash
from sparsetune.pruning import METHODS
from sparsetune.report.results import write_pareto_json, write_trials_csv
from sparsetune.search.choices import resolve_early_stop, resolve_sampler
from sparsetune.search.hypervolume import describe_axes
from sparsetune.search.objectives import Objective, resolve_objective
from sparsetune.search.options import SweepConfig
from sparsetune.search.progress import SweepProgress
from sparsetune.search.samplers import make_sampler
from sparsetune.search.space import SearchSpace
from sparsetune.search.state import SweepState
from sparsetune.search.stopping import BudgetStopper, DominanceStopper, SweepSearch, asha
from sparsetune.search.trainable import TrialTemplate, sparsetune_trial
from sparsetune.tracking import default_tracking_uri
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


@dataclass(frozen=True)
class DefineByRun:
    """Optuna's define-by-run function: samples the space and tags the trial with its config
    hash, which thereby joins Optuna's user attributes, Ray's trial config and MLflow's tags.
    A picklable object, not a closure: Ray saves the searcher with the experiment state."""

    space: SearchSpace
    template: TrialTemplate

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        flat = self.space.sample(trial)
        config_hash = trial_hash(self.template.trial_config(flat))
        trial.set_user_attr("config_hash", config_hash)
        # Ray's trial config holds what Optuna sampled plus what this returns: return the
        # whole flat config, so fixed values and a lone method reach the trainable too.
        return {**flat, "config_hash": config_hash}


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
    )
    key = dense_key(config)
    console.print(
        f"dense stage: {sweep.model} on {sweep.dataset}, {train.epochs} epochs (cache key {key})",
        highlight=False,
    )

    def say_epoch(phase: str, done: EpochDone) -> None:
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
    def resolve(cls, sweep: SweepConfig, space: SearchSpace, dense: CachedDense) -> Strategy:
        objective = resolve_objective(
            sweep.objective,
            min_compression=sweep.min_compression,
            max_drop=sweep.max_drop,
            dense_val_acc=dense.checkpoint.metrics["val_acc"],
        )
        sampler = resolve_sampler(
            sweep.sampler, objective, conditional=space.is_conditional, trials=sweep.trials
        )
        budget = sweep.budget_minutes
        deadline = time.time() + 60 * budget if budget is not None else None
        return cls(objective, sampler, resolve_early_stop(sweep.early_stop, objective), deadline)


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
) -> SweepOutcome:
    """Run the trials over the prepared dense model; write and record the results.

    `resume`: the state of an unfinished sweep in the same folder (the CLI has checked that it
    is the same sweep), which this call continues: see docs/resume.md. `trial_gpus`: GPUs per
    trial decided elsewhere (Ray Client: where the dense stage ran), instead of from
    `--gpus-per-trial` or this process's device."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "study created" says nothing to act on
    strategy = Strategy.resolve(sweep, space, dense)
    objective = strategy.objective
    sweep_dir = sweep.sweep_dir
    sweep_dir.mkdir(parents=True, exist_ok=True)
    train = dense_recipe(sweep, space)

    # The names of the sweep's records come from its state file, so that a resumed sweep
    # reopens the same Ray experiment, Optuna study and MLflow parent run. Written before any of
    # them exists: a sweep killed at any point after this line can be resumed.
    tracking_uri = (
        resume.tracking_uri if resume else sweep.tracking_uri or default_tracking_uri(sweep_dir)
    )
    state = resume or SweepState.new(sweep, space, tracking_uri)
    state.write(sweep_dir)
    sweep_id = state.sweep_id
    from sparsetune.tracking.mlflow_store import MlflowStore

    store = MlflowStore.open(tracking_uri, sweep.experiment_name, sweep_dir / "mlartifacts")
    if resume and resume.parent_run_id and store.run(resume.parent_run_id).exists():
        parent = store.run(resume.parent_run_id)
        parent.reopen()
        parent.set_tags({"resumed": str(resume.resumed + 1)})
        console.print(f"resuming sweep {sweep_id} in {sweep_dir}", highlight=False)
    else:
        parent = store.start_run(
            f"sweep-{sweep_id}", tags={"sparsetune.role": "sweep", "objective": objective.name}
        )
        parent.log_params(
            {k: v for k, v in sweep.model_dump(mode="json").items() if v is not None}
            | {"space": space.source, "dense_key": dense.key, "dense_epochs": train.epochs}
            | {"sampler_used": strategy.sampler, "early_stop_used": strategy.early_stop}
            | ({"constraint": objective.bound.description} if objective.bound else {})
        )
    state = state.with_(parent_run_id=parent.run_id, resumed=state.resumed + (1 if resume else 0))
    state.write(sweep_dir)
    console.print(
        f"objective {objective.name}"
        + (f" ({objective.bound.description})" if objective.bound else "")
        + f", sampler {strategy.sampler}, early stop {strategy.early_stop}"
        + (f", {len(enqueued)} enqueued points first" if enqueued else ""),
        highlight=False,
    )

    template = TrialTemplate(
        model=sweep.model,
        data=sweep.data_config(),
        train=train,
        seed=sweep.seed,
        device=sweep.device,
        threads=max(1, int(sweep.cpus_per_trial)),
        sweep_dir=sweep_dir,
        cache_dir=sweep.cache_dir,
        tracking_uri=tracking_uri,
        experiment_id=store.experiment_id,
        parent_run_id=parent.run_id,
    )

    multi = objective.is_multi
    searcher = SweepSearch(
        space=DefineByRun(space, template),
        metric=list(objective.metrics) if multi else objective.metrics[0],
        mode=list(objective.modes) if multi else objective.modes[0],
        sampler=make_sampler(strategy.sampler, trials=sweep.trials, seed=sweep.seed),
        storage=optuna.storages.RDBStorage(f"sqlite:///{sweep_dir / 'optuna.db'}"),
        study_name=state.study_name,
        # Enqueued points went into the study when it was created: not a second time.
        points_to_evaluate=(enqueued or None) if resume is None else None,
        bound=objective.bound,
        deadline=strategy.deadline,
    )
    key_params = {name: METHODS[name].key_params for name in space.method_names}
    progress = SweepProgress(objective, sweep.trials, console, key_params, num_classes)
    stoppers: list[Stopper] = []
    if strategy.deadline is not None:
        stoppers.append(BudgetStopper(strategy.deadline))
    if strategy.early_stop == "dominance":
        stoppers.append(DominanceStopper(objective, num_classes, history=progress))
    gpus = trial_gpus if trial_gpus is not None else sweep.gpus_per_trial
    if gpus is None:  # one GPU each where the driver's device is one; none on a CPU driver
        gpus = 1.0 if resolve_device(sweep.device).type == "cuda" else 0.0
    trainable = tune.with_resources(
        tune.with_parameters(sparsetune_trial, template=template),
        {"cpu": sweep.cpus_per_trial, "gpu": gpus},
    )
    started_ray = _start_ray(sweep)
    failed = True
    try:
        tune_config = tune.TuneConfig(
            search_alg=searcher,
            scheduler=asha(objective) if strategy.early_stop == "asha" else None,
            num_samples=sweep.trials,
            max_concurrent_trials=sweep.max_concurrent,
            reuse_actors=True,
        )
        run_config = tune.RunConfig(
            name=state.ray_name,
            storage_path=sweep.ray_storage(sweep_dir),
            callbacks=[progress],
            stop=CombinedStopper(*stoppers) if stoppers else None,
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=TRIAL_RETRIES, fail_fast=False),
            # One checkpoint per trial is all a restart needs; and a trial checkpointing
            # `num_to_keep` times makes Ray save its experiment state at once, so what a
            # resumed sweep restores lags the trials by at most the round in progress.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        )
        experiment = f"{sweep.ray_storage(sweep_dir).rstrip('/')}/{state.ray_name}"
        if resume is not None and tune.Tuner.can_restore(experiment):
            tuner = _restored_tuner(experiment, trainable, tune_config, run_config)
        else:
            if resume is not None:  # killed before Ray saved anything: nothing runs them now
                searcher.fail_running_trials("the sweep was killed before Ray saved it")
            tuner = tune.Tuner(trainable, tune_config=tune_config, run_config=run_config)
        tuner.fit()
        failed = False
    finally:
        if started_ray:
            ray.shutdown()
        outcome = _finish(sweep, sweep_dir, progress, store, parent, strategy, dense, failed)
        if resume is not None and not failed:
            _drop_lost_child_runs(store, parent, progress)
        # "finished" only when Ray ran the sweep to its end: anything else can be resumed.
        state.with_(status="running" if failed else "finished").write(sweep_dir)
    return outcome


# Retries of a trial whose worker died (a node lost, the process killed): from its last round's
# checkpoint. A trial's own error is not retried (see trainable._record_failure).
TRIAL_RETRIES = 2


def _restored_tuner(
    path: str, trainable: Any, tune_config: tune.TuneConfig, run_config: tune.RunConfig
) -> tune.Tuner:
    """`Tuner.restore` of a killed sweep, running this process's searcher, callbacks and stoppers.

    Restore alone would run the copies pickled when the sweep first started (`tuner.pkl`): a
    progress callback this function cannot read the rows of, a budget counted from the first
    start. So this run's objects take their place; Ray's restore then loads the saved searcher
    state (study, sampler, trial map: `SweepSearch.restore`) and the progress callback's state
    (`SweepProgress.set_state`) into them. Ray has no public setter for the restored configs:
    `_local_tuner` is the Tuner's internals (Ray 2.60), checked here so a change fails loudly."""
    tuner = tune.Tuner.restore(
        path,
        trainable=trainable,
        resume_unfinished=True,  # running trials continue from their last round's checkpoint
        resume_errored=False,  # a failed trial stays failed, with its reason
        restart_errored=False,
    )
    internal = getattr(tuner, "_local_tuner", None)
    if internal is None or not hasattr(internal, "_tune_config"):
        raise RuntimeError("this Ray version's Tuner cannot be resumed by sparsetune")
    restored = internal.get_run_config()
    for field in ("name", "storage_path", "storage_filesystem"):
        setattr(run_config, field, getattr(restored, field))
    internal._run_config = run_config
    internal._tune_config = tune_config
    return tuner


def _drop_lost_child_runs(store, parent, progress: SweepProgress) -> None:
    """Child runs of trials that Ray lost when the driver was killed (started, not yet saved in
    its state): the resumed sweep ran other trials in their place, and their Optuna trials are
    marked failed. They are deleted (MLflow keeps deleted runs, restorable), tagged why first,
    so that the parent holds one child run per trial of the sweep."""
    known = progress.done | set(progress.failures) | progress.running
    for trial_id, run_id in store.child_runs_by_tag(parent.run_id, "ray_trial_id").items():
        if trial_id not in known:
            store.run(run_id).set_tags({"sparsetune.lost": "its Ray trial was not saved"})
            store.client.delete_run(run_id)


def _start_ray(sweep: SweepConfig) -> bool:
    """Join `--address`, or start a local Ray sized to this machine. True if we started it."""
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": "ERROR",
        "configure_logging": True,
    }
    if sweep.address:
        ray.init(address=sweep.address, **options)
    else:
        gpus = torch.cuda.device_count() if sweep.device != "cpu" else 0
        ray.init(num_cpus=os.cpu_count(), num_gpus=gpus, **options)
    return True


def _finish(sweep, sweep_dir, progress, store, parent, strategy, dense, failed) -> SweepOutcome:
    objective = strategy.objective
    front = progress.front()
    failure_rows = progress.failure_rows()
    if failure_rows:
        run_ids = store.child_runs_by_tag(parent.run_id, "ray_trial_id")
        failure_rows = [{**row, "run_id": run_ids.get(row["trial_id"])} for row in failure_rows]
    rows = progress.rows + failure_rows
    meta = {
        "experiment": sweep.experiment_name,
        "objective": {
            "name": objective.name,
            "metrics": objective.metrics,
            "modes": objective.modes,
            "constraint": objective.bound.description if objective.bound else None,
        },
        "sampler": strategy.sampler,
        "early_stop": strategy.early_stop,
        "budget_spent": strategy.deadline is not None and time.time() >= strategy.deadline,
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
        "parent_run_id": parent.run_id,
    }
    write_pareto_json(sweep_dir / "pareto.json", front, meta)
    write_trials_csv(sweep_dir / "trials.csv", rows)
    atomic_write_text(sweep_dir / "sweep.json", json.dumps(sweep.model_dump(mode="json"), indent=2))
    parent.log_metrics(
        {
            "front_size": len(front),
            "trials_finished": len(progress.done),
            "trials_failed": len(progress.failures),
        }
    )
    history = progress.hypervolume_history
    for entry in history:  # a curve in the MLflow UI: step = trials done
        parent.log_metrics({"hypervolume": entry["hypervolume"]}, step=int(entry["trials_done"]))
    final = {"trials_done": len(progress.done), "hypervolume": meta["hypervolume"]}
    if not history or history[-1] != final:  # the run page shows the last step's value
        parent.log_metrics({"hypervolume": final["hypervolume"]}, step=final["trials_done"])
    parent.set_tags({"pareto_run_ids": ",".join(sorted({str(r["run_id"]) for r in front}))[:5000]})
    parent.log_files([sweep_dir / "pareto.json", sweep_dir / "trials.csv"])
    record_review(sweep_dir, store, parent, front, rows, progress.console)
    parent.finish(failed=failed)
    return SweepOutcome(
        sweep_dir,
        front,
        rows,
        dict(progress.failures),
        parent.run_id,
        parent.client.tracking_uri,
        objective,
        meta["hypervolume"],
        meta["budget_spent"],
    )


def record_review(sweep_dir: Path, store, parent, front, rows, console: Console) -> None:
    """What a reviewer needs on the MLflow parent run: the Pareto plot (PNG and interactive
    HTML) and the front as a table under `review/`, and the plot with a summary as the run's
    description, so that it shows on the run page itself; and `pareto=true` or `false` on each
    child run, so that the runs table filters to the front (`tags.pareto = 'true'`). A failure
    here is a warning: the sweep's results are already written."""
    try:
        from sparsetune.report.review import load_sweep, run_description, write_review
        from sparsetune.tracking.mlflow_store import DESCRIPTION_TAG

        files = write_review(sweep_dir)
        parent.log_files(files, artifact_path="review")
        description = run_description(load_sweep(sweep_dir), parent.run_id, folder="review")
        parent.set_tags({DESCRIPTION_TAG: description})
    except Exception as error:
        console.print(f"[yellow]review plots not recorded:[/] {type(error).__name__}: {error}")
    rounds_on_front: dict[str, list[int]] = {}
    for row in front:
        if row.get("run_id"):
            rounds_on_front.setdefault(str(row["run_id"]), []).append(int(row["round"]))
    try:
        for run_id in sorted({str(r["run_id"]) for r in rows if r.get("run_id")}):
            rounds = sorted(set(rounds_on_front.get(run_id, [])))
            tags = {"pareto": "true" if rounds else "false"}
            if rounds:
                tags["pareto_rounds"] = ",".join(map(str, rounds))
            store.run(run_id).set_tags(tags)
    except Exception as error:
        console.print(f"[yellow]pareto tags not recorded:[/] {type(error).__name__}: {error}")
