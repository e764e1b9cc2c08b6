"""The search layer: YAML spaces, objectives, the searcher, the Ray Tune trainable and the sweep
driver.

`space`, `objectives` and `pareto` import no Ray; `searcher`, `trainable`, `tuner` and `sweep`
do, so import them only where a sweep actually runs. Every private Ray or Optuna attribute the
layer needs is reached through `private_api`, which checks the installed versions.
"""
