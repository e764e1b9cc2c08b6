"""Configurations to try first (`--enqueue FILE`): a YAML list of points, each

    - method: magnitude
      params: {c_fc: 1.7, rounds: 3}
      models: [lenet300, lenet5]    # optional: only for sweeps of these models
      source: Han et al. 2015       # optional: a note for the reader

A point gives values for the parameters the space samples; parameters it leaves out are sampled
as usual. Points for another model are passed over; points for a method outside this sweep are
skipped and named; a parameter the space does not sample, or a value outside its range, is bad
input.
`search_spaces/paper_points.yaml` holds the papers' settings in this form (`--enqueue paper`).

By default (`--enqueue auto`) a sweep runs the papers' points that fit its space first, when it
has at least twice as many trials as points (the sampler keeps half the budget or more): on
benchmarks/search_efficiency.py that start lifts the median hypervolume after 24 trials above
random search's after 96 (benchmarks/README.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsetune.catalog import METHODS
from sparsetune.search.space import SPACES_DIR, ParamSpec, SearchSpace
from sparsetune.yamlio import excerpt, load_file, shorten

PAPER_POINTS = SPACES_DIR / "paper_points.yaml"
AUTO, NONE = "auto", "none"  # `--enqueue` values that name no file
# `auto` enqueues the papers' points only where the sweep has this many trials per point.
AUTO_TRIALS_PER_POINT = 2
POINTS_EXPECTED = "a list of points in YAML (- method: ..., params: ...)"


@dataclass
class Enqueued:
    points: list[dict[str, Any]]  # flat Optuna parameters, in file order
    skipped: list[str] = field(default_factory=list)  # methods of skipped points, with why


def enqueue_path(value: str | Path) -> Path:
    return PAPER_POINTS if str(value) == "paper" else Path(value).expanduser()


def auto_points(
    space: SearchSpace,
    model: str,
    trials: int,
    check: Callable[[str, str, dict[str, Any]], None] | None = None,
) -> Enqueued:
    """What `--enqueue auto` (the default) runs first: the papers' points that fit `space` (one
    that does not is left out and named in `skipped`), or none where the sweep has fewer than
    AUTO_TRIALS_PER_POINT trials a point: a short sweep stays the sampler's."""
    loaded = load_points(PAPER_POINTS, space, model, check, lenient=True)
    if trials < AUTO_TRIALS_PER_POINT * len(loaded.points):
        return Enqueued([], [f"all {len(loaded.points)}: {trials} trials are too few"])
    return loaded


def load_points(
    path: Path,
    space: SearchSpace,
    model: str,
    check: Callable[[str, str, dict[str, Any]], None] | None = None,
    lenient: bool = False,
) -> Enqueued:
    """Read and check the points of `path` for a sweep of `model` over `space` (one-line
    ValueError on a bad file or point). `check(where, method, params)`, if given, vets each
    point of this sweep first (the run's own limits: its error names the point). `lenient`: a
    point that does not fit the space or the run is skipped, not refused (points the user did not
    ask for)."""
    raw = load_file(path, label=f"--enqueue {path}", expected=POINTS_EXPECTED)
    if not isinstance(raw, list):
        raise ValueError(f"--enqueue {path}: expected {POINTS_EXPECTED}")
    result = Enqueued([])
    for index, point in enumerate(raw, start=1):
        where = f"--enqueue {path.name}: point {index}"
        method, params, models = _point_fields(where, point)
        if models is not None and model not in models:
            continue  # another model's point: silently, as a shared file is meant to be read
        if method not in space.methods:
            result.skipped.append(f"{method} (not in this sweep)")
            continue
        try:
            if check is not None:
                check(where, method, params)
            result.points.append(flat_point(where, space, method, params))
        except ValueError as error:
            if not lenient:
                raise
            result.skipped.append(f"{method} ({str(error).removeprefix(where + ': ')})")
    return result


def _point_fields(where: str, point: Any) -> tuple[str, dict[str, Any], list[str] | None]:
    """(method, params, models) of one point, each of the type it must have; the method a
    registered one (a typo is refused, not skipped as another sweep's method)."""
    if not isinstance(point, dict) or "method" not in point:
        raise ValueError(f"{where}: expected a mapping with `method` and `params`")
    unknown = sorted(str(key) for key in set(point) - {"method", "params", "models", "source"})
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {shorten(', '.join(unknown))}")
    method = point["method"]
    if not isinstance(method, str):
        raise ValueError(f"{where}: method: expected a method name, got {excerpt(method)}")
    try:
        METHODS.check(method)
    except ValueError as error:
        raise ValueError(f"{where}: method: {error}") from None
    params = point.get("params")
    if params is None:
        params = {}
    if not isinstance(params, dict) or not all(isinstance(key, str) for key in params):
        raise ValueError(
            f"{where}: params: expected a mapping, parameter -> value (got {excerpt(params)})"
        )
    models = point.get("models")
    if models is not None and (
        not isinstance(models, list) or not all(isinstance(m, str) for m in models)
    ):
        raise ValueError(f"{where}: models: expected a list of model names (got {excerpt(models)})")
    return method, params, models


def flat_point(where: str, space: SearchSpace, method: str, params: dict) -> dict[str, Any]:
    """The flat Optuna parameters of one point of `method` (already known to be in `space`);
    a one-line ValueError, starting with `where`, when it does not fit the space."""
    return _flat_point(where, space, method, params)


def _flat_point(where: str, space: SearchSpace, method: str, params: dict) -> dict[str, Any]:
    specs = space.methods[method]
    flat: dict[str, Any] = {"method": method} if len(space.methods) > 1 else {}
    for name, value in params.items():
        spec = specs.get(name)
        if spec is None:
            raise ValueError(f"{where}: {method} has no parameter {excerpt(name)} in this space")
        if spec.value is not None:
            if not _same_value(value, spec.value):
                raise ValueError(
                    f"{where}: {method}.{name} is fixed at {spec.value!r} in this space, "
                    f"not {excerpt(value)}; drop it from the point or widen the space"
                )
            continue
        _check_in_spec(where, f"{method}.{name}", spec, value)
        flat[f"{method}.{name}"] = value
    return flat


def _check_in_spec(where: str, name: str, spec: ParamSpec, value: Any) -> None:
    if spec.choices is not None:
        if not any(_same_value(value, choice) for choice in spec.choices):
            raise ValueError(
                f"{where}: {name}={excerpt(value)} is not one of {excerpt(spec.choices)}"
            )
        return
    assert spec.low is not None and spec.high is not None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: {name}={excerpt(value)} is not a number")
    if not spec.low <= value <= spec.high:  # inf and nan too
        raise ValueError(
            f"{where}: {name}={excerpt(value)} is outside the space's [{spec.low}, {spec.high}]"
        )
    if spec.integer and value != int(value):
        raise ValueError(f"{where}: {name}={value} must be a whole number")


def _same_value(value: Any, wanted: Any) -> bool:
    """Equal, and of the same kind: `true` is not `1` (Python says they are equal), though `2`
    and `2.0` are the same number."""
    if isinstance(value, bool) or isinstance(wanted, bool):
        return type(value) is type(wanted) and value == wanted
    numbers = (int, float)
    if isinstance(value, numbers) and isinstance(wanted, numbers):
        return value == wanted
    return type(value) is type(wanted) and value == wanted
