"""The one error type for bad input, whichever front end reads it."""

from __future__ import annotations


class BadInput(ValueError):
    """A user error, with a one-line message naming the problem and the fix. Every check of
    user input raises it before the first file, folder or MLflow run is created; the CLI prints
    it as `sparsetune: error: ...` and exits with code 2."""
