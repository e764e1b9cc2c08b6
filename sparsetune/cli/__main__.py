"""`python -m sparsetune.cli`: the `sparsetune` command."""

import sys

from sparsetune.cli import main

sys.exit(main())
