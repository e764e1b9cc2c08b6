"""The bad-input table: every command and every kind of file a user hands sparsetune, each case
refused the one way (docs/reliability.md): exit code 2, one `sparsetune: error:` line holding
the words that name the problem, no traceback, and nothing left behind (the folder the command
ran in holds exactly what the case put there).

A case is (id, command line, words). The command line may use `{tmp}` (the case's folder) and
`{ticket}` (a real ticket made once by `sparsetune prune`); the files the cases name are made by
`_make_inputs` below from real parts: real Fashion-MNIST files cut short or corrupted, real
safetensors files with crafted headers, YAML written to hurt.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_one_error_line, run_cli, run_cli_many
from safetensors.torch import load_file, save_file

pytestmark = pytest.mark.slow  # over 100 short subprocesses

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

SEARCH = ["search", "--model", "lenet5", "--out", "{tmp}/sweep", "--cache-dir", "{tmp}/cache"]
PRUNE = ["prune", "--model", "lenet300", "--dataset", "synthetic", "--val-size", "500"]
PRUNE_AT = [*PRUNE, "--out", "{tmp}/run", "--cache-dir", "{tmp}/cache"]
USER_PRUNE = ["prune", "--dataset", "synthetic", "--out", "{tmp}/run", "--cache-dir", "{tmp}/c"]
FASHION = ["prune", "--model", "lenet300", "--dataset", "fashion-mnist", "--subset", "200"]
FASHION_AT = [*FASHION, "--out", "{tmp}/run", "--cache-dir", "{tmp}/cache"]
EXPORT = ["--format", "dense", "--out", "{tmp}/exported.safetensors"]
EXPORT_DENSE = ["export", "{ticket}", "--format", "dense"]

BILLION_LAUGHS = textwrap.dedent(
    """\
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
    """
)

SPEC = "model: lenet5\ndataset: synthetic\n"
MAGNITUDE_C_FC = "methods:\n  magnitude:\n    c_fc: {}\n"
TEXT_FILES = {
    "bomb.yaml": BILLION_LAUGHS,
    "deep.yaml": "[" * 20_000 + "]" * 20_000,
    "dup-keys.yaml": "methods:\n  dense: {}\n  dense: {}\n",
    "empty.yaml": "",
    "space-step-negative.yaml": MAGNITUDE_C_FC.format("{low: 0.5, high: 2.5, step: -1}"),
    "space-step-zero.yaml": MAGNITUDE_C_FC.format("{low: 0.5, high: 2.5, step: 0}"),
    "space-step-log.yaml": MAGNITUDE_C_FC.format("{low: 0.5, high: 2.5, step: 0.5, log: true}"),
    "space-step-fraction.yaml": MAGNITUDE_C_FC.replace("c_fc", "rounds").format(
        "{low: 1, high: 4, step: 0.5}"
    ),
    "space-nan.yaml": MAGNITUDE_C_FC.format("{low: .nan, high: 2.5}"),
    "space-a-list.yaml": "- magnitude\n- snip\n",
    "points-unknown-method.yaml": "- method: magnitud\n  params: {}\n",
    "points-params-a-list.yaml": "- method: magnitude\n  params: [1, 2]\n",
    "points-models-a-string.yaml": "- method: magnitude\n  models: lenet5\n  params: {}\n",
    "points-inf.yaml": "- method: magnitude\n  params: {c_fc: .inf}\n",
    "spec-unknown-key.yaml": SPEC + "trails: 3\n",
    "spec-bad-trials.yaml": SPEC + "trials: -1\n",
    "spec-space-folder.yaml": SPEC + "space: a-folder\n",
    "spec-dup-keys.yaml": SPEC + "trials: 2\ntrials: 3\n",
    "spec-no-model.yaml": "dataset: synthetic\ntrials: 2\n",
    "not-a-sweep-state/sweep-state.json": "{not json",
    "state-a-list/sweep-state.json": "[1, 2, 3]",
    "state-missing-keys/sweep-state.json": '{"format": 1, "status": "running"}',
    "state-wrong-types/sweep-state.json": json.dumps(
        {
            "format": 1,
            "sweep_id": 5,
            "status": "sleeping",
            "identity": [],
            "config": "lenet5",
            "study_name": None,
            "ray_name": None,
            "tracking_uri": 3,
        }
    ),
    "crafted-pareto/pareto.json": "{not json",
    "crafted-pareto/trials.csv": "trial_id,round\nt1,1\n",
    "pareto-a-list/pareto.json": "[]",
    "pareto-a-list/trials.csv": "trial_id,round\n",
    "trials-garbage/pareto.json": json.dumps({"front": [], "hypervolume": 0}),
    "trials-garbage/trials.csv": "\x00\x01\x02garbage\n,,,\n",
    "not-a-database.db": "this is not a database\n",
    "a-file": "not a folder\n",
    "text.pt": "not a checkpoint\n",
    "not-a-ticket.txt": "hello\n",
    "not-an-npz.npz": "not a zip archive\n",
}

# Modules a user might point --model and --dataset at, each broken one way.
USER_MODULES = textwrap.dedent(
    """\
    import torch
    from torch import nn

    def mlp(input_shape, num_classes):
        size = 1
        for n in input_shape:
            size *= n
        return nn.Sequential(nn.Flatten(), nn.Linear(size, num_classes))

    def nothing_to_prune(input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.ReLU())

    def three_outputs(input_shape, num_classes):
        return mlp(input_shape, 3)

    def wrong_input():
        return nn.Sequential(nn.Flatten(), nn.Linear(7, 10))

    def raises(input_shape, num_classes):
        raise RuntimeError("out of coffee")

    def not_a_model():
        return 42

    def data_raises():
        raise OSError("the share is offline")

    def data_not_a_pair():
        return torch.zeros(3)

    def labels_out_of_range():
        x = torch.rand(64, 1, 28, 28)
        return (x, torch.full((64,), 99)), (x, torch.zeros(64, dtype=torch.long))
    """
)

CASES = [
    # --- search: option values (all checked before the sweep folder or an MLflow run exists)
    ("search-seed-negative", [*SEARCH, "--seed", "-1"], ["--seed"]),
    ("search-seed-too-large", [*SEARCH, "--seed", str(2**32)], ["--seed"]),
    ("search-cpus-inf", [*SEARCH, "--cpus-per-trial", "inf"], ["--cpus-per-trial"]),
    ("search-cpus-nan", [*SEARCH, "--cpus-per-trial", "nan"], ["--cpus-per-trial"]),
    ("search-cpus-zero", [*SEARCH, "--cpus-per-trial", "0"], ["--cpus-per-trial"]),
    ("search-cpus-beyond-machine", [*SEARCH, "--cpus-per-trial", "4096"], ["--cpus-per-trial"]),
    ("search-gpus-beyond-machine", [*SEARCH, "--gpus-per-trial", "64"], ["--gpus-per-trial"]),
    ("search-trials-absurd", [*SEARCH, "--trials", str(10**12)], ["--trials"]),
    ("search-tracking-uri-scheme", [*SEARCH, "--tracking-uri", "bogus://x"], ["--tracking-uri"]),
    (
        "search-tracking-uri-unwritable",
        [*SEARCH, "--tracking-uri", "sqlite:////proc/sparsetune/mlflow.db"],
        ["--tracking-uri"],
    ),
    (
        "search-tracking-uri-folder",
        [*SEARCH, "--tracking-uri", "sqlite:///{tmp}/a-folder"],
        ["--tracking-uri"],
    ),
    ("search-cache-dir-a-file", [*SEARCH, "--cache-dir", "{tmp}/a-file"], ["--cache-dir"]),
    (
        "search-data-dir-a-file",
        [*SEARCH, "--dataset", "fashion-mnist", "--data-dir", "{tmp}/a-file"],
        ["--data-dir"],
    ),
    ("search-memory-budget-negative", [*SEARCH, "--memory-budget-gb", "-1"], ["--memory-budget"]),
    ("search-val-size-negative", [*SEARCH, "--val-size", "-5"], ["--val-size"]),
    ("search-subset-zero", [*SEARCH, "--subset", "0"], ["--subset"]),
    ("search-out-a-file", [*SEARCH, "--out", "{tmp}/a-file"], ["--out", "a-file"]),
    # --- search: the space, every way a YAML file can hurt
    ("space-a-folder", [*SEARCH, "--space", "{tmp}/a-folder"], ["a-folder"]),
    ("space-a-fifo", [*SEARCH, "--space", "{tmp}/a-fifo"], ["a-fifo"]),
    ("space-alias-bomb", [*SEARCH, "--space", "{tmp}/bomb.yaml"], ["bomb.yaml"]),
    ("space-nested-20000", [*SEARCH, "--space", "{tmp}/deep.yaml"], ["deep.yaml"]),
    ("space-binary", [*SEARCH, "--space", "{tmp}/binary.yaml"], ["binary.yaml"]),
    ("space-duplicate-key", [*SEARCH, "--space", "{tmp}/dup-keys.yaml"], ["dense"]),
    ("space-empty", [*SEARCH, "--space", "{tmp}/empty.yaml"], ["empty.yaml"]),
    ("space-a-list", [*SEARCH, "--space", "{tmp}/space-a-list.yaml"], ["space-a-list.yaml"]),
    ("space-step-negative", [*SEARCH, "--space", "{tmp}/space-step-negative.yaml"], ["step"]),
    ("space-step-zero", [*SEARCH, "--space", "{tmp}/space-step-zero.yaml"], ["step"]),
    ("space-step-with-log", [*SEARCH, "--space", "{tmp}/space-step-log.yaml"], ["step", "log"]),
    ("space-step-fraction", [*SEARCH, "--space", "{tmp}/space-step-fraction.yaml"], ["step"]),
    ("space-bound-nan", [*SEARCH, "--space", "{tmp}/space-nan.yaml"], ["c_fc"]),
    ("space-missing", [*SEARCH, "--space", "{tmp}/nowhere.yaml"], ["nowhere.yaml"]),
    # --- search: enqueued points
    ("enqueue-a-folder", [*SEARCH, "--enqueue", "{tmp}/a-folder"], ["--enqueue"]),
    ("enqueue-alias-bomb", [*SEARCH, "--enqueue", "{tmp}/bomb.yaml"], ["bomb.yaml"]),
    (
        "enqueue-unknown-method",
        [*SEARCH, "--enqueue", "{tmp}/points-unknown-method.yaml"],
        ["magnitud"],
    ),
    (
        "enqueue-params-a-list",
        [*SEARCH, "--enqueue", "{tmp}/points-params-a-list.yaml"],
        ["params"],
    ),
    (
        "enqueue-models-a-string",
        [*SEARCH, "--enqueue", "{tmp}/points-models-a-string.yaml"],
        ["models"],
    ),
    ("enqueue-infinite-value", [*SEARCH, "--enqueue", "{tmp}/points-inf.yaml"], ["c_fc"]),
    ("enqueue-binary", [*SEARCH, "--enqueue", "{tmp}/binary.yaml"], ["binary.yaml"]),
    # --- search: user code and user files
    ("search-model-exits", [*SEARCH, "--model", "exits_on_import:net"], ["exits_on_import"]),
    ("search-model-raises", [*SEARCH, "--model", "user_models:raises"], ["raises"]),
    ("search-model-not-a-module", [*SEARCH, "--model", "user_models:not_a_model"], ["not_a"]),
    (
        "search-dataset-raises",
        [*SEARCH, "--dataset", "user_models:data_raises"],
        ["data_raises"],
    ),
    ("search-weights-a-folder", [*SEARCH, "--weights", "{tmp}/a-folder"], ["--weights"]),
    ("search-weights-garbage", [*SEARCH, "--weights", "{tmp}/text.pt"], ["text.pt"]),
    # --- search: sweep folders read back
    ("resume-state-not-json", ["search", "--resume", "{tmp}/not-a-sweep-state"], ["--resume"]),
    ("resume-state-a-list", ["search", "--resume", "{tmp}/state-a-list"], ["--resume"]),
    ("resume-state-missing-keys", ["search", "--resume", "{tmp}/state-missing-keys"], ["resume"]),
    ("resume-state-wrong-types", ["search", "--resume", "{tmp}/state-wrong-types"], ["resume"]),
    ("resume-not-a-sweep", ["search", "--resume", "{tmp}/a-folder"], ["--resume"]),
    ("resume-a-file", ["search", "--resume", "{tmp}/a-file"], ["--resume"]),
    (
        "out-holds-a-damaged-state",
        ["search", "--model", "lenet5", "--out", "{tmp}/not-a-sweep-state"],
        ["sweep-state.json"],
    ),
    # --- prune: option values, --set, user code
    ("prune-seed-negative", [*PRUNE_AT, "--seed", "-1"], ["--seed"]),
    ("prune-seed-too-large", [*PRUNE_AT, "--seed", str(2**32)], ["--seed"]),
    ("prune-epochs-negative", [*PRUNE_AT, "--epochs", "-1"], ["--epochs"]),
    ("prune-unknown-method", [*PRUNE_AT, "--method", "prune-all"], ["prune-all"]),
    ("prune-device-absent", [*PRUNE_AT, "--device", "cuda:7"], ["--device"]),
    ("prune-set-twice", [*PRUNE_AT, "--set", "rounds=1", "--set", "rounds=2"], ["rounds"]),
    ("prune-set-no-equals", [*PRUNE_AT, "--set", "rounds"], ["--set"]),
    ("prune-set-unknown-key", [*PRUNE_AT, "--set", "no_such_knob=1"], ["no_such_knob"]),
    ("prune-set-alias-bomb", [*PRUNE_AT, "--set", "rounds=" + BILLION_LAUGHS], ["--set"]),
    ("prune-set-nested", [*PRUNE_AT, "--set", "rounds=" + "[" * 5000], ["--set"]),
    ("prune-tracking-uri-scheme", [*PRUNE_AT, "--tracking-uri", "bogus://x"], ["--tracking-uri"]),
    (
        "prune-tracking-uri-unwritable",
        [*PRUNE_AT, "--tracking-uri", "sqlite:////proc/sparsetune/mlflow.db"],
        ["--tracking-uri"],
    ),
    ("prune-cache-dir-a-file", [*PRUNE, "--out", "{tmp}/run", "--cache-dir", "{tmp}/a-file"], []),
    ("prune-out-under-a-file", [*PRUNE, "--out", "{tmp}/a-file/run"], ["--out"]),
    ("prune-model-nothing-to-prune", [*USER_PRUNE, "--model", "user_models:nothing_to_prune"], []),
    ("prune-model-wrong-classes", [*USER_PRUNE, "--model", "user_models:three_outputs"], ["3"]),
    ("prune-model-wrong-input", [*USER_PRUNE, "--model", "user_models:wrong_input"], []),
    ("prune-model-raises", [*USER_PRUNE, "--model", "user_models:raises"], ["out of coffee"]),
    ("prune-model-exits", [*USER_PRUNE, "--model", "exits_on_import:net"], ["exits_on_import"]),
    ("prune-weights-truncated", [*PRUNE_AT, "--weights", "{tmp}/truncated.safetensors"], []),
    ("prune-weights-not-a-checkpoint", [*PRUNE_AT, "--weights", "{tmp}/text.pt"], ["text.pt"]),
    # --- prune: data the user brings
    (
        "data-factory-raises",
        ["prune", "--model", "lenet300", "--dataset", "user_models:data_raises"],
        ["data_raises"],
    ),
    (
        "data-factory-not-a-pair",
        ["prune", "--model", "lenet300", "--dataset", "user_models:data_not_a_pair"],
        ["data_not_a_pair"],
    ),
    (
        "data-labels-out-of-range",
        ["prune", "--model", "lenet300", "--dataset", "user_models:labels_out_of_range"],
        ["label"],
    ),
    (
        "data-npz-not-a-zip",
        ["prune", "--model", "lenet300", "--dataset", "npz:{tmp}/not-an-npz.npz"],
        ["not-an-npz.npz"],
    ),
    (
        "data-imagefolder-no-classes",
        ["prune", "--model", "lenet300", "--dataset", "imagefolder:{tmp}/a-folder"],
        ["a-folder"],
    ),
    (
        "data-imagefolder-unreadable-image",
        ["prune", "--model", "lenet300", "--dataset", "imagefolder:{tmp}/bad-images"],
        ["bad-images"],
    ),
    # --- prune: damaged Fashion-MNIST files in --data-dir
    ("fashion-truncated-gz", [*FASHION_AT, "--data-dir", "{tmp}/fm-truncated-gz"], []),
    ("fashion-zero-byte-gz", [*FASHION_AT, "--data-dir", "{tmp}/fm-zero-gz"], []),
    ("fashion-corrupt-idx", [*FASHION_AT, "--data-dir", "{tmp}/fm-truncated-idx"], []),
    ("fashion-wrong-magic", [*FASHION_AT, "--data-dir", "{tmp}/fm-wrong-magic"], []),
    # --- sweep: spec files
    ("spec-missing", ["sweep", "{tmp}/nowhere.yaml"], ["nowhere.yaml"]),
    ("spec-a-folder", ["sweep", "{tmp}/a-folder"], ["a-folder"]),
    ("spec-a-fifo", ["sweep", "{tmp}/a-fifo"], ["a-fifo"]),
    ("spec-alias-bomb", ["sweep", "{tmp}/bomb.yaml"], ["bomb.yaml"]),
    ("spec-binary", ["sweep", "{tmp}/binary.yaml"], ["binary.yaml"]),
    ("spec-empty", ["sweep", "{tmp}/empty.yaml"], ["empty.yaml"]),
    ("spec-unknown-key", ["sweep", "{tmp}/spec-unknown-key.yaml"], ["trails"]),
    ("spec-bad-trials", ["sweep", "{tmp}/spec-bad-trials.yaml"], ["trials"]),
    ("spec-space-a-folder", ["sweep", "{tmp}/spec-space-folder.yaml"], ["a-folder"]),
    ("spec-duplicate-key", ["sweep", "{tmp}/spec-dup-keys.yaml"], ["trials"]),
    ("spec-no-model", ["sweep", "{tmp}/spec-no-model.yaml"], ["model"]),
    # --- export: sources, destinations, crafted headers
    ("export-missing-source", ["export", "{tmp}/nowhere", *EXPORT], ["nowhere"]),
    ("export-not-a-ticket", ["export", "{tmp}/not-a-ticket.txt", *EXPORT], []),
    (
        "export-unknown-format",
        ["export", "{ticket}", "--format", "zip", "--out", "{tmp}/x"],
        ["--format"],
    ),
    ("export-out-a-folder", [*EXPORT_DENSE, "--out", "{tmp}/a-folder"], ["--out"]),
    ("export-out-a-fifo", [*EXPORT_DENSE, "--out", "{tmp}/a-fifo"], ["--out"]),
    ("export-out-the-source", [*EXPORT_DENSE, "--out", "{ticket}"], ["--out"]),
    (
        "export-header-negative-classes",
        ["export", "{tmp}/negative-classes.safetensors", *EXPORT],
        ["negative-classes.safetensors"],
    ),
    (
        "export-header-string-shape",
        ["export", "{tmp}/string-shape.safetensors", *EXPORT],
        ["string-shape.safetensors"],
    ),
    (
        "export-header-user-code",
        ["export", "{tmp}/user-code.safetensors", *EXPORT],
        ["user-code.safetensors"],
    ),
    (
        "export-tracking-uri-bogus",
        ["export", "{ticket}", *EXPORT, "--register", "net", "--tracking-uri", "bogus://x"],
        ["--tracking-uri"],
    ),
    # --- report and ui: sweep folders and stores read back
    ("list-root-missing", ["list", "--root", "{tmp}/nowhere"], ["--root", "nowhere"]),
    ("list-root-a-file", ["list", "--root", "{tmp}/a-file"], ["--root", "a-file"]),
    ("status-not-a-sweep", ["status", "{tmp}/a-folder"], ["a-folder", "sweep-state.json"]),
    ("status-a-file", ["status", "{tmp}/a-file"], ["a-file"]),
    ("status-state-not-json", ["status", "{tmp}/not-a-sweep-state"], ["sweep-state.json"]),
    ("status-state-a-list", ["status", "{tmp}/state-a-list"], ["sweep-state.json"]),
    ("report-not-a-sweep", ["report", "{tmp}/a-folder"], ["a-folder"]),
    ("report-a-file", ["report", "{tmp}/a-file"], ["a-file"]),
    ("report-pareto-not-json", ["report", "{tmp}/crafted-pareto"], ["pareto.json"]),
    ("report-pareto-a-list", ["report", "{tmp}/pareto-a-list"], ["pareto.json"]),
    ("report-trials-garbage", ["report", "{tmp}/trials-garbage"], []),
    (
        "ui-store-not-a-database",
        ["ui", "--tracking-uri", "sqlite:///{tmp}/not-a-database.db"],
        ["not-a-database.db"],
    ),
    ("ui-out-missing", ["ui", "--out", "{tmp}/nowhere"], ["nowhere"]),
    ("ui-port-out-of-range", ["ui", "--out", "{tmp}/a-folder", "--port", "99999"], ["--port"]),
    # --- space
    ("space-command-unknown-model", ["space", "--model", "lenet9"], ["lenet9"]),
    ("space-command-model-raises", ["space", "--model", "user_models:raises"], ["raises"]),
    ("space-command-unknown-method", ["space", "--model", "lenet5", "--methods", "snipp"], []),
]


def _make_inputs(folder: Path, ticket: Path, *, damaged_data: bool) -> None:
    """Every file and folder the cases name, in `folder` (the damaged copies of Fashion-MNIST,
    30 MB each, only where `damaged_data`)."""
    for name, text in TEXT_FILES.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (folder / "a-folder").mkdir()
    os.mkfifo(folder / "a-fifo")
    (folder / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    # User modules on PYTHONPATH; the ticket's helpers.py lies in the working folder, which must
    # never be on the import path for a header.
    (folder / "mods").mkdir()
    (folder / "mods" / "user_models.py").write_text(USER_MODULES)
    (folder / "mods" / "exits_on_import.py").write_text("import sys\nsys.exit(0)\n")
    images = folder / "bad-images" / "train" / "shirt"
    images.mkdir(parents=True)
    (images / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a header, no image
    shutil.copytree(images.parent, folder / "bad-images" / "test")
    if damaged_data:
        _make_damaged_fashion_mnist(folder)
    _make_crafted_tickets(folder, ticket)


def _make_damaged_fashion_mnist(folder: Path) -> None:
    """Real Fashion-MNIST files in torchvision's layout, one of them damaged per folder."""

    def copy(into: str) -> Path:
        raw = folder / into / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        for source in FASHION_MNIST.glob("*.gz"):
            shutil.copy(source, raw / source.name)
        return raw

    gz = copy("fm-truncated-gz") / "train-labels-idx1-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[: gz.stat().st_size // 2])
    (copy("fm-zero-gz") / "train-images-idx3-ubyte.gz").write_bytes(b"")
    for into, damage in (("fm-truncated-idx", "cut"), ("fm-wrong-magic", "magic")):
        raw = copy(into)
        packed = raw / "train-labels-idx1-ubyte.gz"
        data = gzip.decompress(packed.read_bytes())
        data = data[:5000] if damage == "cut" else b"\x00\x00\x09\x99" + data[4:]
        packed.write_bytes(gzip.compress(data))


def _make_crafted_tickets(folder: Path, ticket: Path) -> None:
    """Copies of a real ticket whose header was edited: what a downloaded file might say."""
    tensors = load_file(ticket)
    from safetensors import safe_open

    with safe_open(ticket, "pt") as handle:
        header = dict(handle.metadata())
    info = json.loads(header["sparsetune"]) if "sparsetune" in header else None

    def crafted(name: str, **changes: object) -> None:
        if info is not None:
            edited = {**header, "sparsetune": json.dumps({**info, **changes})}
        else:
            edited = {**header, **{k: json.dumps(v) for k, v in changes.items()}}
        save_file(tensors, str(folder / name), metadata=edited)

    crafted("negative-classes.safetensors", num_classes=-5)
    crafted("string-shape.safetensors", input_shape="28x28")
    crafted("user-code.safetensors", model="helpers:net")
    (folder / "helpers.py").write_text(
        "from pathlib import Path\nPath('IMPORTED').write_text('ran')\n"
        "def net(**_):\n    raise SystemExit('should not run')\n"
    )
    weights = {"fc.weight": torch.zeros(3, 3)}
    save_file(weights, str(folder / "truncated.safetensors"))
    whole = (folder / "truncated.safetensors").read_bytes()
    (folder / "truncated.safetensors").write_bytes(whole[: len(whole) - 20])


@pytest.fixture(scope="module")
def ticket(tmp_path_factory) -> Path:
    """A real ticket from a one-epoch `sparsetune prune`, read-only for the cases."""
    folder = tmp_path_factory.mktemp("ticket")
    result = run_cli(
        *PRUNE,
        "--method",
        "magnitude",
        "--epochs",
        "1",
        "--subset",
        "600",
        "--set",
        "rounds=1",
        "--out",
        str(folder / "run"),
        "--cache-dir",
        str(folder / "cache"),
        cwd=folder,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = (folder / "run").glob("round-1.safetensors")
    return path


def _tree(folder: Path) -> dict[str, tuple[str, int, int]]:
    """Every path under `folder` with its kind, size and modification time."""
    return {
        str(path.relative_to(folder)): (
            "dir" if path.is_dir() else "file",
            path.lstat().st_size,
            path.lstat().st_mtime_ns,
        )
        for path in folder.rglob("*")
    }


def test_the_table_covers_every_command_and_enough_cases():
    import typer

    from sparsetune.cli import app

    commands = {arguments[0] for _, arguments, _ in CASES}
    assert commands == set(typer.main.get_command(app).commands)  # a new command gets cases
    assert len(CASES) >= 80
    assert len({case_id for case_id, _, _ in CASES}) == len(CASES)


@dataclass(frozen=True)
class Outcome:
    """What one case's command did: its process, and its folder before and after."""

    folder: Path
    result: subprocess.CompletedProcess
    before: dict[str, tuple[str, int, int]]
    after: dict[str, tuple[str, int, int]]
    ran_user_code: bool


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, ticket) -> dict[str, Outcome]:
    """Every case run once, each in its own folder holding the inputs; the commands run a few at
    a time (each is a short process that mostly imports), the checks below read the outcomes."""
    folders = {}
    for case_id, arguments, _ in CASES:
        folder = tmp_path_factory.mktemp(case_id)
        _make_inputs(folder, ticket, damaged_data=any("{tmp}/fm-" in a for a in arguments))
        folders[case_id] = folder

    before = {case_id: _tree(folder) for case_id, folder in folders.items()}
    ticket_before = ticket.read_bytes()
    results = run_cli_many(
        {
            case_id: {
                "args": [a.format(tmp=folders[case_id], ticket=ticket) for a in arguments],
                "cwd": folders[case_id],
                "env": {"PYTHONPATH": str(folders[case_id] / "mods")},
                "timeout": 300,
            }
            for case_id, arguments, _ in CASES
        }
    )
    done = {
        case_id: Outcome(
            folder, results[case_id], before[case_id], _tree(folder), (folder / "IMPORTED").exists()
        )
        for case_id, folder in folders.items()
    }
    assert ticket.read_bytes() == ticket_before, "a command changed the source ticket"
    return done


@pytest.mark.parametrize("case_id, arguments, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(outcomes, case_id, arguments, words):
    outcome = outcomes[case_id]
    assert_one_error_line(outcome.result, words)
    assert len(outcome.result.stderr.strip()) < 600, "an error line must not quote at length"
    assert outcome.after == outcome.before, "the command left something behind or changed a file"
    assert not outcome.ran_user_code, "a ticket's header ran user code"


# One case of each kind of work a refusal does: options only, Ray's view of the machine, user
# code imported, a model built, torchvision's datasets, a file header read.
FRESH_CASES = [
    "search-seed-negative",
    "search-cpus-beyond-machine",
    "data-factory-raises",
    "prune-model-wrong-input",
    "fashion-truncated-gz",
    "export-header-user-code",
]


@pytest.mark.parametrize("case_id", FRESH_CASES)
def test_a_case_run_in_a_new_interpreter_does_what_the_table_saw(outcomes, ticket, case_id):
    """The table's commands run forked from a warm interpreter (tests/warm_cli.py); the same
    command in a new one, in the same folder, prints and exits the same."""
    (arguments,) = [arguments for found, arguments, _ in CASES if found == case_id]
    folder = outcomes[case_id].folder
    fresh = run_cli(
        *[a.format(tmp=folder, ticket=ticket) for a in arguments],
        cwd=folder,
        env={"PYTHONPATH": str(folder / "mods")},
        timeout=300,
        fresh=True,
    )
    table = outcomes[case_id].result
    assert (fresh.returncode, fresh.stdout, fresh.stderr) == (
        table.returncode,
        table.stdout,
        table.stderr,
    )
    assert _tree(folder) == outcomes[case_id].after
