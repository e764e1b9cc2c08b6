"""sparsetune's SGD and Adam (train/optimizers.py) are torch's, without the torch._dynamo import:
the same updates to the last bit, the same state in the same format, gradients off in a step as
torch has them, and a whole trial in a new process that never imports torch._dynamo."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from sparsetune.train import optimizers

CASES = [
    (torch.optim.SGD, optimizers.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}),
    (torch.optim.SGD, optimizers.SGD, {"lr": 0.05}),
    (torch.optim.Adam, optimizers.Adam, {"lr": 1e-3, "weight_decay": 5e-4}),
]


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))


def _train(model, optimizer, steps: int, seen_grad_mode: list[bool] | None = None):
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        inputs = torch.randn(8, 6, generator=generator)
        targets = torch.randint(0, 3, (8,), generator=generator)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs), targets).backward()

        def closure():
            if seen_grad_mode is not None:
                seen_grad_mode.append(torch.is_grad_enabled())
            return None

        optimizer.step(closure)


@pytest.mark.parametrize(("torch_class", "ours", "options"), CASES)
def test_the_same_updates_and_state_as_torch(torch_class, ours, options):
    theirs_model, our_model = _model(), _model()
    theirs = torch_class(theirs_model.parameters(), **options)
    mine = ours(our_model.parameters(), **options)
    assert isinstance(mine, torch_class)
    seen: list[bool] = []
    _train(theirs_model, theirs, 5)
    _train(our_model, mine, 5, seen)
    for a, b in zip(theirs_model.parameters(), our_model.parameters(), strict=True):
        assert torch.equal(a, b)
    # The closure runs with gradients on (torch's step enables them around it), and a step
    # leaves the caller's grad mode as it found it.
    assert seen == [True] * 5 and torch.is_grad_enabled()

    # One state, one format: ours loads torch's and holds the same tensors as its own.
    state = mine.state_dict()
    assert state.keys() == theirs.state_dict().keys()
    restored = ours(_model().parameters(), **options)
    restored.load_state_dict(theirs.state_dict())
    loaded_state = restored.state_dict()["state"].values()
    for saved, loaded in zip(state["state"].values(), loaded_state, strict=True):
        assert saved.keys() == loaded.keys()
        assert all(torch.equal(saved[k], loaded[k]) for k in saved)


def test_a_parameter_group_added_later_is_trained_with_its_own_rate():
    model = _model()
    first, last = list(model.children())[0], list(model.children())[2]
    optimizer = optimizers.SGD(first.parameters(), lr=0.1)
    optimizer.add_param_group({"params": last.parameters(), "lr": 0.0})
    before = last.weight.detach().clone()
    _train(model, optimizer, 2)
    assert [group["lr"] for group in optimizer.param_groups] == [0.1, 0.0]
    assert torch.equal(last.weight, before)


def test_a_trial_in_a_new_process_never_imports_torch_dynamo(tmp_path):
    """torch._dynamo is what these classes exist to avoid (1.2-1.5 CPU-seconds a process): a
    magnitude trial (SGD: dense stage, prune, retrain) and an L0 trial (Adam) in one process."""
    script = (
        "import sys\n"
        "from sparsetune.config import DataConfig, SyntheticOptions, TrainConfig, TrialConfig\n"
        "from sparsetune.trial import run_trial\n"
        "data = DataConfig(name='synthetic', val_size=50, synthetic=SyntheticOptions(\n"
        "    input_shape=(1, 28, 28), num_classes=10, train_size=300, test_size=50))\n"
        "for method, params in [('magnitude', {'rounds': 2}), ('l0', {'epochs': 1})]:\n"
        "    run_trial(TrialConfig(model='lenet300', data=data, train=TrainConfig(epochs=1),\n"
        "        method=method, params=params, seed=0, device='cpu'), cache_dir=sys.argv[1])\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["False"]
