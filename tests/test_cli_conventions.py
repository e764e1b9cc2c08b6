"""The command line follows the conventions of click/typer tools and of Optuna's, MLflow's and
Ray's CLIs: `--version` (and `python -m sparsetune`), `-h` beside `--help`, flags shown as flags
(no value column), a closed set of values shown as `<a|b|c>` and completed by the shell, required
options marked, `--json` wherever a command prints a result, and MLFLOW_TRACKING_URI honoured.

Every command's help is checked as it renders, from the click command tree: a command added
later is checked too."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import typer
from cli_helpers import run_cli

from sparsetune.cli import app, main

COMMAND = typer.main.get_command(app)
SCRIPT = str(Path(sys.executable).with_name("sparsetune"))  # the installed console script
SUBCOMMANDS = sorted(COMMAND.commands)
# Commands that print a result a script would read; each takes --json (one object on stdout).
RESULT_COMMANDS = {"search", "prune", "report", "export", "list", "status"}


def help_text(capsys, monkeypatch, *args: str) -> str:
    """`sparsetune ARGS` help as rendered on a wide terminal, through the CLI's entry point."""
    monkeypatch.setenv("COLUMNS", "250")  # one row per option: no wrapped cells to parse
    monkeypatch.setenv("TERM", "dumb")
    with pytest.raises(SystemExit) as exit_:
        code = main(list(args))
        raise SystemExit(code)
    assert exit_.value.code in (0, None)
    return capsys.readouterr().out


def option_row(text: str, option: str) -> str:
    """The help row of `option` (its long name, first in its row)."""
    rows = [line for line in text.splitlines() if re.search(rf"[│*]\s+{re.escape(option)}\b", line)]
    assert rows, f"{option} not in help:\n{text}"
    return rows[0]


def test_version_from_the_command_and_from_python_m(tmp_path):
    expected = f"sparsetune {version('sparsetune')}"
    for command in ([SCRIPT], [sys.executable, "-m", "sparsetune"]):
        for flag in ("--version", "-V"):
            done = subprocess.run(
                [*command, flag], capture_output=True, text=True, cwd=tmp_path, timeout=60
            )
            assert (done.returncode, done.stdout.strip(), done.stderr) == (0, expected, "")
    # python -m sparsetune is the whole command, not only --version.
    done = subprocess.run(
        [sys.executable, "-m", "sparsetune", "space", "--model", "lenet300"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0 and "methods:" in done.stdout, done.stderr[-2000:]


@pytest.mark.parametrize("command", ["", *SUBCOMMANDS])
def test_every_help_follows_the_conventions(capsys, monkeypatch, command):
    words = [command] if command else []
    long_help = help_text(capsys, monkeypatch, *words, "--help")
    assert help_text(capsys, monkeypatch, *words, "-h") == long_help
    click_command = COMMAND.commands[command] if command else COMMAND
    for param in click_command.params:
        if not isinstance(param, typer.core.TyperOption):
            continue
        name = next(o for o in param.opts if o.startswith("--"))
        row = option_row(long_help, name)
        value_column = re.search(r"<[^>]*>", row)
        if param.is_flag:
            assert value_column is None, f"flag {name} shown as taking a value: {row}"
        else:
            assert value_column is not None, f"{name} shows no value: {row}"
        if param.required:
            assert row.lstrip("│ ").startswith("*") or "[required]" in row, row
    if command in RESULT_COMMANDS:
        assert option_row(long_help, "--json")
    help_row = option_row(long_help, "--help")
    assert "-h" in help_row and "<" not in help_row


def test_each_command_is_one_row_of_the_command_list(capsys, monkeypatch):
    """On a wide terminal each command's summary sits on its own row, whole: a docstring whose
    first paragraph spans two source lines used to show as a row and a ragged continuation."""
    text = help_text(capsys, monkeypatch, "--help")
    panel = text[text.index("Commands") :].splitlines()[1:]
    rows = [line.strip("│ ").rstrip() for line in panel if line.startswith("│")]
    assert sorted(row.split()[0] for row in rows) == SUBCOMMANDS, text
    for row in rows:
        name, summary = row.split(maxsplit=1)
        docstring = COMMAND.commands[name].callback.__doc__
        assert summary == " ".join(docstring.split("\n\n")[0].split()), text


def test_choices_are_shown_and_completed(capsys, monkeypatch):
    from sparsetune.search.choices import SAMPLERS

    search_help = help_text(capsys, monkeypatch, "search", "--help")
    assert f"<{'|'.join(SAMPLERS)}>" in option_row(search_help, "--sampler")
    assert "<auto|cpu|cuda>" in option_row(search_help, "--device")
    export_help = help_text(capsys, monkeypatch, "export", "--help")
    assert "<dense|sparse|structured>" in option_row(export_help, "--format")

    # What the script `sparsetune --install-completion` installs asks the command this way.
    def complete(words: str) -> list[str]:
        done = subprocess.run(
            [SCRIPT],
            env={
                **os.environ,
                "_SPARSETUNE_COMPLETE": "complete_bash",
                "COMP_WORDS": words,
                "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("sparsetune search --sampler ") == list(SAMPLERS)
    assert complete("sparsetune search --objective pareto-") == ["pareto-flops"]
    assert complete("sparsetune pr") == ["prune"]
    assert complete("sparsetune export x --format s") == ["sparse", "structured"]


def test_a_flag_takes_no_value_and_says_so(tmp_path):
    refused = run_cli("sweep", "--dry-run", "true", "spec.yaml", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.startswith("sparsetune: error: ") and "Traceback" not in refused.stderr


def test_report_json_is_one_object_holding_the_recorded_front(tmp_path, capsys):
    from review_helpers import make_sweep

    sweep = make_sweep(tmp_path / "sweep")
    recorded = json.loads((sweep / "pareto.json").read_text())
    code = main(["report", str(sweep), "--json"])
    captured = capsys.readouterr()
    assert code in (0, None), captured.err
    printed = json.loads(captured.out)  # the whole of stdout: one object
    assert printed["front"] == recorded["front"]
    assert printed["hypervolume"] == recorded["hypervolume"]
    assert printed["sweep_dir"] == str(sweep.resolve())
    assert {Path(p).name for p in printed["written"]} >= {"pareto.png", "front.csv"}
    assert all(Path(p).is_file() for p in printed["written"])


@pytest.mark.slow
def test_search_json_and_mlflow_tracking_uri(tmp_path):
    """A real sweep with MLFLOW_TRACKING_URI set and no --tracking-uri: its runs land in that
    store (nothing in the sweep folder), and `--json` prints one object, the same record
    `report --json` reads back."""
    from cli_helpers import SMALL_SPACE, sweep_arguments
    from mlflow.tracking import MlflowClient

    store = tmp_path / "shared-store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    arguments, out = sweep_arguments(tmp_path, SMALL_SPACE, 1, "json-env")
    done = run_cli("search", *arguments, "--json", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert done.returncode == 0, done.stderr[-3000:]
    printed = json.loads(done.stdout)  # the whole of stdout: one object
    assert printed["tracking_uri"] == uri
    assert printed["experiment"] == "json-env" and printed["failures"] == {}
    assert printed["front"] and printed["trials"]["finished"] == 1
    assert not (out / "mlflow.db").exists()
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("json-env").experiment_id])
    assert {point["run_id"] for point in printed["front"]} <= {r.info.run_id for r in runs}

    reported = run_cli("report", str(out), "--json", cwd=tmp_path)
    assert reported.returncode == 0, reported.stderr[-2000:]
    read_back = json.loads(reported.stdout)
    assert read_back["front"] == printed["front"]
    assert read_back["hypervolume"] == printed["hypervolume"]

    # The same command again: nothing to do, and still one object on stdout, the recorded sweep.
    again = run_cli("search", *arguments, "--json", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert again.returncode == 0, again.stderr[-3000:]
    assert "has finished; nothing to do" in again.stderr
    repeated = json.loads(again.stdout)
    assert repeated["nothing_to_do"] is True and repeated["front"] == printed["front"]
