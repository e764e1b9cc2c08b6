"""The Optuna sampler for a sweep.

The space is conditional on the method (each method has its own parameters), so the default is
multivariate TPE with `group=True`, which models each sub-space that co-occurs on its own; it
handles several objectives. NSGA-II assumes a fixed space and is left to later objectives.
`constant_liar` keeps concurrent trials from proposing the same point.
"""

from __future__ import annotations

import warnings

import optuna

from sparsetune.search.objectives import Objective


def make_sampler(objective: Objective, *, trials: int, seed: int) -> optuna.samplers.BaseSampler:
    # TPE's default of 10 random start-up trials would spend a whole small sweep at random;
    # a third of the budget (at least 4) is random, the rest is modelled.
    startup = max(4, min(10, trials // 3))
    # multivariate, group and constant_liar are marked experimental; they are what makes TPE
    # work on a conditional space, so the warning says nothing a user can act on.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna.samplers.TPESampler(
        multivariate=True,
        group=True,
        constant_liar=True,
        n_startup_trials=startup,
        seed=seed,
    )
