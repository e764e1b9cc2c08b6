"""Python objects as `model=` and `data=`: an `nn.Module` instance (copied, its weights the dense
stage), a zero-argument factory, `(train, test)` tensors or Datasets; through `prune` in this
process and through a 2-trial `search` whose Ray workers rebuild them from the shipped bytes."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import threading

import pytest
import torch
from cli_helpers import MAGNITUDE_GLOBAL_SPACE, sweep_runs
from python_script import script_json
from torch import nn
from torch.utils.data import TensorDataset

import sparsetune
from sparsetune.app import api
from sparsetune.app.errors import BadInput
from sparsetune.export import read_ticket
from sparsetune.models.weights import read_state_dict
from sparsetune.search import objects
from sparsetune.search.records import RAY_TRIAL_TAG

pytestmark = pytest.mark.slow


def _tensors(seed: int = 0) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """A learnable two-class problem on 1 x 8 x 8 inputs: 600 train, 200 test."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(800, 1, 8, 8, generator=generator)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    return (x[:600], y[:600]), (x[600:], y[600:])


def _net() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2))


class Locked(nn.Module):
    """A model holding a lock: neither deep-copied nor pickled, so it cannot go to a worker."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 2)
        self.lock = threading.Lock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def _prune(model, data, tmp_path, **options):
    return sparsetune.prune(
        model,
        data=data,
        params={"rounds": 1, "retrain_epochs": 1},
        epochs=1,
        val_size=100,
        out=tmp_path / "run",
        cache_dir=tmp_path / "cache",
        quiet=True,
        **options,
    )


def test_an_instance_is_pruned_from_its_own_weights_and_left_as_it_was(tmp_path):
    torch.manual_seed(1)
    net = _net()
    before = {key: value.clone() for key, value in net.state_dict().items()}
    result = _prune(net, _tensors(), tmp_path)

    assert all(torch.equal(before[key], value) for key, value in net.state_dict().items())
    assert result.config.model.startswith("python-Sequential-")
    assert result.config.data.name.startswith("python-data-")
    assert result.final.compression > 1
    # The instance's weights are the dense stage, as a --weights file: not trained.
    assert result.config.weights is not None
    dense = read_state_dict(result.config.weights)
    assert all(torch.equal(before[key], dense[key]) for key in before)
    summary = json.loads((tmp_path / "run" / "result.json").read_text())
    assert summary["model"] == result.config.model and summary["weights"]
    # In this process the ticket's model name is registered: it loads as any other.
    loaded = sparsetune.load(tmp_path / "run")
    assert isinstance(loaded, nn.Module)
    ticket = read_ticket(tmp_path / "run")
    fresh = _net()
    fresh.load_state_dict(ticket.weights)  # in another process: into your own instance


def test_a_factory_and_datasets_train_their_own_dense_stage(tmp_path):
    (train_x, train_y), (test_x, test_y) = _tensors()
    data = (TensorDataset(train_x, train_y), TensorDataset(test_x, test_y))
    result = _prune(_net, data, tmp_path)
    assert result.config.model.startswith("python-_net-")
    assert result.config.weights is None
    assert [r.round for r in result.rounds] == [1]
    # Datasets decode to the same tensors as the pair: the same data, the same name.
    assert result.config.data.name == objects.data_name(_tensors())


def test_names_follow_the_content():
    torch.manual_seed(0)
    one, two = _net(), _net()
    assert objects.model_name(one)[0] == objects.model_name(one)[0]
    assert objects.model_name(one)[0] != objects.model_name(two)[0]
    assert objects.data_name(_tensors(0)) != objects.data_name(_tensors(1))


def test_a_model_that_cannot_travel_is_one_line_and_writes_nothing(tmp_path):
    with pytest.raises(BadInput) as caught:
        _prune(Locked(), _tensors(), tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("model=<Locked object> cannot be copied and sent to a worker")
    assert "_thread.lock" in message
    with pytest.raises(BadInput, match=r"^model=<lambda> cannot be copied .*_thread.lock"):
        lock = threading.Lock()
        _prune(lambda: lock and _net(), _tensors(), tmp_path)
    with pytest.raises(BadInput, match=r"^model=<lambda> must be callable with no arguments"):
        sparsetune.prune(lambda size: _net(), data=_tensors(), out=tmp_path / "run")  # noqa: ARG005
    assert list(tmp_path.iterdir()) == []


def test_bad_python_data_is_one_line_and_writes_nothing(tmp_path):
    (x, y), test = _tensors()
    with pytest.raises(BadInput, match=r"^dataset 'data=': label -1 is out of range"):
        _prune(_net(), ((x, y - 1), test), tmp_path)
    with pytest.raises(BadInput, match=r"^weights=: an nn.Module instance brings its own"):
        _prune(_net(), _tensors(), tmp_path, weights=__file__)
    with pytest.raises(BadInput, match=r"^address=ray://127.0.0.1:1: Python objects .* Ray Client"):
        api.search(_net(), data=_tensors(), address="ray://127.0.0.1:1", out=tmp_path / "s")
    with pytest.raises(BadInput, match=r"^dataset 'data=' got an object; give \(train, test\), "):
        _prune(_net(), object(), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_search_refused_says_only_why(tmp_path, capsys):
    """A model with no built-in space gets one generated, and a line that says so; a check that
    refuses the sweep afterwards (this model cannot take the data) leaves that line unsaid."""
    with pytest.raises(BadInput, match=r"^--model python-Linear-\w+: it cannot take the data's"):
        api.search(
            nn.Linear(3, 2), data=_tensors(), val_size=100, out=tmp_path / "s", cache_dir=tmp_path
        )
    assert capsys.readouterr() == ("", "")
    assert not (tmp_path / "s").exists()


SEARCH_SCRIPT = """
import json, os, sys
from pathlib import Path
import torch
from torch import nn
import sparsetune

class Recording(nn.Module):
    '''Leaves a file named by its process id wherever it computes: which processes trained.'''

    def __init__(self, folder):
        super().__init__()
        self.folder = folder
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2))

    def forward(self, x):
        Path(self.folder, str(os.getpid())).touch()
        return self.body(x)

generator = torch.Generator().manual_seed(0)
y = torch.randint(0, 2, (800,), generator=generator)
# Two well separated classes: learnt in one epoch, so the tickets clear the chance floor.
x = torch.randn(800, 1, 8, 8, generator=generator) + (2.0 * y - 1.0).view(-1, 1, 1, 1)
run = sparsetune.search(
    Recording(sys.argv[4]), data=((x[:600], y[:600]), (x[600:], y[600:])), trials=2,
    space=sys.argv[1], out=sys.argv[2], cache_dir=sys.argv[3], experiment="objects",
    val_size=100, max_concurrent=2, seed=0, quiet=True,
    enqueue="none",  # two pruned tickets, not the default start's dense point (5 steps: unlearnt)
)
found = {"front": run.records(), "pid": os.getpid(), "failures": run.failures}
print(json.dumps(found, default=str))
"""


def test_a_search_ships_an_instance_and_tensors_to_its_ray_workers(tmp_path):
    (tmp_path / "space.yaml").write_text(MAGNITUDE_GLOBAL_SPACE)
    out, pids = tmp_path / "sweep", tmp_path / "pids"
    pids.mkdir()
    arguments = [str(tmp_path / "space.yaml"), str(out), str(tmp_path / "cache"), str(pids)]
    found = script_json(SEARCH_SCRIPT, *arguments, cwd=tmp_path)
    assert found["failures"] == {}
    assert found["front"]
    _, parents, children = sweep_runs(out, "objects")
    assert len(parents) == 1 and len(children) == 2
    assert all(child.info.status == "FINISHED" for child in children)
    assert all(child.data.tags.get(RAY_TRIAL_TAG) for child in children)
    # The trials computed in Ray's worker processes, not in the script's own.
    assert {int(path.name) for path in pids.iterdir()} - {found["pid"]}
    for point in found["front"]:
        assert point["architecture"]
        if point["method"] != "dense":
            assert read_ticket(point["ticket"]).info["model"].startswith("python-Recording-")


WORKER_SCRIPT = """
import pickle, sys
from sparsetune.config import DataConfig
from sparsetune.data import load_splits
from sparsetune.models import build_model
from sparsetune.search.objects import register_shipped

model, data = pickle.loads(open(sys.argv[1], "rb").read())
register_shipped([model, data])
splits = load_splits(DataConfig(name=data.name, val_size=100))
built = build_model(model.name, splits.input_shape, splits.num_classes)
print(type(built).__name__, len(splits.train), splits.num_classes)
"""


def test_a_fresh_process_rebuilds_the_objects_from_their_records(tmp_path):
    """What a Ray worker on another node does: the names registered again from the shipped
    bytes, and the instance's weights file written where it was missing, byte for byte."""
    name, weights = objects.model_name(_net())
    data = objects.data_name(_tensors())
    model_record, data_record = objects.shipped_for([name, data])
    written = weights.read_bytes()
    weights.unlink()
    (tmp_path / "records.pickle").write_bytes(pickle.dumps((model_record, data_record)))
    done = subprocess.run(
        [sys.executable, "-c", WORKER_SCRIPT, str(tmp_path / "records.pickle")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["Sequential", "500", "2"]
    assert weights.read_bytes() == written


NAME_SCRIPT = """
import torch
from torch import nn
from sparsetune.search import objects

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)

torch.manual_seed(0)
print(objects.model_name(Net())[0], objects.model_name(lambda: Net())[0])
"""


def test_a_new_process_gives_a_script_class_the_same_name():
    """So a sweep of a notebook's model, started again after a restart, continues (same name)."""
    names = [
        subprocess.run(
            [sys.executable, "-c", NAME_SCRIPT], capture_output=True, text=True, timeout=300
        ).stdout.split()
        for _ in range(2)
    ]
    assert names[0] == names[1] and len(names[0]) == 2
    assert names[0][0].startswith("python-Net-") and names[0][1].startswith("python-lambda-")
