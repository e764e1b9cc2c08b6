"""Every file the package writes appears whole or not at all: a scan of the source (ast) finds
each call that writes a file and checks that it writes to a staging path of
`sparsetune.atomic` (the name `atomic_file` yields, renamed into place on success) or into a
temporary folder that no reader ever sees (a scratch copy, Ray's checkpoint folder, which Ray
itself copies into place), or that it is one of the few writes below, each with its reason.

A new `path.write_text(...)`, `open(path, "w")`, `torch.save(obj, path)`, ... on a final path
fails here with its file and line; write it through `atomic_file`, `atomic_write_text` or
`atomic_write_bytes` instead.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sparsetune"

# (file, function, what is written): why it is not atomic, and need not be.
ALLOWED = {
    ("tracking/ui.py", "start", "self.log_path"): (
        "the MLflow server's log, a stream written while it runs, in a private temporary "
        "folder (tempfile.mkdtemp) that stop() removes; no one reads it as a record"
    ),
    ("search/lock.py", "sweep_folder_lock", "path"): (
        "the sweep folder's lock file: flock needs one inode that every process opens, so it "
        "cannot be replaced by a rename; its content is only a hint (who holds it)"
    ),
}

# Calls that make a name a staging path (its file is renamed into place) or a temporary
# folder (removed after use, never read as a record).
STAGING_MAKERS = {"atomic_file", "staging_path", "TemporaryDirectory", "mkdtemp"}
# Calls that keep a path what it is (`str(staging)`, `Path(folder)`).
PATH_WRAPPERS = {"str", "Path", "fspath"}
WRITE_MODE_LETTERS = set("wax+")
WRITE_FLAGS = {"O_WRONLY", "O_RDWR", "O_CREAT", "O_APPEND", "O_TRUNC"}


@dataclass(frozen=True)
class Write:
    file: str  # relative to the package
    line: int
    function: str
    call: str  # the call as written
    target: str  # the path (or handle) it writes, as written
    staged: bool  # the target is a staging path or inside a temporary folder


def _name(node: ast.AST) -> str:
    """The last name of a call's function: `torch.export.save` -> `save`."""
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def _literal_mode(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _written_target(call: ast.Call) -> ast.AST | None:
    """The path (or handle) a call writes, or None when the call writes no file."""
    func, args, name = call.func, call.args, _name(call.func)
    method = isinstance(func, ast.Attribute)
    if method and name in ("write_text", "write_bytes"):
        return func.value
    if name == "open" and method and _name(func.value) == "os":
        flags = args[1] if len(args) > 1 else _keyword(call, "flags")
        names = (
            {n.attr for n in ast.walk(flags) if isinstance(n, ast.Attribute)} if flags else set()
        )
        return args[0] if names & WRITE_FLAGS else None
    if name == "open" and method:  # Path.open(mode): only a literal mode says it is a file
        mode = _literal_mode(args[0] if args else _keyword(call, "mode"))
        return func.value if mode and WRITE_MODE_LETTERS & set(mode) else None
    if name in ("open", "fdopen") and not method:
        mode_node = args[1] if len(args) > 1 else _keyword(call, "mode")
        mode = _literal_mode(mode_node)
        if mode_node is None or (mode is not None and not WRITE_MODE_LETTERS & set(mode)):
            return None
        return args[0] if args else _keyword(call, "file")
    if name == "save" and not method:  # safetensors.torch.save: bytes, no file
        return None
    if name in ("save", "save_file", "dump") and len(args) >= 2:  # torch, safetensors, json
        return args[1]
    if name in ("save", "savefig", "to_csv", "savez", "tofile") and args:
        return args[0]
    if name.startswith(("copy", "move")) and _name(getattr(func, "value", func)) == "shutil":
        return args[1] if len(args) > 1 else _keyword(call, "dst")
    if name in ("copyfile", "copy2", "copytree") and len(args) > 1:
        return args[1]
    return None


class _Scanner(ast.NodeVisitor):
    """Each write in a module, with whether its target derives from a staging name."""

    def __init__(self, file: str):
        self.file = file
        self.function = "<module>"
        self.staged_names: set[str] = set()
        self.handles: dict[str, ast.AST] = {}  # `with X.open("w") as handle`: handle -> X
        self.writes: list[Write] = []

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        outer = (self.function, self.staged_names, self.handles)
        self.function, self.staged_names, self.handles = node.name, set(outer[1]), {}
        self.generic_visit(node)
        self.function, self.staged_names, self.handles = outer

    visit_AsyncFunctionDef = visit_FunctionDef

    def _staged(self, node: ast.AST | None) -> bool:
        if isinstance(node, ast.Name):
            return node.id in self.staged_names
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):  # folder / name
            return self._staged(node.left)
        if isinstance(node, ast.Call) and _name(node.func) in PATH_WRAPPERS and node.args:
            return self._staged(node.args[0])
        if isinstance(node, ast.Call) and _name(node.func) in STAGING_MAKERS:
            return True
        if isinstance(node, ast.Attribute) and node.attr in ("parent", "name"):
            return False
        return False

    def _bind(self, target: ast.AST, value: ast.AST) -> None:
        if isinstance(target, ast.Name) and self._staged(value):
            self.staged_names.add(target.id)
        if isinstance(target, ast.Tuple | ast.List) and isinstance(value, ast.GeneratorExp):
            # `a, b = (stack.enter_context(atomic_file(p)) for p in paths)`
            if any(
                isinstance(n, ast.Call) and _name(n.func) == "atomic_file"
                for n in ast.walk(value.elt)
            ):
                for element in target.elts:
                    if isinstance(element, ast.Name):
                        self.staged_names.add(element.id)

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            target = item.optional_vars
            if target is None:
                continue
            self._bind(target, item.context_expr)
            if isinstance(item.context_expr, ast.Call) and isinstance(target, ast.Name):
                written = _written_target(item.context_expr)
                if written is not None:
                    self.handles[target.id] = written
        for statement in node.body:
            self.visit(statement)

    visit_AsyncWith = visit_With

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        for target in node.targets:
            self._bind(target, node.value)

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        target = _written_target(node)
        if target is None:
            return
        if _name(node.func) == "dump":  # json.dump(obj, handle): the handle's open is checked
            if isinstance(target, ast.Name) and target.id in self.handles:
                return
            if isinstance(target, ast.Attribute) and _name(target.value) == "sys":
                return
        self.writes.append(
            Write(
                self.file,
                node.lineno,
                self.function,
                ast.unparse(node)[:120],
                ast.unparse(target),
                self._staged(target),
            )
        )


def scan(source: str, file: str) -> list[Write]:
    scanner = _Scanner(file)
    scanner.visit(ast.parse(source))
    return scanner.writes


def package_writes() -> list[Write]:
    writes = []
    for path in sorted(PACKAGE.rglob("*.py")):
        writes += scan(path.read_text(), path.relative_to(PACKAGE).as_posix())
    return writes


def test_every_file_the_package_writes_is_written_atomically():
    writes = package_writes()
    assert writes, "the scan found no writes at all: it is broken"
    assert any(w.staged for w in writes)
    loose = [
        f"{w.file}:{w.line} in {w.function}: {w.call}"
        for w in writes
        if not w.staged and (w.file, w.function, w.target) not in ALLOWED
    ]
    assert not loose, "written in place (use sparsetune.atomic):\n" + "\n".join(loose)


def test_the_allow_list_names_only_writes_that_exist():
    found = {(w.file, w.function, w.target) for w in package_writes() if not w.staged}
    assert set(ALLOWED) <= found, set(ALLOWED) - found


EXAMPLES = """
import json, os, shutil, torch
from pathlib import Path
from sparsetune.atomic import atomic_file

def final(path, data, figure, frame, program):
    from safetensors.torch import save
    blob = save(data)  # bytes, not a file
    path.write_text("x")
    Path(path).write_bytes(b"x")
    open(path, "w")
    with path.open("a") as handle:
        json.dump(data, handle)
    torch.save(data, path / "model.pt")
    torch.export.save(program, path)
    figure.savefig(path)
    frame.to_csv(path)
    shutil.copy(path, path.with_suffix(".bak"))
    shutil.copyfile(path, "x")
    os.open(path, os.O_WRONLY | os.O_CREAT)

def staged(path, data, figure):
    with atomic_file(path) as staging:
        staging.write_text("x")
        torch.save(data, str(staging))
        figure.savefig(staging)
        with staging.open("w") as handle:
            json.dump(data, handle)

def scratch(data):
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        inside = Path(folder) / "state.pt"
        torch.save(data, inside)
        (Path(folder) / "round.json").write_text("{}")

def reads(path):
    open(path)
    open(path, "rb")
    path.open()
    path.read_text()
    os.open(path, os.O_RDONLY)
"""


@pytest.mark.parametrize(
    ("function", "count", "staged"),
    [("final", 11, False), ("staged", 4, True), ("scratch", 2, True)],
)
def test_the_scan_finds_each_kind_of_write(function, count, staged):
    writes = [w for w in scan(EXAMPLES, "examples.py") if w.function == function]
    assert len(writes) == count, writes
    assert all(w.staged is staged for w in writes), writes


def test_reads_are_not_writes():
    assert [w for w in scan(EXAMPLES, "examples.py") if w.function == "reads"] == []
