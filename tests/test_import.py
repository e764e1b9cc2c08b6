"""`import sparsetune` (and the modules the CLI needs before it validates input) stay light."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "ray", "optuna", "mlflow", "torchvision")


def test_importing_the_package_loads_no_heavy_library():
    code = (
        "import sys\n"
        "import sparsetune, sparsetune.config, sparsetune.registry, sparsetune.identity\n"
        "import sparsetune.cli, sparsetune.models, sparsetune.data, sparsetune.pruning\n"
        "import sparsetune.search.objectives, sparsetune.tracking\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_validating_names_needs_no_torch():
    code = (
        "import sys\n"
        "from sparsetune.models import MODELS\n"
        "from sparsetune.data import DATASETS\n"
        "from sparsetune.pruning import METHODS\n"
        "MODELS.check('lenet5'); DATASETS.check('mnist'); METHODS.check('magnitude')\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
