"""Crafted tickets and exported files: `sparsetune.load`, `read_ticket` and `sparsetune export`
refuse every damaged header and tensor list with one `ValueError` line naming the file (exit 2 for
the command, nothing written), before a tensor is allocated; and opening a file runs no code of
its choosing: a header naming `package.module:factory` is imported only with `trust_code=True`
(`--trust-code`), and then never from the working folder or the file's folder."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_one_error_line, run_cli
from safetensors.torch import load_file, save_file
from torch import nn

import sparsetune
from sparsetune.export import encode, read_ticket
from sparsetune.export.header import encode_header, needs_trust, read_header
from sparsetune.models import build_model
from sparsetune.pruning.masking import attach_masks, squashed_state_dict

SHAPE = [1, 8, 8]
HEADER = {"format": "ticket", "model": "lenet300", "input_shape": SHAPE, "num_classes": 10}


def ticket_tensors() -> dict[str, torch.Tensor]:
    """A LeNet-300-100 ticket on 1 x 8 x 8 inputs, as a trial writes it: half of each weight
    masked (no training: the weights as built, seeded)."""
    torch.manual_seed(0)
    model = build_model("lenet300", tuple(SHAPE), 10)
    masks = attach_masks(model)
    masks.update({name: torch.rand(mask.shape) > 0.5 for name, mask in masks.items()})
    tensors = {f"mask.{name}": mask.bool() for name, mask in masks.state().items()}
    return tensors | {f"weight.{key}": value for key, value in squashed_state_dict(model).items()}


def write(path: Path, tensors: dict[str, torch.Tensor], info: dict | None = None, raw=None):
    """A safetensors file with `info` as its sparsetune header (or `raw` as the header's text)."""
    metadata = encode_header(info) if raw is None else {"sparsetune": raw}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


@pytest.fixture(scope="module")
def tensors() -> dict[str, torch.Tensor]:
    return ticket_tensors()


@pytest.fixture(scope="module")
def exports(tensors, tmp_path_factory) -> dict[str, Path]:
    """The ticket and its dense and sparse files, as sparsetune writes them."""
    folder = tmp_path_factory.mktemp("exports")
    ticket = write(folder / "round-1.safetensors", tensors, HEADER)
    files = {"ticket": ticket}
    for format in ("dense", "sparse"):
        files[format] = encode(read_ticket(ticket), format).write(folder / f"{format}.st")
    return files


def refusal(path: Path, **keywords) -> str:
    """The one-line ValueError `sparsetune.load(path)` raises."""
    with pytest.raises(ValueError) as caught:
        sparsetune.load(path, **keywords)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 400, message
    assert str(path) in message, message
    return message


# (what the header says instead, words of the one line)
HEADERS = {
    "num-classes-negative": ({"num_classes": -5}, ["num_classes", "greater than or equal to 1"]),
    "num-classes-string": ({"num_classes": "10"}, ["num_classes", "valid integer"]),
    "num-classes-huge": ({"num_classes": 10**12}, ["num_classes", "less than or equal"]),
    "num-classes-bool": ({"num_classes": True}, ["num_classes"]),
    "input-shape-string": ({"input_shape": "1,8,8"}, ["input_shape", "valid list"]),
    "input-shape-negative": ({"input_shape": [1, -8, 8]}, ["input_shape.1"]),
    "input-shape-zero": ({"input_shape": [0]}, ["input_shape.0"]),
    "input-shape-empty": ({"input_shape": []}, ["input_shape"]),
    "input-shape-float": ({"input_shape": [1.0, 8, 8]}, ["input_shape.0", "valid integer"]),
    "input-shape-long": ({"input_shape": [1] * 9}, ["input_shape"]),
    "input-shape-huge": ({"input_shape": [3, 100_000, 100_000]}, ["input_shape", "values"]),
    "model-number": ({"model": 5}, ["model", "valid string"]),
    "model-list": ({"model": ["lenet300"]}, ["model", "valid string"]),
    "model-empty": ({"model": ""}, ["model"]),
    "model-unknown": ({"model": "lenet9000"}, ["lenet9000"]),
    "format-unknown": ({"format": "onnx"}, ["unknown sparsetune format 'onnx'"]),
    "format-missing": ({"format": None}, ["unknown sparsetune format None"]),
    "metric-text": ({"val_acc": "high"}, ["val_acc"]),
    "round-negative": ({"round": -1}, ["round"]),
    "masked-not-a-list": ({"masked": "fc1.weight"}, ["masked"]),
    "other-model": ({"model": "lenet5", "input_shape": [1, 28, 28]}, ["do not fit lenet5"]),
    "other-classes": ({"num_classes": 7}, ["do not fit lenet300", "fc3.weight is [10, 100]"]),
    "other-input": ({"input_shape": [1, 4096, 4096]}, ["fc1.weight is [300, 64] in the file"]),
}


@pytest.mark.parametrize(("change", "words"), HEADERS.values(), ids=HEADERS.keys())
def test_a_crafted_ticket_header_is_one_line_naming_the_file(tensors, tmp_path, change, words):
    info = {**HEADER, **change}
    if change.get("format", "") is None:
        del info["format"]
    path = write(tmp_path / "round-1.safetensors", tensors, info)
    started = time.monotonic()
    message = refusal(path)
    for word in words:
        assert word in message, message
    # "other-input" names a 16-million-pixel input: LeNet-300-100's first layer would be 20 GB;
    # it is compared on the meta device and refused without being allocated.
    assert time.monotonic() - started < 30
    with pytest.raises(ValueError):  # reading the ticket, and building its model, alike
        read_ticket(path).plain_model()


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("{not json", ["not valid JSON"]),
        ("[" * 100_000 + "]" * 100_000, ["not valid JSON"]),  # deeper than json can recurse
        ("[1, 2]", ["unknown sparsetune format"]),
        (json.dumps({"format": "ticket"}), ["lacks model, input_shape, num_classes"]),
        (json.dumps({**HEADER, "num_classes": float("nan")}), ["num_classes"]),
    ],
    ids=["not-json", "deep", "list", "bare", "nan"],
)
def test_a_header_that_is_not_json_of_the_right_shape_is_one_line(tensors, tmp_path, raw, words):
    path = write(tmp_path / "round-1.safetensors", tensors, raw=raw)
    message = refusal(path)
    for word in words:
        assert word in message, message


def _without(tensors: dict, *keys: str) -> dict:
    return {key: value for key, value in tensors.items() if key not in keys}


# (how the ticket's tensors are changed, words)
TENSORS = {
    "mask-shape": (
        lambda t: {**t, "mask.fc1.weight": torch.ones(3, 3, dtype=torch.bool)},
        ["the mask of fc1.weight is not a bool of its shape"],
    ),
    "mask-dtype": (
        lambda t: {**t, "mask.fc1.weight": torch.ones(300, 64)},
        ["the mask of fc1.weight"],
    ),
    "mask-without-weight": (
        lambda t: _without(t, "weight.fc2.weight"),
        ["an incomplete ticket (no weights for fc2.weight)"],
    ),
    "no-weights": (
        lambda t: {k: v for k, v in t.items() if k.startswith("mask.")},
        ["no weights for any layer"],
    ),
    "stray-tensor": (
        lambda t: {**t, "__class__": torch.zeros(1)},
        ["(__class__ is neither a mask nor a weight)"],
    ),
    "weight-shape": (
        lambda t: {**t, "weight.fc1.bias": torch.zeros(10**6)},
        ["do not fit lenet300", "fc1.bias is [1000000] in the file, [300] in the model"],
    ),
    "extra-weight": (
        lambda t: {**t, "weight.fc9.weight": torch.zeros(2)},
        ["the file has 'fc9.weight', the model does not"],
    ),
    "masked-buffer": (
        lambda t: {**t, "weight.bn.weight": torch.zeros(2), "mask.bn.weight": torch.ones(2) > 0},
        ["the file has 'bn.weight'"],
    ),
}


@pytest.mark.parametrize(("change", "words"), TENSORS.values(), ids=TENSORS.keys())
def test_ticket_tensors_that_disagree_with_the_header_are_one_line(
    tensors, tmp_path, change, words
):
    path = write(tmp_path / "round-1.safetensors", change(dict(tensors)), HEADER)
    message = refusal(path, masks=True)
    for word in words:
        assert word in message, message


def _sparse_file(exports, tmp_path, change_info=None, change_tensors=None) -> Path:
    tensors = load_file(str(exports["sparse"]))
    info = read_header(exports["sparse"])
    info = change_info(dict(info)) if change_info else info
    tensors = change_tensors(tensors) if change_tensors else tensors
    return write(tmp_path / "sparse.st", tensors, info)


@pytest.mark.parametrize(
    ("change_info", "change_tensors", "words"),
    [
        (lambda i: {**i, "sparse": {**i["sparse"], "fc1.weight": [-1, 64]}}, None, ["sparse"]),
        (
            lambda i: {**i, "sparse": {**i["sparse"], "fc1.weight": [2**30, 2**30]}},
            None,
            ["sparse", "2**40"],
        ),
        (
            lambda i: {**i, "sparse": {**i["sparse"], "fc1.weight": [2**20, 2**19]}},
            None,
            ["fc1.weight is [1048576, 524288] in the file, [300, 64] in the model"],
        ),
        (lambda i: {**i, "sparse": "fc1.weight"}, None, ["sparse", "valid dictionary"]),
        (lambda i: _without(i, "sparse"), None, ["sparse", "Field required"]),
        (
            None,
            lambda t: {**t, "indices.fc2.weight": t["indices.fc2.weight"][:5]},
            ["sparse entries of fc2.weight are damaged"],
        ),
        (
            None,
            lambda t: {**t, "indices.fc2.weight": t["indices.fc2.weight"].float()},
            ["sparse entries of fc2.weight are damaged"],
        ),
        (
            None,
            lambda t: {**t, "indices.fc3.weight": torch.full_like(t["indices.fc3.weight"], 9999)},
            ["sparse entries of fc3.weight are damaged", "an index outside its 1000 values"],
        ),
        (
            None,
            lambda t: {**t, "values.fc9.weight": torch.zeros(1)},
            ["fc9.weight has sparse entries but no shape"],
        ),
        (lambda i: {**i, "masked": ["nowhere"]}, None, ["`masked` names nowhere"]),
    ],
    ids=[
        "negative",
        "huge",
        "too-big-for-the-model",
        "not-a-table",
        "no-table",
        "short-indices",
        "float-indices",
        "index-out-of-range",
        "values-without-shape",
        "masked-missing",
    ],
)
def test_a_crafted_sparse_file_is_one_line(exports, tmp_path, change_info, change_tensors, words):
    path = _sparse_file(exports, tmp_path, change_info, change_tensors)
    message = refusal(path, masks=True)
    for word in words:
        assert word in message, message


CHAIN = [
    {"type": "Flatten", "args": {"start_dim": 1, "end_dim": -1}},
    {"type": "Linear", "args": {"in_features": 64, "out_features": 4, "bias": True}},
]


@pytest.mark.parametrize(
    ("layers", "words"),
    [
        ([{"type": "Linear", "args": {"in_features": -3, "out_features": 2}}], ["in_features"]),
        ([{"type": "Linear", "args": {"in_features": 10**6, "out_features": 10**6}}], ["fit"]),
        ([{"type": "Conv2d", "args": {"in_channels": 1, "out_channels": 1, "kernel_size": 0}}], []),
        ([{"type": "SelectFeatures", "size": "64"}], ["SelectFeatures takes a positive size"]),
        ([{"type": "Module"}], ["disallowed type 'Module'"]),
        ([{"type": "Call", "function": "builtins.exec", "args": ["1"]}], ["disallowed function"]),
        ([{"type": "Linear", "args": {"in_features": [1] * 50, "out_features": 2}}], []),
        ([{"type": "Dropout", "args": {"p": 7.0}}], ["malformed", "dropout probability"]),
        ([], ["layers"]),
        ("Linear", ["layers"]),
        (None, ["either a `layers` list or a `changed_layers` table"]),
    ],
    ids=[
        "negative",
        "terabytes",
        "zero-kernel",
        "string-size",
        "type",
        "function",
        "long-list",
        "bad-value",
        "empty",
        "string",
        "none",
    ],
)
def test_a_crafted_structured_file_is_one_line(tmp_path, layers, words):
    info = {**HEADER, "format": "structured", "layers": layers}
    tensors = {"1.weight": torch.zeros(4, 64), "1.bias": torch.zeros(4)}
    path = write(tmp_path / "small.st", tensors, info)
    message = refusal(path)
    for word in words:
        assert word in message, message


def test_a_well_formed_chain_loads_and_the_same_with_other_tensors_does_not(tmp_path):
    info = {**HEADER, "format": "structured", "layers": CHAIN}
    tensors = {"1.weight": torch.randn(4, 64), "1.bias": torch.randn(4)}
    model = sparsetune.load(write(tmp_path / "small.st", tensors, info))
    torch.testing.assert_close(model[1].weight, tensors["1.weight"])
    tensors["1.weight"] = torch.zeros(4, 65)
    assert "1.weight is [4, 65] in the file, [4, 64] in the model" in refusal(
        write(tmp_path / "other.st", tensors, info)
    )


def test_changed_layers_that_are_not_module_paths_are_one_line(tensors, tmp_path):
    info = {
        **HEADER,
        "format": "structured",
        "changed_layers": {"fc1/../x": {"type": "Linear", "args": {"in_features": 1}}},
    }
    state = {k.removeprefix("weight."): v for k, v in tensors.items() if k.startswith("weight.")}
    message = refusal(write(tmp_path / "small.st", state, info))
    assert "is not a module path" in message


def _raw_file(path: Path, header: dict | bytes, data: bytes = b"") -> Path:
    """A file in safetensors' layout (8-byte little-endian header length, the JSON header, the
    data) whose header says whatever the test wants."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make",
    [
        lambda p: _raw_file(p, {"w": {"dtype": "F32", "shape": [10**9], "data_offsets": [0, 4]}}),
        lambda p: _raw_file(p, {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 2**62]}}),
        lambda p: _raw_file(p, {"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}),
        lambda p: _raw_file(p, {"w": {"dtype": "EVIL", "shape": [1], "data_offsets": [0, 4]}}),
        lambda p: _raw_file(p, {"__metadata__": {"sparsetune": 5}}),
        lambda p: _bytes(p, struct.pack("<Q", 2**63) + b"{}"),
        lambda p: _bytes(p, b""),
    ],
    ids=["shape-beyond-data", "offset-beyond-file", "negative-shape", "dtype", "meta", "len", "0"],
)
def test_a_damaged_safetensors_layout_is_one_line(tmp_path, make):
    path = make(tmp_path / "round-1.safetensors")
    message = refusal(path)
    assert "not a safetensors file" in message
    assert message.endswith("(a .safetensors file), or copy it again if it was cut short")


def test_a_fifo_given_as_the_file_is_refused_without_opening_it(tmp_path):
    pipe = tmp_path / "round-1.safetensors"
    os.mkfifo(pipe)
    assert "is a named pipe (FIFO), not a file" in refusal(pipe)
    with pytest.raises(ValueError, match="named pipe"):
        read_ticket(pipe)


# --- trust: a header that names user code --------------------------------------------------

HELPERS = """
    import pathlib
    from torch import nn

    pathlib.Path({marker!r}).write_text("imported")

    def make():
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
"""
USER_MODEL = "helpers_for_tickets:make"
# Run with `python -c` in the folder holding the ticket (Python puts "" first on sys.path):
# argv = the ticket, "trust" or not; prints the model's first weight sum or the error line.
LOAD = """
import sys
import sparsetune
try:
    model = sparsetune.load(sys.argv[1], trust_code=sys.argv[2] == "trust")
    print("built", float(model[1].weight.detach().sum()))
except ValueError as error:
    print("refused", error)
"""


@pytest.fixture
def user_ticket(tmp_path) -> dict[str, Path]:
    """A downloaded folder: a ticket whose header names `helpers_for_tickets:make`, with a
    `helpers_for_tickets.py` beside it that writes a marker file when imported; and the same
    module in a separate `lib/` folder, as an installed package of the user's would be."""
    folder, lib = tmp_path / "download", tmp_path / "lib"
    folder.mkdir()
    lib.mkdir()
    marker = tmp_path / "imported.txt"
    for where in (folder, lib):
        code = textwrap.dedent(HELPERS.format(marker=str(marker)))
        (where / "helpers_for_tickets.py").write_text(code)
    torch.manual_seed(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    tensors = {f"weight.{key}": value for key, value in net.state_dict().items()}
    tensors["mask.1.weight"] = torch.ones(4, 64, dtype=torch.bool)
    info = {**HEADER, "model": USER_MODEL, "num_classes": 4}
    ticket = write(folder / "round-1.safetensors", tensors, info)
    expected = float(net[1].weight.detach().sum())
    return {"folder": folder, "lib": lib, "marker": marker, "ticket": ticket, "sum": expected}


def _load_in(folder: Path, ticket: Path, trust: bool, pythonpath: Path | None = None) -> str:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    result = subprocess.run(
        [sys.executable, "-c", LOAD, str(ticket), "trust" if trust else "no"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def test_a_header_naming_user_code_is_never_imported_without_trust(user_ticket):
    line = _load_in(user_ticket["folder"], user_ticket["ticket"], trust=False)
    assert line == (
        f"refused {user_ticket['ticket']}: its model is built by user code "
        f"'{USER_MODEL}'; opening a file does not run code unless you pass trust_code=True "
        "(--trust-code) or model=..."
    )
    assert not user_ticket["marker"].exists()  # helpers_for_tickets.py never ran
    # Reading the ticket builds nothing, so it needs no trust; its model does.
    info = read_ticket(user_ticket["ticket"]).info
    assert info["model"] == USER_MODEL
    with pytest.raises(ValueError, match="built by user code"):
        read_ticket(user_ticket["ticket"]).plain_model()
    with pytest.raises(ValueError, match="built by user code"):
        encode(read_ticket(user_ticket["ticket"]), "dense")
    assert not user_ticket["marker"].exists()


def test_with_trust_the_module_comes_from_pythonpath_never_the_working_folder(user_ticket):
    # Trusted, but the module lies only in the working folder (first on sys.path under -c).
    line = _load_in(user_ticket["folder"], user_ticket["ticket"], trust=True)
    assert line.startswith("refused ") and "cannot import 'helpers_for_tickets'" in line, line
    assert not user_ticket["marker"].exists()
    # Trusted, and importable where the user's packages are: built, with the ticket's weights.
    line = _load_in(user_ticket["folder"], user_ticket["ticket"], True, user_ticket["lib"])
    assert line.startswith("built "), line
    assert float(line.split()[1]) == pytest.approx(user_ticket["sum"], abs=1e-4)
    assert user_ticket["marker"].read_text() == "imported"


def test_model_given_by_the_caller_needs_no_trust(user_ticket):
    model = sparsetune.load(
        user_ticket["ticket"], model=nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    )
    assert float(model[1].weight.detach().sum()) == pytest.approx(user_ticket["sum"], abs=1e-4)
    assert not user_ticket["marker"].exists()


@pytest.mark.parametrize(
    ("name", "trusted"),
    [
        ("lenet300", False),
        ("resnet20", False),
        ("torchvision:resnet18", False),
        ("torchvision.models:resnet18", False),
        ("timm:resnet18", False),
        ("helpers:make", True),
        ("os:system", True),
        ("torchvision:__class__", True),
        ("timm.models:mobilenetv3_small_050", False),
        ("timm.models.resnet:resnet18", False),
        ("torchvision.models:_private", True),
        ("torchvision.io:write_file", True),
        ("timm.layers:create_act_layer", True),
        ("sparsetune.models.lenet:LeNet300", True),
    ],
)
def test_which_names_need_trust(name, trusted):
    assert needs_trust(name) is trusted


def test_export_without_trust_code_refuses_and_imports_nothing(user_ticket, tmp_path):
    out = tmp_path / "out.safetensors"
    arguments = ["export", str(user_ticket["ticket"]), "--format", "dense", "--out", str(out)]
    # python -m puts the working folder first on sys.path: the helpers lie right there.
    result = run_cli(*arguments, cwd=user_ticket["folder"])
    assert_one_error_line(result, ["built by user code 'helpers_for_tickets:make'", "--trust-code"])
    assert not user_ticket["marker"].exists() and not out.exists()
    result = run_cli(
        *arguments,
        "--trust-code",
        "--json",
        cwd=user_ticket["folder"],
        env={"PYTHONPATH": str(user_ticket["lib"])},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["parameters"] == 64 * 4 + 4 and summary["bytes"] == out.stat().st_size
    assert user_ticket["marker"].exists()


# --- `sparsetune export` of a crafted ticket, and `--out` that must not be written ------------


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"num_classes": -5}, ["num_classes"]),
        ({"input_shape": "1,8,8"}, ["input_shape"]),
        # The file used to be written first, then fail to build.
        ({"model": "lenet5", "input_shape": [1, 28, 28]}, ["do not fit lenet5"]),
        ({"model": "helpers:make"}, ["--trust-code"]),
    ],
    ids=["num-classes", "input-shape", "other-model", "user-code"],
)
def test_export_of_a_crafted_ticket_writes_nothing(tensors, tmp_path, change, words):
    ticket = write(tmp_path / "round-1.safetensors", tensors, {**HEADER, **change})
    before = sorted(tmp_path.rglob("*"))
    out = tmp_path / "exported" / "model.safetensors"
    result = run_cli("export", str(ticket), "--format", "dense", "--out", str(out), cwd=tmp_path)
    assert_one_error_line(result, [str(ticket), *words])
    assert sorted(tmp_path.rglob("*")) == before


def _fifo(tmp: Path, ticket: Path) -> Path:
    os.mkfifo(tmp / "pipe")
    return tmp / "pipe"


def _link_to_fifo(tmp: Path, ticket: Path) -> Path:
    os.mkfifo(tmp / "pipe")
    (tmp / "link.safetensors").symlink_to(tmp / "pipe")
    return tmp / "link.safetensors"


def _folder(tmp: Path, ticket: Path) -> Path:
    (tmp / "models").mkdir()
    return tmp / "models"


def _link_to_ticket(tmp: Path, ticket: Path) -> Path:
    (tmp / "same.safetensors").symlink_to(ticket)
    return tmp / "same.safetensors"


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (_fifo, ["--out", "is a named pipe (FIFO), not a file"]),
        (_link_to_fifo, ["--out", "is a named pipe (FIFO), not a file"]),
        (_folder, ["--out", "is a folder"]),
        (lambda tmp, ticket: ticket, ["--out", "is the source ticket itself"]),
        (_link_to_ticket, ["--out", "is the source ticket itself"]),
    ],
    ids=["fifo", "link-to-fifo", "folder", "source", "link-to-source"],
)
def test_export_refuses_an_out_that_is_not_a_regular_file_or_is_the_source(
    tensors, tmp_path, make, words
):
    ticket = write(tmp_path / "round-1.safetensors", tensors, HEADER)
    out = make(tmp_path, ticket)
    before = sorted(tmp_path.rglob("*"))
    content = ticket.read_bytes()
    result = run_cli("export", str(tmp_path), "--format", "sparse", "--out", str(out), cwd=tmp_path)
    assert_one_error_line(result, words)
    assert sorted(tmp_path.rglob("*")) == before and ticket.read_bytes() == content
    assert not any(path.name.startswith(".") for path in tmp_path.iterdir())  # no staging file
