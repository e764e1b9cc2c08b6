"""The search layer: YAML spaces, objectives, the Ray Tune trainable and the sweep driver.

`space`, `objectives` and `pareto` import no Ray; `trainable` and `sweep` do, so import them only
where a sweep actually runs.
"""
