"""`python -m sparsetune`: the `sparsetune` command, for an environment whose scripts folder is
not on PATH (a notebook's kernel, `uv run`, a cluster image)."""

import sys

from sparsetune.cli import run

sys.exit(run())
