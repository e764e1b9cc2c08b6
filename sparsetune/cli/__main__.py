"""`python -m sparsetune.cli`: the `sparsetune` command."""

import sys

from sparsetune.cli import run

sys.exit(run())
