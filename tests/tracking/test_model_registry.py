"""Registering an exported model from a path (no source run): a new run in "sparsetune-export",
its files next to the SQLite store, and the process's MLflow settings left as they were."""

from __future__ import annotations

import os

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from sparsetune.models.lenet import LeNet300
from sparsetune.tracking.model_registry import EXPORT_EXPERIMENT, register_model


def test_registering_without_a_run_makes_one_and_changes_no_global_setting(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    torch.manual_seed(0)
    model = LeNet300(input_shape=(1, 8, 8), num_classes=3).eval()
    info = {
        "format": "dense",
        "model": "lenet300",
        "input_shape": [1, 8, 8],
        "num_classes": 3,
        "architecture": "64-300-100",
        "method": "magnitude",
        "round": 2,
        "val_acc": 0.75,
        "compression": 4.5,
    }
    registration = register_model(model, name="tiny", tracking_uri=uri, info=info)
    assert (registration.name, registration.version) == ("tiny", 1)
    assert registration.model_uri == "models:/tiny/1"

    # Nothing changed for the rest of the process, and nothing landed in the current folder.
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///elsewhere.db"
    assert mlflow.get_tracking_uri() == "sqlite:///elsewhere.db"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
    assert (store / "mlartifacts").is_dir()

    client = MlflowClient(uri)
    run = client.get_run(registration.run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == EXPORT_EXPERIMENT
    assert run.data.metrics == {"val_acc": 0.75, "compression": 4.5}
    assert run.data.tags["architecture"] == "64-300-100"
    version = client.get_model_version("tiny", "1")
    assert version.tags["architecture"] == "64-300-100" and version.run_id == run.info.run_id

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    loaded = mlflow.pytorch.load_model("models:/tiny/1")
    inputs = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(inputs), model(inputs), rtol=0, atol=1e-6)


def test_a_second_registration_is_the_next_version(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    info = {"format": "dense", "model": "lenet300", "input_shape": [4], "num_classes": 2}
    model = torch.nn.Sequential(torch.nn.Linear(4, 2))
    first = register_model(model, name="m", tracking_uri=uri, info=info)
    second = register_model(model, name="m", tracking_uri=uri, info=info)
    assert (first.version, second.version) == (1, 2)
    with pytest.raises(mlflow.exceptions.MlflowException):
        MlflowClient(uri).get_model_version("m", "3")


def test_sparsetune_reaches_mlflow_through_its_public_api_only():
    """No import of a private MLflow module or attribute (`mlflow.x._y`): those move between
    MLflow releases without notice."""
    import re
    from pathlib import Path

    import sparsetune

    private = re.compile(r"\bmlflow(?:\.\w+)*\._\w+|from mlflow\S*\._\w+")
    package = Path(sparsetune.__file__).parent
    found = [
        f"{path.relative_to(package)}:{number}: {line.strip()}"
        for path in package.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if private.search(line)
    ]
    assert found == []
