"""The Optuna sampler for a sweep: `--sampler auto|tpe|nsga2|gp|random|qmc`.

`auto` picks by the space and the objective (`choices.resolve_sampler`; docs/search.md says why):
- a conditional space (several methods, or `when:` parameters) -> TPE, the one sampler that
  models a knob only from the trials that had it (NSGA-II, GP and QMC draw every knob outside the
  first trial's space at random). See `_tpe` for how it is set up;
- a fixed space, one objective -> GP (Gaussian-process BO is the most sample-efficient on a small
  continuous space, and a trial costs minutes, so its seconds of fitting are free);
- a fixed space, several objectives -> TPE while the budget is under 100 trials, NSGA-II above
  (a genetic algorithm needs generations of about 50 to get going).
Constraints (`max-acc`, `max-compression`) reach every sampler through `Trial.set_constraint`,
which TPE, NSGA-II and GP read; random and QMC ignore them, as they ignore every result.
"""

from __future__ import annotations

import threading
import warnings

import optuna

from sparsetune.search.choices import SAMPLERS
from sparsetune.search.rounds import is_round_trial


def startup_trials(trials: int) -> int:
    """Random trials before a model-based sampler starts modelling: a sixth of the budget, 4 to
    8 (Optuna's default of 10 would spend a whole small sweep at random). Measured on
    benchmarks/search_efficiency.py at 48 trials: 8 found the best region in 50-53% of the seeds
    of three seed sets, 10 in 13-47%, 6 in 30-53%, 4 in 30-43% (benchmarks/README.md)."""
    return max(4, min(8, trials // 6))


def make_sampler(name: str, *, trials: int, seed: int) -> optuna.samplers.BaseSampler:
    """A concrete sampler (`resolve_sampler` first). The model-based TPE and GP are shown the
    trials they proposed only (`ProposedTrialsOnly`); NSGA-II keeps to the generations it made
    itself, and random and QMC read no result."""
    sampler = _sampler(name, trials=trials, seed=seed)
    return ProposedTrialsOnly(sampler) if name in ("tpe", "gp") else sampler


def _sampler(name: str, *, trials: int, seed: int) -> optuna.samplers.BaseSampler:
    # constant_liar and GP are marked experimental; the warning says nothing to act on.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if name == "tpe":
        return _tpe(trials, seed)
    if name == "nsga2":
        # Generations of about a tenth of the budget, 8 to 50.
        return PicklableNSGAII(population_size=max(8, min(50, trials // 10)), seed=seed)
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


def _tpe(trials: int, seed: int) -> optuna.samplers.TPESampler:
    """TPE as sweeps run it. Multivariate with `group=True`: one joint density over each method's
    knobs, so that it learns which knobs go together (magnitude pruning's high `c_fc` pays only
    with retraining at a high rate; one density per knob learned "high `c_fc`" from the
    compressed trials and "low rate" from the accurate ones, and proposed the two together).
    `consider_endpoints` keeps the kernels at a range's ends as wide as elsewhere (a pruning
    space's best values are often at an end), and `prior_weight` 0.5 lets the trials count more
    against the flat prior. On benchmarks/search_efficiency.py, with the papers' points first,
    this reached 95% of the table's front by 48 trials in 67-83% of the seeds of nine sets of 30
    (univariate TPE: 23-53% on six of them), and its median after 24 trials stood 1.03-1.14x
    above random search's after 96. Without either of the two settings, or univariate with both,
    one figure or the other fell short (benchmarks/README.md)."""
    with warnings.catch_warnings():
        # Optuna 4.9 deprecated both for removal in 6.0 (pyproject.toml keeps optuna below 6);
        # the warning would reach every sweep's user with nothing for them to do.
        warnings.filterwarnings(
            "ignore", message="`(consider_endpoints|prior_weight)` has been deprecated"
        )
        return optuna.samplers.TPESampler(
            multivariate=True,
            group=True,
            consider_endpoints=True,
            prior_weight=0.5,
            constant_liar=True,  # concurrent trials do not propose the same point
            n_startup_trials=startup_trials(trials),
            seed=seed,
        )


_LOCK_TYPE = type(threading.Lock())


class PicklableNSGAII(optuna.samplers.NSGAIISampler):
    """NSGA-II that Ray can pickle with the searcher (Ray saves it in the experiment state, and
    ships it to a Ray Client server): Optuna 5.1's genetic samplers hold a `threading.Lock`,
    which pickle refuses. Each lock is left out and a fresh one made on unpickling."""

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        locks = [key for key, value in state.items() if isinstance(value, _LOCK_TYPE)]
        for key in locks:
            del state[key]
        return state | {"_picklable_locks": locks}

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        for key in state.pop("_picklable_locks", []):
            state[key] = threading.Lock()
        self.__dict__.update(state)


class _ProposedView:
    """A study as a sampler sees it: the trials it proposed (Ray's), without the earlier rounds
    added beside them (`search.rounds`); everything else is the study's own."""

    def __init__(self, study: optuna.Study):
        self._study = study

    def __getattr__(self, name: str):
        return getattr(self._study, name)

    def _get_trials(self, *args, **kwargs):
        return [t for t in self._study._get_trials(*args, **kwargs) if not is_round_trial(t)]

    def get_trials(self, *args, **kwargs):
        return [t for t in self._study.get_trials(*args, **kwargs) if not is_round_trial(t)]

    @property
    def trials(self):
        return self.get_trials()


class ProposedTrialsOnly(optuna.samplers.BaseSampler):
    """The sweep's sampler, modelling from the trials it proposed, each holding its trial's last
    round, and not from the earlier rounds the study also holds (`search.rounds`: there for the
    record, `study.best_trials` and optuna-dashboard). Measured on benchmarks/search_efficiency.py,
    TPE found the space's best region less often when it also modelled the earlier rounds
    (univariate then: median hypervolume at 48 trials 1.30-1.34 against 1.42-1.44 on three seed
    sets; benchmarks/README.md): they crowd the accurate, lightly pruned end of the front, which
    holds little hypervolume, into its "good" trials."""

    def __init__(self, inner: optuna.samplers.BaseSampler):
        self.inner = inner

    def infer_relative_search_space(self, study, trial):
        return self.inner.infer_relative_search_space(_ProposedView(study), trial)

    def sample_relative(self, study, trial, search_space):
        return self.inner.sample_relative(_ProposedView(study), trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.inner.sample_independent(
            _ProposedView(study), trial, param_name, param_distribution
        )

    def before_trial(self, study, trial):
        self.inner.before_trial(_ProposedView(study), trial)

    def after_trial(self, study, trial, state, values):
        self.inner.after_trial(_ProposedView(study), trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()
