"""The application layer: what `sparsetune` does, as plain functions over typed options.

The CLI, scheduled sweeps and the Python API call these; nothing here knows of typer.
"""
