"""What a wheel ships: every package under sparsetune/, and the search spaces, which live in the
top-level folder search_spaces/ and are mapped into the package by pyproject.toml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]
SPACES_PACKAGE = "sparsetune.search_spaces"


def setuptools_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_pyproject_lists_every_package_and_maps_the_spaces():
    config = setuptools_config()
    found = find_packages(str(ROOT), include=["sparsetune", "sparsetune.*"])
    missing = sorted(set(found) - set(config["packages"]))
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"
    assert set(config["packages"]) == {*found, SPACES_PACKAGE}
    assert config["package-dir"] == {SPACES_PACKAGE: "search_spaces"}
    assert config["package-data"][SPACES_PACKAGE] == ["*.yaml", "methods/*.yaml"]


def test_every_library_the_package_imports_is_a_declared_dependency():
    """A library imported by sparsetune/ and missing from [project] dependencies (or a user-facing
    extra) works here, where the dev extra or another library's requirements installed it, and
    fails on a user's machine, or breaks when that library drops it."""
    import ast
    import re
    from importlib.metadata import packages_distributions

    def distribution(requirement: str) -> str:
        return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = [
        r for extra, rs in project["optional-dependencies"].items() if extra != "dev" for r in rs
    ]
    # An extra's library (timm) is imported only where a user asks for it.
    declared = {distribution(r) for r in [*project["dependencies"], *optional]}
    declared.add("pydantic-core")  # pydantic's own compiled half: PydanticUndefined lives there
    top_level = set()
    for path in (ROOT / "sparsetune").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                top_level |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                top_level.add(node.module.split(".")[0])
    owners = packages_distributions()
    undeclared = {
        module: owners[module]
        for module in sorted(top_level - set(sys.stdlib_module_names) - {"sparsetune"})
        if module in owners
        and not {name.lower().replace("_", "-") for name in owners[module]} & declared
    }
    assert undeclared == {}, "declare these in pyproject.toml [project] dependencies"


@pytest.mark.slow
def test_a_wheel_ships_the_spaces_and_finds_them_installed(tmp_path):
    # Built from a copy: setuptools writes build/ into the source folder, and a stale build/lib
    # there would slip deleted modules into later wheels.
    source = tmp_path / "source"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for part in ("sparsetune", "search_spaces"):
        shutil.copytree(ROOT / part, source / part, ignore=skip)
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, source / part)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(tmp_path / "wheel"), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "wheel").glob("sparsetune-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    shipped = {
        path.relative_to(ROOT).as_posix() for path in (ROOT / "search_spaces").rglob("*.yaml")
    }
    assert {f"sparsetune/{name}" for name in shipped} <= names
    assert "sparsetune/recipes/lenet300.yaml" in names

    # Installed (the unpacked wheel first on the path, the checkout not on it), the defaults of
    # `sparsetune search --space` and of `sparsetune prune`'s recipes are the wheel's own files.
    code = (
        "from sparsetune.search.space import default_space_path, load_space\n"
        "from sparsetune.recipe import method_recipe\n"
        "path = default_space_path('lenet300')\n"
        "print(path, len(load_space(path).method_names), method_recipe('lenet300', 'snip').source)"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    space, count, recipe = result.stdout.split()
    installed = tmp_path / "site" / "sparsetune"
    assert Path(space) == installed / "search_spaces" / "lenet300.yaml"
    assert int(count) >= 8
    assert Path(recipe) == installed / "recipes" / "lenet300.yaml"
