"""`sparsetune sweep FILE.yaml` on bad specs: one line naming the file and the field, exit 2,
nothing written; and `--dry-run`'s plan and exit code on hand-written sweep folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import run_cli

from sparsetune.app.scheduled_sweep import EXIT_FINISHED, EXIT_NOTHING_TO_DO, EXIT_RESUMED
from sparsetune.search.spec import load_spec
from sparsetune.search.state import SweepState

GOOD = "model: lenet300\ndataset: synthetic\ntrials: 2\n"

BAD_SPECS = [
    # (id, spec text, words the one line must contain)
    ("unknown-key", GOOD + "trails: 3\n", ["trails", "unknown key", "allowed keys"]),
    ("bad-trials", "model: lenet300\ndataset: synthetic\ntrials: 0\n", ["trials", "greater"]),
    ("bad-epoch-budget", GOOD + "budget_epochs: -3\n", ["budget_epochs", "greater"]),
    ("unknown-model", "model: lenet9\ndataset: synthetic\n", ["model", "lenet9"]),
    ("both-models", GOOD + "models: [lenet5]\n", ["either `model: NAME`"]),
    ("no-model", "dataset: synthetic\n", ["either `model: NAME`"]),
    ("new-sweep", GOOD + "new_sweep: weekly\n", ["new_sweep", "daily"]),
    ("cross-option", GOOD + "objective: max-acc\n", ["min_compression"]),
    ("sweep-config", GOOD + "address: ray://head\n", ["address", "ray://HOST:PORT"]),
    ("not-a-mapping", "- lenet300\n", ["expected a mapping"]),
    ("bad-yaml", "model: [\n", ["not valid YAML"]),
]


@pytest.mark.parametrize(
    ("spec", "words"), [c[1:] for c in BAD_SPECS], ids=[c[0] for c in BAD_SPECS]
)
def test_a_bad_spec_is_one_line_naming_file_and_field(tmp_path, spec, words):
    (tmp_path / "spec.yaml").write_text(spec)
    result = run_cli("sweep", "spec.yaml", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sparsetune: error: "), result.stderr
    assert str(tmp_path / "spec.yaml") in lines[0]
    for word in words:
        assert word in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]  # nothing written


def test_a_spec_takes_an_epoch_budget(tmp_path):
    (tmp_path / "spec.yaml").write_text(GOOD + "budget_epochs: 500\nbudget_minutes: 60\n")
    loaded = load_spec(tmp_path / "spec.yaml")
    config = loaded.sweep_config("lenet300", tmp_path / "runs")
    assert (config.budget_epochs, config.budget_minutes) == (500, 60)


def test_a_missing_spec_file_is_bad_input(tmp_path):
    result = run_cli("sweep", "nowhere.yaml", cwd=tmp_path)
    assert result.returncode == 2 and "no such file" in result.stderr


def test_spec_paths_are_relative_to_the_spec_folder(tmp_path):
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "nightly.yaml").write_text(
        "models: [lenet300, lenet5]\ndataset: synthetic\ncache_dir: cache\ndata_dir: ../data\n"
    )
    loaded = load_spec(tmp_path / "specs" / "nightly.yaml")
    assert loaded.out == tmp_path / "specs" / "sparsetune-runs" / "nightly"
    assert loaded.base_dir("lenet5") == loaded.out / "lenet5"
    config = loaded.sweep_config("lenet5", loaded.base_dir("lenet5"))
    assert config.cache_dir == tmp_path / "specs" / "cache"
    assert config.data_dir == tmp_path / "data"
    assert config.sweep_dir == loaded.out / "lenet5"


def _finished_or_running(folder: Path, status: str) -> None:
    folder.mkdir(parents=True)
    SweepState("x", status, {}, {}, "s", "r", "sqlite:///x.db").write(folder)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("new_sweep", "status", "code", "says"),
    [
        ("never", None, EXIT_FINISHED, "start a new sweep in"),
        ("never", "finished", EXIT_NOTHING_TO_DO, "nothing to do"),
        ("always", "finished", EXIT_FINISHED, "start a new sweep in"),
    ],
)
def test_dry_run_says_what_it_would_do_and_exits_with_its_code(
    tmp_path, new_sweep, status, code, says
):
    (tmp_path / "spec.yaml").write_text(GOOD + f"out: runs\nnew_sweep: {new_sweep}\n")
    if status:
        _finished_or_running(tmp_path / "runs", status)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    result = run_cli("sweep", "spec.yaml", "--dry-run", cwd=tmp_path)
    assert result.returncode == code, result.stderr
    assert says in result.stderr
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # ran nothing, wrote nothing


def test_dry_run_resumes_an_unfinished_sweep_of_the_same_options(tmp_path):
    from sparsetune.app.checks import space_for_run
    from sparsetune.search.space import default_space_path, load_space
    from sparsetune.search.state import identity

    (tmp_path / "spec.yaml").write_text(GOOD + "out: runs\n")
    loaded = load_spec(tmp_path / "spec.yaml")
    config = loaded.sweep_config("lenet300", tmp_path / "runs")
    # the space as the sweep runs it: its rewind points narrowed to the spec's dense stage
    space = space_for_run(config, load_space(default_space_path("lenet300")))
    (tmp_path / "runs").mkdir()
    SweepState("x", "running", identity(config, space), {}, "s", "r", "sqlite:///x.db").write(
        tmp_path / "runs"
    )
    result = run_cli("sweep", "spec.yaml", "--dry-run", cwd=tmp_path)
    assert result.returncode == EXIT_RESUMED, result.stderr
    assert "resume the unfinished sweep" in result.stderr

    (tmp_path / "spec.yaml").write_text(GOOD.replace("trials: 2", "trials: 3") + "out: runs\n")
    result = run_cli("sweep", "spec.yaml", "--dry-run", cwd=tmp_path)
    assert result.returncode == 2 and "other trials" in result.stderr, result.stderr


def test_a_relative_data_file_is_read_from_the_spec_folder(tmp_path, monkeypatch):
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "spec.yaml").write_text("model: lenet300\ndataset: npz:data/train.npz\n")
    (folder / "images.yaml").write_text("model: lenet300\ndataset: imagefolder:./photos\n")
    monkeypatch.chdir(tmp_path)  # cron runs it from elsewhere
    spec = load_spec(folder / "spec.yaml")
    config = spec.sweep_config("lenet300", spec.base_dir("lenet300"))
    assert config.dataset == f"npz:{folder / 'data' / 'train.npz'}"
    images = load_spec(Path("specs/images.yaml"))
    assert images.sweep_config("lenet300", images.out).dataset == f"imagefolder:{folder / 'photos'}"
