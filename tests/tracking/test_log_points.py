"""A curve's whole history in as few MLflow requests as MLflow takes (`MlflowRun.log_points`), and
the sweep's results on its parent run (`log_results`): the hypervolume a point per trial done,
the counts, the front's run ids. A real MLflow store on SQLite."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from sparsetune.search.records import log_results
from sparsetune.tracking.mlflow_store import MAX_BATCH, MAX_BATCH_TAGS, MlflowRun, MlflowStore


@pytest.fixture
def parent(tmp_path) -> MlflowRun:
    store = MlflowStore.open(f"sqlite:///{tmp_path / 'mlflow.db'}", "points", tmp_path / "art")
    return store.start_run("sweep")


def requests_of(run: MlflowRun, monkeypatch) -> list[int]:
    """The entities (metrics and tags) of each `log_batch` request the run's client sends on."""
    sizes: list[int] = []
    send = MlflowClient.log_batch

    def counted(client, run_id, metrics=(), params=(), tags=(), **rest):
        sizes.append(len(metrics) + len(params) + len(tags))
        return send(client, run_id, metrics=metrics, params=params, tags=tags, **rest)

    monkeypatch.setattr(run.client, "log_batch", counted.__get__(run.client))
    return sizes


def history(run: MlflowRun, key: str) -> dict[int, float]:
    return {point.step: point.value for point in run.client.get_metric_history(run.run_id, key)}


def test_points_go_in_requests_of_at_most_mlflows_batch(parent, monkeypatch):
    sizes = requests_of(parent, monkeypatch)
    curve = [("hypervolume", step / 10_000, step) for step in range(1, 2_346)]
    parent.log_points(
        [("front_size", 7, 0), ("broken", math.nan, 0), *curve], tags={"note": "a", "other": "b"}
    )
    assert sizes == [MAX_BATCH, MAX_BATCH, 2_345 + 1 + 2 - 2 * MAX_BATCH]
    assert history(parent, "hypervolume") == {step: value for _, value, step in curve}
    recorded = parent.client.get_run(parent.run_id).data
    assert recorded.metrics == {"front_size": 7, "hypervolume": 0.2345}  # latest: the last step
    assert recorded.tags["note"] == "a" and recorded.tags["other"] == "b"
    assert "broken" not in recorded.metrics


def test_more_tags_than_a_request_takes_go_in_several(parent, monkeypatch):
    sizes = requests_of(parent, monkeypatch)
    tags = {f"tag{index}": str(index) for index in range(MAX_BATCH_TAGS * 2 + 5)}
    parent.log_points([("hypervolume", 0.5, step) for step in range(1_500)], tags=tags)
    assert sizes == [MAX_BATCH, MAX_BATCH_TAGS + 600, 5]  # 900 + 600 metrics, then the tags left
    recorded = parent.client.get_run(parent.run_id).data
    assert {key: recorded.tags[key] for key in tags} == tags
    assert len(history(parent, "hypervolume")) == 1_500


def test_nothing_to_log_sends_nothing(parent, monkeypatch):
    sizes = requests_of(parent, monkeypatch)
    parent.log_points([("skipped", math.inf, 1)])
    assert sizes == []


@pytest.mark.parametrize(
    ("final", "expected"),
    [
        ({"trials_done": 3, "hypervolume": 0.3}, {1: 0.1, 2: 0.2, 3: 0.3}),  # the curve's end
        ({"trials_done": 4, "hypervolume": 0.4}, {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.4}),
        ({"trials_done": 3, "hypervolume": 0.35}, {1: 0.1, 2: 0.2, 3: 0.35}),  # recomputed
    ],
)
def test_the_sweeps_results_on_its_parent_run(tmp_path, parent, monkeypatch, final, expected):
    for name in ("pareto.json", "trials.csv"):
        (tmp_path / name).write_text("{}")
    records = SimpleNamespace(parent=parent, sweep_dir=tmp_path)
    sizes = requests_of(parent, monkeypatch)
    log_results(
        records,
        front=[{"run_id": "r2"}, {"run_id": "r1"}, {"run_id": "r2"}],
        counts={"front_size": 3, "trials_finished": 3, "trials_failed": 0},
        hypervolume_history=[
            {"trials_done": step, "hypervolume": step / 10} for step in range(1, 4)
        ],
        final=final,
    )
    assert len(sizes) == 1  # one request, however long the curve
    assert history(parent, "hypervolume") == expected
    data = parent.client.get_run(parent.run_id).data
    assert data.metrics["hypervolume"] == final["hypervolume"]  # the run page's value
    assert data.metrics["trials_finished"] == 3 and data.metrics["front_size"] == 3
    assert data.tags["pareto_run_ids"] == "r1,r2"
    logged = {a.path for a in parent.client.list_artifacts(parent.run_id)}
    assert logged == {"pareto.json", "trials.csv"}
