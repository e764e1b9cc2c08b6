"""`import sparsetune` (and what the CLI needs before it validates input) loads no heavy library.

Each check runs in a fresh interpreter: this test process has long since imported torch.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from python_script import script_json

HEAVY = ("torch", "ray", "optuna", "mlflow", "torchvision")


def loaded_after(statements: str) -> list[str]:
    code = (
        "import json, sys\n"
        f"{statements}\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    return script_json(code)


def test_the_check_sees_a_heavy_import():
    assert loaded_after("import sparsetune.train.loop") == ["torch"]


@pytest.mark.parametrize(
    "module",
    [
        "sparsetune",
        "sparsetune.config",
        "sparsetune.registry",
        "sparsetune.catalog",
        "sparsetune.validation",
        "sparsetune.results",
        "sparsetune.recipe",
        "sparsetune.identity",
        "sparsetune.app",
        "sparsetune.cli",
    ],
)
def test_importing_loads_no_heavy_library(module):
    assert loaded_after(f"import {module}") == []


def test_the_application_layer_imports_its_heavy_parts_inside_functions():
    app = Path(__file__).resolve().parents[1] / "sparsetune" / "app"
    modules = sorted(
        f"sparsetune.app.{path.stem}" for path in app.glob("*.py") if path.stem != "__init__"
    )
    assert "sparsetune.app.options" in modules
    assert loaded_after("\n".join(f"import {module}" for module in modules)) == []


def test_validating_names_and_data_needs_no_torch():
    statements = (
        "import sparsetune.models, sparsetune.data, sparsetune.pruning\n"
        "import sparsetune.search.objectives, sparsetune.tracking\n"
        "from sparsetune.models import MODELS\n"
        "from sparsetune.data import DATASETS\n"
        "from sparsetune.pruning import METHODS\n"
        "MODELS.check('lenet5'); DATASETS.check('mnist'); METHODS.check('magnitude')\n"
        "from sparsetune.config import DataConfig, TrainConfig\n"
        "DataConfig(name='mnist', subset=100); TrainConfig(epochs=1)"
    )
    assert loaded_after(statements) == []


def test_the_search_function_is_not_hidden_by_the_search_subpackage():
    # Importing `sparsetune.search.*` would set the subpackage as `sparsetune.search` and hide
    # the API function after the first sweep of a notebook; the package keeps the function.
    code = (
        "import sparsetune\n"
        "import sparsetune.search.options, sparsetune.app.api\n"
        "from sparsetune.search.options import SweepConfig\n"
        "assert callable(sparsetune.search), sparsetune.search\n"
        "print(sparsetune.search.__module__, sparsetune.prune.__module__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["sparsetune.app.api", "sparsetune.app.api"]
