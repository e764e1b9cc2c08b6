"""The hand-built sweep folder of review_helpers.py as a fixture."""

from __future__ import annotations

from pathlib import Path

import pytest
from review_helpers import make_sweep


@pytest.fixture
def sweep_dir(tmp_path) -> Path:
    return make_sweep(tmp_path / "sweep")
