"""MLflow records: one experiment per sweep name, a parent run per sweep, a child run per trial.

Uses `MlflowClient` with explicit run ids rather than the fluent `mlflow.start_run`, whose active
run is process-global: Ray reuses worker processes, and a trial must never log into another's run.
Child runs are linked to the parent with the `mlflow.parentRunId` tag, which works across
processes on one tracking URI.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sparsetune.atomic import atomic_file
from sparsetune.config import DEFAULT_CACHE_DIR
from sparsetune.tracking import is_server_uri, local_sqlite_path

PARENT_TAG = "mlflow.parentRunId"
DESCRIPTION_TAG = "mlflow.note.content"  # the run page's Description, rendered as Markdown
# Marks the experiment as model training rather than a GenAI app in MLflow 3's UI. (Which view a
# browser opens is the URL's `workflowType`: `sparsetune ui` prints such a URL.)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"

# Keep the terminal for sparsetune's progress: MLflow's INFO lines ("creating initial database
# tables") say nothing a user acts on. Set here, after `import mlflow` configured its loggers.
logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)
logger = logging.getLogger(__name__)


def _store_lock(tracking_uri: str) -> contextlib.AbstractContextManager[Any]:
    """An exclusive lock on a local SQLite store (`<db>.lock` beside it); none for a server."""
    database = local_sqlite_path(tracking_uri)
    if database is None:
        return contextlib.nullcontext()
    database.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(database) + ".lock")


def _params(values: Mapping[str, Any]) -> list[Param]:
    return [Param(str(k), str(v)[:6000]) for k, v in values.items()]


def _tags(values: Mapping[str, Any]) -> list[RunTag]:
    return [RunTag(str(k), str(v)) for k, v in values.items()]


def _metrics(values: Mapping[str, Any], step: int) -> list[Metric]:
    return _points((key, value, step) for key, value in values.items())


def _points(points: Iterable[tuple[str, Any, int]]) -> list[Metric]:
    """(key, value, step) as MLflow metrics, leaving out what is not a finite number."""
    now = int(time.time() * 1000)
    return [
        Metric(k, float(v), now, step)
        for k, v, step in points
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
    ]


# What one `log_batch` request may carry (MLflow refuses more): entities in all, and tags.
MAX_BATCH = 1000
MAX_BATCH_TAGS = 100


class MlflowRun:
    """One MLflow run, addressed by id."""

    def __init__(self, client: MlflowClient, run_id: str):
        self.client = client
        self.run_id = run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        if params:
            self.client.log_batch(self.run_id, params=_params(params))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if tags:
            self.client.log_batch(self.run_id, tags=_tags(tags))

    def log_metrics(
        self, metrics: Mapping[str, Any], step: int = 0, tags: Mapping[str, Any] | None = None
    ) -> None:
        """Metrics at `step` (and any `tags`) in one request."""
        batch, tagged = _metrics(metrics, step), _tags(tags or {})
        if batch or tagged:
            self.client.log_batch(self.run_id, metrics=batch, tags=tagged)

    def log_points(
        self, points: Iterable[tuple[str, Any, int]], tags: Mapping[str, Any] | None = None
    ) -> None:
        """Metric points (key, value, step), a curve's whole history at once, and any `tags`,
        in as few requests as MLflow takes: a sweep's hypervolume curve has a point per trial,
        and a request per point cost a 300-trial sweep a second at its end."""
        batch, tagged = _points(points), _tags(tags or {})
        while batch or tagged:
            request_tags, tagged = tagged[:MAX_BATCH_TAGS], tagged[MAX_BATCH_TAGS:]
            room = MAX_BATCH - len(request_tags)
            self.client.log_batch(self.run_id, metrics=batch[:room], tags=request_tags)
            batch = batch[room:]

    def log_files(self, files: Iterable[Path], artifact_path: str | None = None) -> None:
        for path in files:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def finish(self, failed: bool = False, metrics: Mapping[str, Any] | None = None) -> None:
        if metrics:
            self.log_metrics(metrics)
        self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")

    def reopen(self) -> None:
        """Mark a run that a resumed sweep continues as running again (no end time)."""
        self.client.update_run(self.run_id, status="RUNNING")

    def exists(self) -> bool:
        try:
            return self.client.get_run(self.run_id).info.lifecycle_stage == "active"
        except MlflowException:
            return False


class MlflowStore:
    """A tracking URI and one experiment in it."""

    def __init__(self, tracking_uri: str, experiment_id: str):
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.client = MlflowClient(tracking_uri)

    @classmethod
    def open(cls, tracking_uri: str, experiment: str, artifact_dir: Path | None) -> MlflowStore:
        """Get or create the experiment; artifacts go to `artifact_dir` when the store is local.

        A tracking server (http/https) keeps its own artifact store: a `file://` location here
        would point at this machine's disk, which the server (and everyone else) cannot read.

        Two sweeps may open one new SQLite store at once (cron, two terminals): each would create
        its tables (alembic's migration) and the experiment, and the second would fail on what the
        first made. A lock file beside the database makes them take turns; on a server, an
        experiment another client created meanwhile is read back."""
        with _store_lock(tracking_uri):
            database = local_sqlite_path(tracking_uri)
            if database is not None and not database.exists():
                start_from_template(database)
            client = MlflowClient(tracking_uri)
            found = client.get_experiment_by_name(experiment)
            if found is None:
                location = None
                if artifact_dir is not None and not is_server_uri(tracking_uri):
                    location = Path(artifact_dir).resolve().as_uri()
                try:
                    experiment_id = client.create_experiment(
                        experiment,
                        artifact_location=location,
                        tags={EXPERIMENT_KIND_TAG: TRAINING_KIND},
                    )
                    return cls(tracking_uri, experiment_id)
                except MlflowException:
                    found = client.get_experiment_by_name(experiment)
                    if found is None:
                        raise
            if found.tags.get(EXPERIMENT_KIND_TAG) is None:
                client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)
            return cls(tracking_uri, found.experiment_id)

    def start_run(
        self, name: str, *, parent: str | None = None, tags: Mapping[str, Any] | None = None
    ) -> MlflowRun:
        all_tags = dict(tags or {})
        if parent is not None:
            all_tags[PARENT_TAG] = parent
        run = self.client.create_run(
            self.experiment_id, run_name=name, tags={k: str(v) for k, v in all_tags.items()}
        )
        return MlflowRun(self.client, run.info.run_id)

    def run(self, run_id: str) -> MlflowRun:
        return MlflowRun(self.client, run_id)

    def child_runs_by_tag(self, parent_run_id: str, tag: str) -> dict[str, str]:
        """{value of `tag`: run id} over the children of a run, e.g. Ray trial id to run id for
        trials that failed before they could report their run id."""
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'"
        )
        return {run.data.tags[tag]: run.info.run_id for run in runs if tag in run.data.tags}

    def running_children(self, parent_run_id: str) -> list[MlflowRun]:
        """The parent's child runs that are still RUNNING."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.`{PARENT_TAG}` = '{parent_run_id}' and attributes.status = 'RUNNING'"
            ),
        )
        return [MlflowRun(self.client, run.info.run_id) for run in runs]

    def find_child(self, parent_run_id: str, tag: str, value: str) -> MlflowRun | None:
        """The parent's child run whose `tag` is `value` (the oldest if several), or None: how a
        trial restarted by Ray (same trial id) finds the run it recorded into before."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.`{tag}` = '{value}'",
            order_by=["attributes.start_time ASC"],
        )
        return MlflowRun(self.client, runs[0].info.run_id) if runs else None


# A new SQLite store starts as a copy of an empty one that MLflow has already migrated: MLflow's
# migrations take about 2 s on 2 cores, on the path of every new sweep. One template per MLflow
# version, made once per machine; without a writable cache MLflow migrates as before.
TEMPLATE_DIR = DEFAULT_CACHE_DIR / "mlflow-templates"


def start_from_template(database: Path) -> None:
    try:
        template = _template()
        with atomic_file(database) as staging:
            shutil.copyfile(template, staging)
            with contextlib.closing(sqlite3.connect(staging)) as db, db:
                # The Default experiment as MLflow would have made it here and now.
                now = int(time.time() * 1000)
                db.execute(
                    "UPDATE experiments SET artifact_location = ?, creation_time = ?, "
                    "last_update_time = ? WHERE experiment_id = 0",
                    (os.path.abspath(os.path.join("mlruns", "0")), now, now),
                )
    except (OSError, sqlite3.Error, MlflowException) as error:
        logger.debug("no MLflow store template (%s): MLflow migrates the new store", error)


def _template() -> Path:
    from importlib.metadata import version

    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    template = TEMPLATE_DIR / f"mlflow-{version('mlflow')}.db"
    if template.is_file():
        return template
    TEMPLATE_DIR.mkdir(parents=True, exist_ok=True)
    with FileLock(str(template) + ".lock"):
        if not template.is_file():
            with atomic_file(template) as staging:
                staging.unlink(missing_ok=True)
                store = SqlAlchemyStore(f"sqlite:///{staging}", str(TEMPLATE_DIR / "mlruns"))
                store.engine.dispose()
    return template
