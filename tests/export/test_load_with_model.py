"""`sparsetune.load(path, model=...)`: a ticket of a model given to `sparsetune.prune` as an
`nn.Module` instance names it by a generated `python-...` name that only the process that ran it
knows. Another process gives the architecture itself (a factory or an instance) and gets the
ticket's model; without it, or with a model that does not fit, one line says what to do.

One real prune of a tiny MLP (Linear, BatchNorm, Linear; six hidden units so weak that global
magnitude pruning empties them, so the structured export has units to remove) in this process,
its dense, sparse and structured exports, and one fresh Python process that loads them all.
"""

from __future__ import annotations

import importlib
import os
import sys
import textwrap

import pytest
import torch
from python_script import script_json
from safetensors.torch import load_file, save_file

import sparsetune
from sparsetune.export import encode, read_ticket
from sparsetune.export.header import read_header
from sparsetune.export.ticket import GENERATED_NAME
from sparsetune.search import objects

NETS = """
    import torch
    from torch import nn


    class TinyMLP(nn.Module):
        def __init__(self, hidden=16):
            super().__init__()
            self.fc1 = nn.Linear(64, hidden)
            self.norm = nn.BatchNorm1d(hidden)
            self.fc2 = nn.Linear(hidden, 2)

        def forward(self, x):
            return self.fc2(torch.relu(self.norm(self.fc1(x.flatten(1)))))


    def weak_units():
        torch.manual_seed(0)
        net = TinyMLP()
        with torch.no_grad():
            net.fc1.weight[:6] *= 1e-4  # the smallest weights: global magnitude empties them
        return net
"""
MODULE = "load_with_model_nets"

# Run in a fresh process with the nets' folder on PYTHONPATH: argv = run folder, exports
# folder, batch file, outputs file. Prints {case: error line} and the instance checks as JSON.
LOAD_SCRIPT = """
import json, sys
import torch
from safetensors.torch import load_file, save_file
from torch.nn.utils import parametrize
import sparsetune
from sparsetune.export import encode, read_ticket
from load_with_model_nets import TinyMLP, weak_units

run, exports, batch_file, outputs_file = sys.argv[1:]
x = load_file(batch_file)["x"]
outputs, errors = {}, {}

def attempt(case, make):
    try:
        model = make()
    except ValueError as error:
        errors[case] = str(error)
        return None
    with torch.no_grad():
        outputs[case] = model(x)
    return model

instance = weak_units().train()
before = {key: value.clone() for key, value in instance.state_dict().items()}
attempt("ticket, factory", lambda: sparsetune.load(run, model=weak_units))
attempt("ticket, class", lambda: sparsetune.load(run, model=TinyMLP))
loaded = attempt("ticket, instance", lambda: sparsetune.load(run, model=instance))
masked = attempt("ticket, instance, masks", lambda: sparsetune.load(run, True, instance))
attempt("read_ticket, masked", lambda: read_ticket(run, model=TinyMLP).masked_model())
attempt(
    "encode structured",
    lambda: encode(read_ticket(run, model=TinyMLP), "structured").model,
)
for format in ("dense", "sparse", "structured"):
    path = f"{exports}/{format}.safetensors"
    attempt(f"{format}, factory", lambda: sparsetune.load(path, model=weak_units))
    attempt(f"{format}, instance", lambda: sparsetune.load(path, model=instance))
    attempt(f"{format}, no model", lambda: sparsetune.load(path))
    attempt(f"{format}, mismatched", lambda: sparsetune.load(path, model=TinyMLP(hidden=8)))
attempt(
    "structured, other class",
    lambda: sparsetune.load(f"{exports}/structured.safetensors", model=torch.nn.Linear(64, 2)),
)
attempt("ticket, no model", lambda: sparsetune.load(run))
attempt("ticket, no model, export", lambda: encode(read_ticket(run), "dense"))
attempt("ticket, mismatched", lambda: sparsetune.load(run, model=lambda: TinyMLP(hidden=8)))
attempt("ticket, not a model", lambda: sparsetune.load(run, model=3))
save_file({case: value.contiguous() for case, value in outputs.items()}, outputs_file)
print(json.dumps({
    "errors": errors,
    "instance unchanged": all(
        torch.equal(before[key], value) for key, value in instance.state_dict().items()
    ),
    "instance still training": instance.training,
    "instance has no masks": not any(map(parametrize.is_parametrized, instance.modules())),
    "loaded is a copy": loaded is not instance and loaded.fc1.weight is not instance.fc1.weight,
    "loaded in eval mode": not loaded.training,
    "masks attached": parametrize.is_parametrized(masked.fc1),
}))
"""


def _data() -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """A learnable two-class problem on 1 x 8 x 8 inputs: 300 train, 100 test."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(400, 1, 8, 8, generator=generator)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    return (x[:300], y[:300]), (x[300:], y[300:])


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The prune run of a TinyMLP instance, its three exports, a batch, and the outputs of the
    masked ticket model on it (built here, where the generated name is registered)."""
    root = tmp_path_factory.mktemp("load_with_model")
    nets = root / "nets"
    nets.mkdir()
    (nets / f"{MODULE}.py").write_text(textwrap.dedent(NETS))
    sys.path.insert(0, str(nets))
    try:
        module = importlib.import_module(MODULE)
    finally:
        sys.path.remove(str(nets))
    result = sparsetune.prune(
        module.weak_units(),
        data=_data(),
        params={"rounds": 1, "retrain_epochs": 1, "criterion": "global", "sparsity": 0.5},
        epochs=1,
        val_size=100,
        out=root / "run",
        cache_dir=root / "cache",
        quiet=True,
    )
    ticket = read_ticket(root / "run")
    exports = root / "exports"
    for format in ("dense", "sparse", "structured"):
        encode(ticket, format).write(exports / f"{format}.safetensors")
    x = torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    save_file({"x": x}, str(root / "batch.safetensors"))
    with torch.no_grad():
        expected = ticket.masked_model()(x)
    return {
        "root": root,
        "nets": nets,
        "name": result.config.model,
        "expected": expected,
        "module": module,
    }


@pytest.fixture(scope="module")
def loaded(made):
    """The fresh process's outputs per case and its report (errors, checks of the instance)."""
    root = made["root"]
    outputs = root / "outputs.safetensors"
    arguments = [str(root / "run"), str(root / "exports"), str(root / "batch.safetensors")]
    report = script_json(
        LOAD_SCRIPT,
        *arguments,
        str(outputs),
        cwd=root,
        env={**_environment(), "PYTHONPATH": str(made["nets"])},
        timeout=300,
    )
    return load_file(str(outputs)), report


def _environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def test_the_ticket_names_the_instance_by_a_generated_name(made):
    assert made["name"].startswith("python-TinyMLP-")
    assert GENERATED_NAME.fullmatch(made["name"])
    # The form ticket.py recognises is the one the search layer gives, factories included.
    assert GENERATED_NAME.fullmatch(objects.model_name(made["module"].weak_units)[0])
    assert GENERATED_NAME.fullmatch(objects.model_name(lambda: made["module"].TinyMLP())[0])


@pytest.mark.parametrize(
    "case",
    [
        "ticket, factory",
        "ticket, class",
        "ticket, instance",
        "ticket, instance, masks",
        "read_ticket, masked",
        "dense, factory",
        "dense, instance",
        "sparse, factory",
        "sparse, instance",
    ],
)
def test_another_process_loads_the_ticket_and_its_exports_with_model(made, loaded, case):
    outputs, report = loaded
    assert case not in report["errors"], report["errors"][case]
    torch.testing.assert_close(outputs[case], made["expected"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", ["structured, factory", "structured, instance"])
def test_the_structured_export_is_rebuilt_on_the_given_model(made, loaded, case):
    outputs, report = loaded
    assert case not in report["errors"], report["errors"][case]
    # Smaller layers computing the same function (constants folded): within 1e-5.
    torch.testing.assert_close(outputs[case], made["expected"], rtol=0, atol=1e-5)
    torch.testing.assert_close(outputs["encode structured"], made["expected"], rtol=0, atol=1e-5)
    header = read_header(made["root"] / "exports" / "structured.safetensors")
    assert header["changed_layers"]["fc1"]["args"]["out_features"] < 16


def test_the_given_instance_is_copied_and_left_as_it_was(loaded):
    _, report = loaded
    assert report["instance unchanged"]
    assert report["instance still training"]
    assert report["instance has no masks"]
    assert report["loaded is a copy"]
    assert report["loaded in eval mode"]
    assert report["masks attached"]


@pytest.mark.parametrize(
    "case", ["ticket, no model", "dense, no model", "sparse, no model", "structured, no model"]
)
def test_without_model_another_process_is_told_to_pass_it(made, loaded, case):
    _, report = loaded
    message = report["errors"][case]
    assert "\n" not in message
    assert f"its model {made['name']} was a Python object given to sparsetune in another " in (
        message
    )
    assert "pass model= (an instance of the same class, or the factory that built it)" in message


def test_exporting_the_ticket_without_model_is_refused_before_anything_is_built(made, loaded):
    _, report = loaded
    message = report["errors"]["ticket, no model, export"]
    assert "\n" not in message and "pass model=" in message


@pytest.mark.parametrize(
    ("case", "file", "label"),
    [
        ("ticket, mismatched", "run/round-1.safetensors", "<lambda>"),
        ("dense, mismatched", "exports/dense.safetensors", "<TinyMLP object>"),
        ("sparse, mismatched", "exports/sparse.safetensors", "<TinyMLP object>"),
    ],
)
def test_a_model_that_does_not_fit_is_one_line_naming_the_file_and_the_mismatch(
    made, loaded, case, file, label
):
    _, report = loaded
    assert report["errors"][case] == (
        f"{made['root'] / file}: its tensors do not fit model={label} (fc1.weight is [16, 64] in "
        "the file, [8, 64] in the model); pass the class or factory the file was made from"
    )


def test_a_structured_file_on_a_model_without_its_layers_is_one_line(made, loaded):
    outputs, report = loaded
    # The changed layers' widths come from the file: a TinyMLP of another width takes them.
    assert "structured, mismatched" not in report["errors"]
    torch.testing.assert_close(
        outputs["structured, mismatched"], made["expected"], atol=1e-5, rtol=0
    )
    message = report["errors"]["structured, other class"]
    assert message == (
        f"{made['root'] / 'exports' / 'structured.safetensors'}: its tensors do not fit "
        "model=<Linear object> (the model has 'weight', the file does not; 2 missing in all); "
        "pass the class or factory the file was made from"
    )


def test_something_that_is_not_a_model_is_one_line(loaded):
    _, report = loaded
    assert report["errors"]["ticket, not a model"] == (
        "model=<int object>: give a torch.nn.Module instance, a callable returning one, or a "
        "model name or import path 'package.module:factory'"
    )


def test_in_this_process_a_key_missing_from_the_model_is_named(made):
    module = made["module"]

    class Wider(module.TinyMLP):
        def __init__(self):
            super().__init__()
            self.extra = torch.nn.Linear(2, 2)

    with pytest.raises(ValueError) as caught:
        sparsetune.load(made["root"] / "run", model=Wider)
    message = str(caught.value)
    assert "\n" not in message
    assert "(the model has 'extra.weight', the file does not; 2 missing in all)" in message
