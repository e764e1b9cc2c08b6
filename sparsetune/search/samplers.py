"""The Optuna sampler for a sweep: `--sampler auto|tpe|nsga2|gp|random|qmc`.

`auto` picks by the space and the objective (`choices.resolve_sampler`; docs/search.md says why):
- a conditional space (several methods, or `when:` parameters) -> TPE, the one sampler that
  models a knob only from the trials that had it (NSGA-II, GP and QMC draw every knob outside the
  first trial's space at random). Univariate: one density per knob. Multivariate TPE with
  `group=True` models each method's knobs jointly, but a sweep of 24-48 trials gives each of eight
  methods a handful; on benchmarks/search_efficiency.py it was worse at 24 trials on both grids
  tried, and at 48 on the finer one (benchmarks/README.md);
- a fixed space, one objective -> GP (Gaussian-process BO is the most sample-efficient on a small
  continuous space, and a trial costs minutes, so its seconds of fitting are free);
- a fixed space, several objectives -> TPE while the budget is under 100 trials, NSGA-II above
  (a genetic algorithm needs generations of about 50 to get going).
Constraints (`max-acc`, `max-compression`) reach every sampler through `Trial.set_constraint`,
which TPE, NSGA-II and GP read; random and QMC ignore them, as they ignore every result.
"""

from __future__ import annotations

import warnings

import optuna

from sparsetune.search.choices import SAMPLERS


def startup_trials(trials: int) -> int:
    """Random trials before a model-based sampler starts modelling: a third of the budget, 4 to
    10 (Optuna's default of 10 would spend a whole small sweep at random)."""
    return max(4, min(10, trials // 3))


def make_sampler(name: str, *, trials: int, seed: int) -> optuna.samplers.BaseSampler:
    """A concrete sampler (`resolve_sampler` first)."""
    # constant_liar and GP are marked experimental; the warning says nothing to act on.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if name == "tpe":
        return optuna.samplers.TPESampler(
            constant_liar=True,  # concurrent trials do not propose the same point
            n_startup_trials=startup_trials(trials),
            seed=seed,
        )
    if name == "nsga2":
        # Generations of about a tenth of the budget, 8 to 50.
        return optuna.samplers.NSGAIISampler(
            population_size=max(8, min(50, trials // 10)), seed=seed
        )
    if name == "gp":
        return optuna.samplers.GPSampler(
            n_startup_trials=startup_trials(trials), seed=seed, warn_independent_sampling=False
        )
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        # Parameters outside the first trial's space (another method's) are drawn at random.
        return optuna.samplers.QMCSampler(
            qmc_type="sobol",
            scramble=True,
            seed=seed,
            warn_independent_sampling=False,
            warn_asynchronous_seeding=False,
        )
    raise ValueError(f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS[1:])}")
