"""Results a person reads: Pareto tables, per-layer tables, and the sweep's result files."""
