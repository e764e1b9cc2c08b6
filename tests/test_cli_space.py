"""`sparsetune space`: a model's space as one YAML file that `--space` reads back the same, and a
sweep of a user model over the space generated for it."""

from __future__ import annotations

import sys

import pytest
from cli_helpers import run_cli, sweep_rows, sweep_runs
from user_model_helpers import USER_MODULE, write_user_models

from sparsetune.search.generated_space import generate_space
from sparsetune.search.space import default_space_path, load_space


@pytest.fixture
def user_path(tmp_path):
    """The environment that makes the user models' module importable."""
    return {"PYTHONPATH": str(write_user_models(tmp_path))}


def same_space(written, expected) -> bool:
    return written.model_dump(exclude={"source"}) == expected.model_dump(exclude={"source"})


def test_a_user_models_space_is_written_and_loads_back(tmp_path, user_path, monkeypatch):
    model = f"{USER_MODULE}:mlp"
    result = run_cli(
        "space", "--model", model, "--dataset", "synthetic", cwd=tmp_path, env=user_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f"space: generated for {model} from its 2 prunable layers")
    path = tmp_path / "space.yaml"
    path.write_text(result.stdout)
    space = load_space(path)
    assert "c_conv" not in space.methods["magnitude"]  # an MLP: no conv knob

    # The same space as generated in this process for the synthetic set's inputs and classes.
    monkeypatch.syspath_prepend(user_path["PYTHONPATH"])
    try:
        assert same_space(space, generate_space(model, (1, 28, 28), 10).space)
    finally:
        sys.modules.pop(USER_MODULE, None)


def test_a_built_in_space_is_printed_resolved_in_one_file(tmp_path):
    result = run_cli("space", "--model", "lenet5", "--methods", "magnitude,snip", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # Fragments inline: no line but a comment names a file.
    lines = [line for line in result.stdout.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in lines if ".yaml" in line]
    assert "  # from search_spaces/methods/magnitude.yaml\n  magnitude:\n" in result.stdout
    path = tmp_path / "space.yaml"
    path.write_text(result.stdout)
    expected = load_space(default_space_path("lenet5"), ["magnitude", "snip"])
    assert same_space(load_space(path), expected)
    whole = run_cli("space", "--model", "lenet5", cwd=tmp_path)
    path.write_text(whole.stdout)
    assert same_space(load_space(path), load_space(default_space_path("lenet5")))
    assert "sensitivity:\n    variant: specific" in whole.stdout  # lenet5's override, inline


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        (["--model", f"{USER_MODULE}:nothing_to_prune"], ["nothing to prune", "--model"]),
        (
            ["--model", f"{USER_MODULE}:fails"],
            ["--model", "RuntimeError", "weights file is missing"],
        ),
        (["--model", f"{USER_MODULE}:mlp", "--methods", "snipp"], ["--methods", "snipp"]),
        (["--model", "lenet5", "--methods", "snipp"], ["--methods", "snipp"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, user_path, arguments, words):
    result = run_cli("space", *arguments, "--dataset", "synthetic", cwd=tmp_path, env=user_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and all(word in lines[0] for word in words), result.stderr
    assert result.stdout == ""


def test_a_search_of_a_model_with_nothing_to_prune_writes_nothing(tmp_path, user_path):
    out = tmp_path / "sweep"
    arguments = ["--model", f"{USER_MODULE}:nothing_to_prune", "--dataset", "synthetic"]
    result = run_cli("search", *arguments, "--out", str(out), cwd=tmp_path, env=user_path)
    assert result.returncode == 2 and "nothing to prune" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "mlruns").exists()


@pytest.mark.slow
def test_a_user_model_is_searched_over_its_generated_space(tmp_path, user_path):
    model = f"{USER_MODULE}:mlp"
    out = tmp_path / "sweep"
    result = run_cli(
        "search",
        *("--model", model, "--dataset", "synthetic", "--val-size", "200", "--subset", "300"),
        *("--trials", "2", "--epochs", "1", "--max-concurrent", "2", "--seed", "0"),
        *("--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--experiment", "own"),
        cwd=tmp_path,
        env=user_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"space: generated for {model} from its 2 prunable layers" in result.stderr
    assert "2 done, 0 running, 0 failed of 2" in result.stderr
    assert "dense: epoch 1/1, loss " in result.stderr  # --epochs shortens the generated recipe
    _, parents, children = sweep_runs(out, "own")
    assert len(parents) == 1 and len(children) == 2
    assert all(child.info.status == "FINISHED" for child in children)
    assert {row["run_id"] for row in sweep_rows(out)} == {c.info.run_id for c in children}
