"""Where the search spaces that sparsetune ships live (the papers' recipes sit in the package, in
`sparsetune/recipes/`).

The spaces are a top-level folder of the checkout, `search_spaces/`, where a user finds and copies
them; pyproject.toml maps that folder into the wheel as `sparsetune/search_spaces/`. So an
installed wheel finds them inside the package, and a checkout (an editable install too) beside
it. Imports nothing: the bottom layer (recipes) reads a space's `train:` section through it.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_IN_WHEEL = _PACKAGE_DIR / "search_spaces"

SPACES_DIR = _IN_WHEEL if _IN_WHEEL.is_dir() else _PACKAGE_DIR.parent / "search_spaces"
