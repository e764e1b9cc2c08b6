"""The one YAML reader: its limits (size, depth, alias expansion), duplicate keys and file kinds
refused in one line that names the file and the fix, fast, and never quoting the input; every
YAML read of the package goes through it; the real CLI turns its errors into exit 2."""

from __future__ import annotations

import ast
import os
import time
from pathlib import Path

import pytest
import yaml
from cli_helpers import SYNTHETIC_RUN, assert_one_error_line, run_cli

from sparsetune import yamlio
from sparsetune.search.enqueue import load_points
from sparsetune.search.space import default_space_path, load_space
from sparsetune.search.spec import load_spec
from sparsetune.yamlio import MAX_BYTES, MAX_DEPTH, YamlError, excerpt, load_file, loads

PACKAGE_DIR = Path(yamlio.__file__).resolve().parent


def billion_laughs() -> str:
    """The classic alias bomb: nine levels of nine references, about 400 bytes of YAML that a
    plain loader expands to 9**9 (387 million) strings."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    return "\n".join(lines) + "\n"


BOMB = billion_laughs()


def one_line(error: pytest.ExceptionInfo, *words: str) -> str:
    message = str(error.value)
    assert isinstance(error.value, YamlError) and isinstance(error.value, ValueError)
    assert "\n" not in message and len(message) < 300, message
    for word in words:
        assert word in message, message
    return message


def test_the_alias_bomb_fails_fast_with_a_short_line(tmp_path):
    assert len(BOMB) < 500
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    started = time.perf_counter()
    with pytest.raises(YamlError) as error:
        load_file(path)
    assert time.perf_counter() - started < 1.0
    one_line(error, str(path), "line 6", "aliases", "expand")
    assert "lol" not in str(error.value)  # nothing of the input is quoted


def test_aliases_within_the_budget_load_as_yaml_does():
    text = "base: &b {lr: 0.1, epochs: 2}\none: *b\ntwo: {<<: *b, lr: 0.2}\n"
    assert loads(text) == yaml.safe_load(text)
    assert loads(text)["two"] == {"lr": 0.2, "epochs": 2}  # a merge key may override


@pytest.mark.parametrize(
    "text",
    [
        "[" * 20_000,  # the depth bomb (the flow form)
        "[" * 20_000 + "]" * 20_000,
        "- " * 20_000 + "x\n",  # a block sequence nested on one line
        "".join(f"{'  ' * level}k:\n" for level in range(70)) + "  " * 70 + "v\n",
    ],
    ids=["open-flow", "closed-flow", "block-dashes", "indented-mappings"],
)
def test_deep_nesting_is_refused(text):
    started = time.perf_counter()
    with pytest.raises(YamlError) as error:
        loads(text, where="deep.yaml")
    assert time.perf_counter() - started < 1.0
    one_line(error, "deep.yaml", "nested more than 64 levels", "flatten")


def test_nesting_up_to_the_limit_loads():
    text = "[" * MAX_DEPTH + "1" + "]" * MAX_DEPTH
    value = loads(text)
    for _ in range(MAX_DEPTH - 1):
        (value,) = value
    assert value == [1]


def test_an_alias_that_contains_itself_is_refused():
    with pytest.raises(YamlError) as error:
        loads("a: &loop [1, *loop]\n", where="x.yaml")
    one_line(error, "x.yaml", "line 1", "cannot contain itself")


@pytest.mark.parametrize(
    ("text", "key", "line", "first"),
    [
        ("trials: 2\nseed: 0\ntrials: 3\n", "'trials'", "line 3", "first at line 1"),
        ("methods:\n  magnitude:\n    rounds: 2\n    rounds: 3\n", "'rounds'", "line 4", "line 3"),
        ("{a: 1, b: 2, a: 3}", "'a'", "line 1", "first at line 1"),
        ("1: x\n1.0: y\n", "1.0", "line 2", "first at line 1"),
    ],
)
def test_a_key_given_twice_is_refused_naming_key_and_line(text, key, line, first):
    with pytest.raises(YamlError) as error:
        loads(text, where="spec.yaml")
    one_line(error, "spec.yaml", f"duplicate key {key}", line, first, "give each key once")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("!!python/object/apply:os.system [echo hi]\n", ["line 1", "plain values"]),
        ("a: !!int twelve\n", ["not valid YAML", "twelve"]),
        ("a: !!timestamp 2020-13-45\n", ["not valid YAML", "month"]),
        ("a: [1, 2\n", ["line 2", "not valid YAML", "check indentation"]),
        ("--- 1\n--- 2\n", ["another document"]),
        ("a: 1\x01\n", ["#x0001", "not allowed"]),
    ],
    ids=["python-tag", "bad-int-tag", "bad-date", "unclosed", "two-documents", "control-char"],
)
def test_what_yaml_itself_refuses_is_one_line(text, words):
    with pytest.raises(YamlError) as error:
        loads(text, where="f.yaml")
    one_line(error, "f.yaml", *words)


def test_a_long_value_is_never_quoted_whole():
    with pytest.raises(YamlError) as error:
        loads("a: !!int " + "9x" * 10_000 + "\n", where="f.yaml")
    one_line(error, "f.yaml")
    assert len(excerpt(list(range(10**6)))) <= 80
    assert len(excerpt({"k" * 500: ["v" * 500]})) <= 80
    assert excerpt("short") == "'short'"


def test_an_empty_file_is_none_and_a_bom_is_dropped(tmp_path):
    (tmp_path / "empty.yaml").write_bytes(b"")
    assert load_file(tmp_path / "empty.yaml") is None
    (tmp_path / "bom.yaml").write_bytes(b"\xef\xbb\xbfa: 1\n")
    assert load_file(tmp_path / "bom.yaml") == {"a": 1}


@pytest.fixture
def odd_paths(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "binary.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    (tmp_path / "latin1.yaml").write_bytes("methods:\n  # caf\xe9\n".encode("latin-1"))
    (tmp_path / "huge.yaml").write_bytes(b"# " + b"x" * MAX_BYTES + b"\n")
    return {
        "missing": tmp_path / "nowhere.yaml",
        "folder": tmp_path / "folder",
        "fifo": tmp_path / "fifo",
        "binary": tmp_path / "binary.yaml",
        "latin1": tmp_path / "latin1.yaml",
        "huge": tmp_path / "huge.yaml",
        "nul-name": tmp_path / "a\0b.yaml",
    }


ODD_FILES = [
    ("missing", ["no such file"]),
    ("folder", ["is a folder"]),
    ("fifo", ["not a regular file", "FIFO"]),
    ("binary", ["line 1", "not UTF-8 text", "binary"]),
    ("latin1", ["line 2", "not UTF-8 text", "saved as UTF-8"]),
    ("huge", ["1 MiB limit"]),
    ("nul-name", ["not a usable file name"]),
]


@pytest.mark.parametrize(("kind", "words"), ODD_FILES, ids=[kind for kind, _ in ODD_FILES])
def test_a_file_that_is_not_yaml_text_is_one_line_naming_it_and_the_fix(odd_paths, kind, words):
    path = odd_paths[kind]
    started = time.perf_counter()
    with pytest.raises(YamlError) as error:
        load_file(path, expected="a sweep spec file")
    assert time.perf_counter() - started < 1.0  # the FIFO is not waited on
    message = one_line(error, *words, "pass a sweep spec file")
    assert message.startswith(f"{str(path).split(chr(0))[0]}")


def test_every_reader_refuses_a_folder_in_its_own_words(tmp_path):
    (tmp_path / "space.yaml").mkdir()
    space = load_space(default_space_path("lenet300"))
    with pytest.raises(ValueError, match=r"space.yaml: is a folder; pass a search-space YAML"):
        load_space(tmp_path / "space.yaml")
    with pytest.raises(ValueError, match=r"^--enqueue .*space.yaml: is a folder; pass a list"):
        load_points(tmp_path / "space.yaml", space, "lenet300")
    with pytest.raises(ValueError, match=r"space.yaml: is a folder; pass a sweep spec file"):
        load_spec(tmp_path / "space.yaml")
    (tmp_path / "fragments").mkdir()
    (tmp_path / "with-fragment.yaml").write_text("methods:\n  magnitude: fragments\n")
    with pytest.raises(ValueError) as error:
        load_space(tmp_path / "with-fragment.yaml")
    assert str(error.value) == (
        f"{tmp_path / 'with-fragment.yaml'}: methods.magnitude: {tmp_path / 'fragments'}: is a "
        "folder; pass a YAML file of the method's parameters, relative to the space's folder"
    )


def test_the_package_reads_yaml_only_through_yamlio():
    """No module but yamlio calls a yaml loader: the limits hold for every YAML read."""
    loaders = {"load", "safe_load", "load_all", "safe_load_all", "full_load", "unsafe_load"}
    loaders |= {"parse", "compose", "compose_all", "scan"}
    offenders = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if path.name == "yamlio.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "yaml"
                and node.attr in loaders
            ) or (
                isinstance(node, ast.ImportFrom)
                and node.module == "yaml"
                and any(alias.name in loaders for alias in node.names)
            ):
                offenders.append(f"{path.relative_to(PACKAGE_DIR.parent)}:{node.lineno}")
    assert not offenders, "read YAML with sparsetune.yamlio instead: " + ", ".join(offenders)


# The real command: each bad file refused in one line, exit 2, before anything is written.
BAD_FILES = {
    "bomb.yaml": BOMB,
    "deep.yaml": "methods:\n  magnitude: " + "[" * 20_000 + "\n",
    "twice.yaml": "methods:\n  dense: {}\n  dense: {}\n",
    "step.yaml": "methods:\n  magnitude:\n    rounds: {low: 1, high: 4, step: 0.5}\n",
    "log-step.yaml": "methods:\n  magnitude:\n    c_fc: {low: 0.5, high: 2, log: 1, step: 0.5}\n",
}
CLI_CASES = [
    ("alias-bomb", ["--space", "{tmp}/bomb.yaml"], ["bomb.yaml", "line 6", "aliases"]),
    ("depth-bomb", ["--space", "{tmp}/deep.yaml"], ["deep.yaml", "nested more than 64"]),
    ("duplicate-key", ["--space", "{tmp}/twice.yaml"], ["twice.yaml", "duplicate key 'dense'"]),
    ("space-folder", ["--space", "{tmp}/folder"], ["--space", "folder: is a folder"]),
    ("enqueue-folder", ["--enqueue", "{tmp}/folder"], ["--enqueue", "is a folder"]),
    ("space-binary", ["--space", "{tmp}/binary.yaml"], ["binary.yaml", "not UTF-8 text"]),
    ("int-step", ["--space", "{tmp}/step.yaml"], ["methods.magnitude.rounds", "whole step"]),
    ("log-step", ["--space", "{tmp}/log-step.yaml"], ["methods.magnitude.c_fc", "`log: true`"]),
]


@pytest.mark.parametrize(
    ("arguments", "words"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES]
)
def test_search_refuses_a_bad_yaml_file_in_one_line_leaving_nothing(tmp_path, arguments, words):
    for name, text in BAD_FILES.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "binary.yaml").write_bytes(b"\x7fELF\x02\x01\x01\0\0\0")
    (tmp_path / "folder").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    arguments = [a.format(tmp=tmp_path) for a in arguments]
    started = time.perf_counter()
    result = run_cli(
        "search",
        *SYNTHETIC_RUN,
        *arguments,
        *("--out", str(tmp_path / "sweep"), "--cache-dir", str(tmp_path / "cache")),
        cwd=tmp_path,
        timeout=120,
    )
    assert time.perf_counter() - started < 60
    assert_one_error_line(result, words)
    assert len(result.stderr) < 400
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize(
    ("sets", "words"),
    [
        (["rounds=1", "rounds=2"], ["--set rounds: given twice"]),
        (["rounds=" + BOMB], ["--set rounds", "aliases"]),
        (["rounds=" + "[" * 5000], ["--set rounds", "nested more than 64"]),
        (["rounds={a: 1, a: 2}"], ["--set rounds", "duplicate key 'a'"]),
    ],
    ids=["same-key-twice", "alias-bomb", "depth-bomb", "duplicate-yaml-key"],
)
def test_prune_refuses_bad_set_values_in_one_line(tmp_path, sets, words):
    result = run_cli(
        "prune",
        *SYNTHETIC_RUN,
        *("--method", "magnitude"),
        *[arg for value in sets for arg in ("--set", value)],
        *("--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")),
        cwd=tmp_path,
        timeout=120,
    )
    assert_one_error_line(result, words)
    assert list(tmp_path.iterdir()) == []


def test_a_spec_whose_files_are_folders_or_bombs_is_one_line_leaving_nothing(tmp_path):
    (tmp_path / "spaces").mkdir()
    (tmp_path / "bomb.yaml").write_text(BOMB)
    spec = "model: lenet300\ndataset: synthetic\ntrials: 2\nout: runs\n"
    (tmp_path / "folder-space.yaml").write_text(spec + "space: spaces\n")
    (tmp_path / "bomb-space.yaml").write_text(spec + "space: bomb.yaml\n")
    (tmp_path / "twice.yaml").write_text(spec + "trials: 3\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    cases = {
        "folder-space.yaml": [str(tmp_path / "spaces"), "is a folder"],
        "bomb-space.yaml": ["bomb.yaml", "aliases"],
        "twice.yaml": ["twice.yaml", "line 5", "duplicate key 'trials'", "first at line 3"],
    }
    for name, words in cases.items():
        assert_one_error_line(run_cli("sweep", name, cwd=tmp_path, timeout=120), words)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_spec_paths_are_anchored_at_the_spec_folder_and_may_leave_it(tmp_path):
    """docs/reliability.md: relative paths are read from the spec's folder; `..` and absolute
    paths are used as written (a spec is trusted like code: it may name a module to import)."""
    (tmp_path / "specs").mkdir()
    elsewhere = tmp_path / "elsewhere"
    (tmp_path / "specs" / "spec.yaml").write_text(
        "model: lenet300\ndataset: synthetic\n"
        f"cache_dir: ../../cache\ndata_dir: {elsewhere}\nout: runs\n"
    )
    loaded = load_spec(tmp_path / "specs" / "spec.yaml")
    config = loaded.sweep_config("lenet300", loaded.out)
    assert loaded.out == tmp_path / "specs" / "runs"
    assert config.cache_dir == tmp_path.parent / "cache"
    assert config.data_dir == elsewhere
