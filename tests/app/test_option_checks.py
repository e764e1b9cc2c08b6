"""Option values and user code checked at the edge: each bad value is refused through the real
`sparsetune` command in one line with exit 2, before anything is written (the test's folder holds
nothing new: no sweep folder, no mlflow.db, no cache), and a resume that changes what a sweep is
(its seed, its data or cache folder, its device) is refused naming the option."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from cli_helpers import SMALL_SPACE, SYNTHETIC_RUN, assert_one_error_line, run_cli, run_cli_many

from sparsetune.search.options import MAX_TRIALS, SEED_LIMIT, SweepConfig
from sparsetune.search.space import load_space
from sparsetune.search.state import STATE_FILE, SweepState
from sparsetune.validation import check_path_kind

# User code as a careless user writes it: a module that exits when imported, factories that
# raise, and a model with nothing to prune.
USER_CODE = {
    "exits_on_import.py": "import sys\nsys.exit(0)\n",
    "user_code.py": """
        from torch import nn

        def raises(input_shape, num_classes):
            raise RuntimeError("the weights file is missing")

        def only_batchnorm(input_shape, num_classes):
            return nn.Sequential(nn.Flatten(), nn.LazyBatchNorm1d(), nn.ReLU())

        def no_data():
            raise RuntimeError("the bucket is empty")
    """,
}
GPUS_HERE = torch.cuda.device_count()

# (id, command, arguments, words of the one line). "{tmp}" is the test's folder, which holds
# `a-file`, `a-folder`, `a-fifo`, `notes.txt` and `space.yaml` (SMALL_SPACE).
CASES = [
    ("seed-negative", "search", ["--seed", "-1"], ["--seed", "greater than or equal to 0"]),
    ("seed-2**32", "search", ["--seed", str(SEED_LIMIT)], ["--seed", f"less than {SEED_LIMIT}"]),
    ("prune-seed-negative", "prune", ["--seed", "-1"], ["--seed", "greater than or equal to 0"]),
    ("prune-seed-2**32", "prune", ["--seed", str(2**40)], ["--seed", "less than"]),
    ("cpus-inf", "search", ["--cpus-per-trial", "inf"], ["--cpus-per-trial", "finite"]),
    ("cpus-nan", "search", ["--cpus-per-trial", "nan"], ["--cpus-per-trial", "finite"]),
    ("cpus-zero", "search", ["--cpus-per-trial", "0"], ["--cpus-per-trial", "greater than 0"]),
    (
        "cpus-beyond-machine",
        "search",
        ["--cpus-per-trial", str((os.cpu_count() or 1) + 1)],
        ["--cpus-per-trial", f"this machine has {os.cpu_count()} CPUs"],
    ),
    ("gpus-inf", "search", ["--gpus-per-trial", "inf"], ["--gpus-per-trial", "finite"]),
    (
        "gpus-beyond-machine",
        "search",
        ["--gpus-per-trial", str(GPUS_HERE + 1)],
        ["--gpus-per-trial", f"this machine has {GPUS_HERE} GPUs" if GPUS_HERE else "no CUDA"],
    ),
    ("trials-absurd", "search", ["--trials", str(MAX_TRIALS + 1)], ["--trials", f"{MAX_TRIALS}"]),
    (
        "tracking-scheme",
        "search",
        ["--tracking-uri", "bogus://x"],
        ["--tracking-uri", "bogus:", "sqlite:///PATH"],
    ),
    (
        "prune-tracking-scheme",
        "prune",
        ["--tracking-uri", "bogus://x"],
        ["--tracking-uri", "bogus:", "sqlite:///PATH"],
    ),
    (
        "tracking-file-store",
        "search",
        ["--tracking-uri", "{tmp}/mlruns"],
        ["--tracking-uri", "file store", "sqlite:///PATH"],
    ),
    ("tracking-in-memory", "search", ["--tracking-uri", "sqlite://"], ["in-memory"]),
    (
        "tracking-sqlite-folder",
        "search",
        ["--tracking-uri", "sqlite:///{tmp}/a-folder"],
        ["--tracking-uri", "a-folder: is a folder, not a file"],
    ),
    (
        "tracking-sqlite-fifo",
        "prune",
        ["--tracking-uri", "sqlite:///{tmp}/a-fifo"],
        ["--tracking-uri", "named pipe"],
    ),
    (
        "tracking-sqlite-under-a-file",
        "search",
        ["--tracking-uri", "sqlite:///{tmp}/a-file/mlflow.db"],
        ["--tracking-uri", "cannot be created", "a-file is a file"],
    ),
    (
        "tracking-sqlite-unwritable",
        "search",
        ["--tracking-uri", "sqlite:////proc/sparsetune-test.db"],
        ["--tracking-uri", "cannot write in /proc"],
    ),
    (
        "prune-tracking-unwritable",
        "prune",
        ["--tracking-uri", "sqlite:////proc/sparsetune-test.db"],
        ["--tracking-uri", "cannot write in /proc"],
    ),
    (
        "tracking-not-a-database",
        "prune",
        ["--tracking-uri", "sqlite:///{tmp}/notes.txt"],
        ["--tracking-uri", "notes.txt is not an SQLite database"],
    ),
    ("cache-dir-a-file", "search", ["--cache-dir", "{tmp}/a-file"], ["--cache-dir", "is a file"]),
    ("prune-cache-dir-a-file", "prune", ["--cache-dir", "a-file"], ["--cache-dir", "is a file"]),
    (
        "cache-dir-unwritable",
        "search",
        ["--cache-dir", "/proc/sparsetune-test-cache"],
        ["--cache-dir", "cannot write in /proc"],
    ),
    (
        "prune-cache-dir-unwritable",
        "prune",
        ["--cache-dir", "/proc/sparsetune-test-cache"],
        ["--cache-dir", "cannot write in /proc"],
    ),
    ("data-dir-a-file", "search", ["--data-dir", "a-file"], ["--data-dir", "is a file"]),
    ("prune-data-dir-a-fifo", "prune", ["--data-dir", "a-fifo"], ["--data-dir", "named pipe"]),
    ("space-a-folder", "search", ["--space", "a-folder"], ["--space", "is a folder, not a file"]),
    ("space-a-fifo", "search", ["--space", "a-fifo"], ["--space", "named pipe (FIFO)"]),
    ("space-a-device", "search", ["--space", "/dev/null"], ["--space", "character device"]),
    ("weights-a-folder", "search", ["--weights", "a-folder"], ["--weights", "is a folder"]),
    ("prune-weights-a-fifo", "prune", ["--weights", "a-fifo"], ["--weights", "named pipe"]),
    ("out-a-file", "search", ["--out", "a-file"], ["--out", "is a file, not a folder"]),
    ("prune-out-a-fifo", "prune", ["--out", "a-fifo"], ["--out", "named pipe"]),
    (
        "model-exits-on-import",
        "search",
        ["--model", "exits_on_import:build"],
        ["--model", "importing 'exits_on_import' called sys.exit(0)"],
    ),
    (
        "prune-model-exits-on-import",
        "prune",
        ["--model", "exits_on_import:build"],
        ["--model", "called sys.exit(0)"],
    ),
    (
        "dataset-exits-on-import",
        "search",
        ["--dataset", "exits_on_import:data"],
        ["--dataset", "called sys.exit(0)"],
    ),
    (
        "model-factory-raises",
        "search",
        ["--model", "user_code:raises", "--space", "space.yaml"],
        ["--model", "user_code:raises", "RuntimeError", "the weights file is missing"],
    ),
    (
        "dataset-factory-raises",
        "search",
        ["--dataset", "user_code:no_data"],
        ["user_code:no_data", "RuntimeError", "the bucket is empty"],
    ),
    (
        "prune-dataset-factory-raises",
        "prune",
        ["--dataset", "user_code:no_data"],
        ["user_code:no_data", "RuntimeError", "the bucket is empty"],
    ),
    (
        "model-nothing-to-prune",
        "search",
        ["--model", "user_code:only_batchnorm", "--space", "space.yaml"],
        ["--model", "no Linear or Conv layer", "nothing to prune"],
    ),
    (
        "prune-model-nothing-to-prune",
        "prune",
        ["--model", "user_code:only_batchnorm"],
        ["--model", "no Linear or Conv layer", "nothing to prune"],
    ),
]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return make_workdir(tmp_path)


def make_workdir(tmp_path: Path) -> Path:
    """The test's folder with the paths the cases name; the user code sits in its own folder
    (on PYTHONPATH), so that the folder's listing shows only what a run leaves."""
    (tmp_path / "a-file").write_text("a file, not a folder")
    (tmp_path / "a-folder").mkdir()
    os.mkfifo(tmp_path / "a-fifo")
    (tmp_path / "notes.txt").write_text("not a database\n")
    (tmp_path / "space.yaml").write_text(SMALL_SPACE)
    code = tmp_path / "code"
    code.mkdir()
    for name, text in USER_CODE.items():
        (code / name).write_text(textwrap.dedent(text))
    return tmp_path


def listing(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


def refusal_call(workdir: Path, command: str, arguments: list[str]) -> dict:
    """`sparsetune COMMAND` with the synthetic defaults, `--out` and `--cache-dir` in the test's
    folder, then `arguments` (a later option wins), as run_cli's keywords."""
    defaults = [*SYNTHETIC_RUN, "--out", "run", "--cache-dir", "cache"]
    if command == "prune":
        defaults += ["--epochs", "1"]
    given = [argument.replace("{tmp}", str(workdir)) for argument in arguments]
    return {
        "args": [command, *defaults, *given],
        "cwd": workdir,
        "env": {"PYTHONPATH": str(workdir / "code")},
    }


@pytest.fixture(scope="module")
def refusals(tmp_path_factory) -> dict[str, tuple[set[str], Any, set[str]]]:
    """Every case of CASES run once in its own folder, a few at a time: {id: (the folder's
    listing before, the process, the listing after)}."""
    folders = {case[0]: make_workdir(tmp_path_factory.mktemp(case[0])) for case in CASES}
    before = {case_id: listing(folder) for case_id, folder in folders.items()}
    results = run_cli_many(
        {
            case_id: refusal_call(folders[case_id], command, args)
            for case_id, command, args, _ in CASES
        }
    )
    return {
        case_id: (before[case_id], results[case_id], listing(folder))
        for case_id, folder in folders.items()
    }


@pytest.mark.parametrize(
    ("case_id", "words"), [(c[0], c[3]) for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_bad_option_is_refused_in_one_line_before_anything_is_written(refusals, case_id, words):
    before, result, after = refusals[case_id]
    assert_one_error_line(result, words)
    assert after == before  # no run folder, no mlflow.db, no cache, no ray folder


def test_a_sweep_spec_gets_the_same_checks(workdir):
    (workdir / "spec.yaml").write_text(
        "model: lenet300\ndataset: synthetic\nseed: -1\ncache_dir: a-file\n"
    )
    before = listing(workdir)
    result = run_cli("sweep", str(workdir / "spec.yaml"), cwd=workdir)
    assert_one_error_line(result, ["spec.yaml", "seed", "greater than or equal to 0"])
    assert listing(workdir) == before


# -- the sweep's identity: a resume may not change what changes results --------------------------

IDENTITY_CHANGES = [
    ("seed", ["--seed", "1"], "--seed"),
    ("device", ["--device", "cpu"], "--device"),
    ("data-dir", ["--data-dir", "data-elsewhere"], "--data-dir"),
    ("cache-dir", ["--cache-dir", "cache-elsewhere"], "--cache-dir"),
]


def recorded_sweep(workdir: Path, drop: tuple[str, ...] = ()) -> tuple[list[str], Path]:
    """A sweep's state in `workdir/sweep` as `sparsetune search` records it when it starts (the
    options validated, the space loaded), without running it: the arguments that started it and
    its folder. `drop`: identity keys left out, as a state written by an older version."""
    arguments = [
        *SYNTHETIC_RUN,
        *("--space", str(workdir / "space.yaml"), "--trials", "2", "--seed", "0"),
        *("--out", str(workdir / "sweep"), "--cache-dir", str(workdir / "cache")),
    ]
    sweep = SweepConfig(
        model="lenet300",
        dataset="synthetic",
        val_size=500,
        space=workdir / "space.yaml",
        trials=2,
        seed=0,
        out=workdir / "sweep",
        cache_dir=workdir / "cache",
    )
    state = SweepState.new(sweep, load_space(sweep.space), f"sqlite:///{sweep.sweep_dir}/mlflow.db")
    state = state.with_(identity={k: v for k, v in state.identity.items() if k not in drop})
    sweep.sweep_dir.mkdir()
    state.write(sweep.sweep_dir)
    return arguments, sweep.sweep_dir


@pytest.mark.parametrize(
    ("changed", "flag"),
    [case[1:] for case in IDENTITY_CHANGES],
    ids=[case[0] for case in IDENTITY_CHANGES],
)
def test_a_resume_that_changes_the_sweep_identity_is_refused(workdir, changed, flag):
    arguments, folder = recorded_sweep(workdir)
    before = listing(workdir)
    result = run_cli("search", *arguments, *changed, cwd=workdir)
    assert_one_error_line(result, [f"--out {folder}", flag, "differ", "--resume"])
    assert listing(workdir) == before


def test_an_identity_option_an_older_state_lacks_is_unknown_not_a_difference(workdir):
    _, folder = recorded_sweep(workdir, drop=("seed", "data_dir", "cache_dir", "device"))
    from sparsetune.search.state import read_state

    state = read_state(folder)
    assert STATE_FILE in os.listdir(folder)
    changed = SweepConfig(
        model="lenet300",
        dataset="synthetic",
        val_size=500,
        space=workdir / "space.yaml",
        trials=2,
        seed=7,
        device="cpu",
        out=folder,
        cache_dir=workdir / "elsewhere",
    )
    assert state.differences(changed, load_space(changed.space)) == []
    # ...and what it does record is still compared
    fewer = changed.model_copy(update={"trials": 3})
    assert state.differences(fewer, load_space(changed.space)) == ["--trials"]


def test_identity_marks_cover_what_changes_results():
    from sparsetune.search.options import identity_fields

    marked = set(identity_fields(SweepConfig))
    assert {"seed", "cache_dir", "data_dir", "device", "weights", "model", "dataset"} <= marked


# -- the pieces, on their own ------------------------------------------------------------------


def test_path_kinds_are_told_apart_without_opening_anything(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "file").write_text("x")
    assert check_path_kind(tmp_path / "file", "file") == tmp_path / "file"
    assert check_path_kind(tmp_path / "new" / "deeper", "folder") == tmp_path / "new" / "deeper"
    refusals = [
        (tmp_path / "fifo", "file", "is a named pipe (FIFO), not a file"),
        (Path("/dev/null"), "file", "is a character device, not a file"),
        (tmp_path, "file", "is a folder, not a file"),
        (tmp_path / "file", "folder", "is a file, not a folder"),
        (tmp_path / "file" / "below", "folder", "cannot be created"),
    ]
    for path, kind, words in refusals:
        with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
            check_path_kind(path, kind, "--opt")
    with pytest.raises(ValueError, match="no such file"):
        check_path_kind(tmp_path / "missing", "file", must_exist=True)


def test_a_relative_sqlite_tracking_uri_is_made_absolute(tmp_path, monkeypatch):
    # trials run in their own folders: a relative path would give each trial its own database
    monkeypatch.chdir(tmp_path)
    sweep = SweepConfig(model="lenet300", tracking_uri="sqlite:///runs/mlflow.db")
    assert sweep.tracking_uri == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    server = SweepConfig(model="lenet300", tracking_uri="http://127.0.0.1:5000")
    assert server.tracking_uri == "http://127.0.0.1:5000"


def test_import_object_turns_an_exit_on_import_into_one_line(tmp_path, monkeypatch):
    from sparsetune.registry import NotImportable, import_object

    modules = {
        "exits_two": "import sys\nsys.exit(2)\n",
        "base_exception": "class Odd(BaseException):\n    pass\nraise Odd()\n",
        "interrupted": "raise KeyboardInterrupt\n",
    }
    for name, text in modules.items():
        (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=r"importing 'exits_two' called sys.exit\(2\)") as exited:
        import_object("exits_two:f")
    assert not isinstance(exited.value, NotImportable)  # no "install the package" fix for it
    with pytest.raises(ValueError, match="importing 'base_exception' raised Odd"):
        import_object("base_exception:f")
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C stays Ctrl-C
        import_object("interrupted:f")
    with pytest.raises(NotImportable, match="cannot import 'not_there_at_all'"):
        import_object("not_there_at_all:f")
