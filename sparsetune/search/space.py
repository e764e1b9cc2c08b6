"""Search spaces from YAML, turned into an Optuna define-by-run function.

A space file names the dense training recipe and, per method, its parameters:

    train: {optimizer: sgd, lr: 0.05, epochs: 4}
    methods:
      dense: {}
      magnitude: methods/magnitude.yaml      # a fragment, relative to this file, or inline

or `methods: all`: every registered method that has a fragment (`method_fragment`), in the
catalog's order, plugins' included; `overrides: {name: ...}` then replaces a method's fragment.
A parameter is a fixed value (`rounds: 3`), a choice (`criterion: {choices: [std, global]}`) or a
range (`c_fc: {low: 0.3, high: 2.5, log: true}`; integer bounds give an integer range), and may
apply only when an earlier parameter has a value (`when: {criterion: std}`). Every value, bound
and choice is checked against the method's own Config before anything runs, so a typo or an
out-of-range bound fails with the file, the field and the allowed values.

A model without a space file of its own gets one built from its layers (`generated_space`);
`space_yaml` writes any space as one file, fragments inline (`sparsetune space`).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from sparsetune.catalog import METHODS, method_config_class
from sparsetune.config import TrainConfig
from sparsetune.shipped import SPACES_DIR
from sparsetune.validation import describe_validation_error
from sparsetune.yamlio import load_file, shorten

if TYPE_CHECKING:
    import optuna

ALL_METHODS = "all"
SPACE_EXPECTED = "a search-space YAML file with `--space FILE` (`sparsetune space` prints one)"
FRAGMENT_EXPECTED = "a YAML file of the method's parameters, relative to the space's folder"
Scalar = bool | int | float | str


class ParamSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    value: Scalar | None = None
    choices: list[Scalar] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False  # set from the YAML: integer bounds give an integer range
    when: dict[str, Scalar | list[Scalar]] = {}

    @model_validator(mode="before")
    @classmethod
    def _scalar_is_fixed(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return {"value": data}
        # `low: 1, high: 4` is an integer range, `low: 1.0, high: 4.0` a float one: YAML keeps
        # that distinction and a float field would erase it, so read it here.
        bounds = [data.get("low"), data.get("high")]
        if "integer" not in data and all(type(b) is int for b in bounds):
            data = {**data, "integer": True}
        return data

    @model_validator(mode="after")
    def _one_kind(self) -> ParamSpec:
        kinds = [self.value is not None, self.choices is not None, self.low is not None]
        if sum(kinds) != 1 or (self.low is None) != (self.high is None):
            raise ValueError("give a value, `choices: [...]`, or both `low` and `high`")
        if self.choices is not None and not self.choices:
            raise ValueError("`choices` must not be empty")
        if self.low is not None and self.high is not None:
            self._check_range(self.low, self.high)
        elif self.step is not None or self.log:
            raise ValueError("`step` and `log` belong to a range; give `low` and `high` too")
        return self

    def _check_range(self, low: float, high: float) -> None:
        """Bounds and step that Optuna can sample, each refused before a sweep starts (Optuna
        itself would fail only at the first trial, after the sweep folder and its run exist)."""
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError("low and high must be finite numbers, not inf or nan")
        if low > high:
            raise ValueError(f"low ({low}) is above high ({high}); swap them")
        if self.log and low <= 0:
            raise ValueError("a log range needs low > 0")
        if self.step is None:
            return
        if self.log:
            raise ValueError("`step` and `log: true` cannot be combined; drop one of them")
        if not math.isfinite(self.step) or self.step <= 0:
            raise ValueError("step must be a positive number")
        if self.integer and self.step != int(self.step):
            raise ValueError(
                f"step {self.step} is not a whole number, but the whole-number bounds make "
                f"this an integer range; give a whole step, or bounds such as {float(low)} and "
                f"{float(high)} for a float range"
            )
        if self.step > high - low and high > low:
            raise ValueError(
                f"step ({self.step}) is wider than the range [{low}, {high}]; lower it or widen "
                "the range"
            )

    def candidate_values(self) -> list[tuple[str, Scalar]]:
        """(where, value) for every value this spec can produce at its edges, for validation."""
        if self.value is not None:
            return [("", self.value)]
        if self.choices is not None:
            return [("choices", choice) for choice in self.choices]
        assert self.low is not None and self.high is not None
        cast = int if self.integer else float
        return [("low", cast(self.low)), ("high", cast(self.high))]

    def suggest(self, trial: optuna.Trial, name: str) -> Scalar:
        if self.value is not None:
            return self.value
        if self.choices is not None:
            return trial.suggest_categorical(name, self.choices)
        assert self.low is not None and self.high is not None
        if self.integer:
            step = int(self.step or 1)
            return trial.suggest_int(name, int(self.low), int(self.high), step=step, log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def applies(self, chosen: dict[str, Scalar]) -> bool:
        for other, wanted in self.when.items():
            allowed = wanted if isinstance(wanted, list) else [wanted]
            if chosen.get(other) not in allowed:
                return False
        return True


class SearchSpace(BaseModel):
    """A validated space: the dense recipe and, per method, its parameter specs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = "<inline>"
    description: str = ""
    train: TrainConfig = TrainConfig()
    methods: dict[str, dict[str, ParamSpec]]

    @property
    def method_names(self) -> list[str]:
        return list(self.methods)

    @property
    def is_conditional(self) -> bool:
        """True when the parameters sampled depend on earlier choices (method or `when`)."""
        return len(self.methods) > 1 or any(
            spec.when for params in self.methods.values() for spec in params.values()
        )

    def sample(self, trial: optuna.Trial) -> dict[str, Scalar]:
        """Define-by-run: pick a method, then its parameters. Returns the flat Ray config
        ("method", "<method>.<param>"). Does no other work: Optuna calls it on the driver."""
        names = self.method_names
        method = trial.suggest_categorical("method", names) if len(names) > 1 else names[0]
        flat: dict[str, Scalar] = {"method": method}
        chosen: dict[str, Scalar] = {}
        for param, spec in self.methods[method].items():
            if spec.applies(chosen):
                chosen[param] = spec.suggest(trial, f"{method}.{param}")
        flat.update({f"{method}.{param}": value for param, value in chosen.items()})
        return flat


def params_from_flat(flat: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Split a flat Ray config back into (method, its params)."""
    method = flat["method"]
    prefix = f"{method}."
    return method, {k[len(prefix) :]: v for k, v in flat.items() if k.startswith(prefix)}


def default_space_path(model: str) -> Path:
    return SPACES_DIR / f"{model}.yaml"


def method_fragment(method: str, folder: Path = SPACES_DIR) -> Path | None:
    """The fragment of a registered `method`, or None if it has none: `methods/<method>.yaml` in
    `folder` (a space's own folder, so that a copied spaces folder uses its edited fragments), else
    in sparsetune's spaces folder (the built-in methods'), else the file that the method's class
    names in `search_space`, relative to the class's module (a plugin's)."""
    for spaces in (folder, SPACES_DIR):
        candidate = spaces / "methods" / f"{method}.yaml"
        if candidate.is_file():
            return candidate
    method_class = METHODS[method]
    if method_class.search_space is None:
        return None
    module_file = sys.modules[method_class.__module__].__file__
    return Path(str(module_file)).parent / method_class.search_space


def load_space(path: Path, methods: list[str] | None = None) -> SearchSpace:
    """Read, resolve fragments and validate a space file; raise ValueError with one line."""
    path = Path(path)
    resolved, _ = resolve_space_file(path)
    return validated_space(resolved, str(path), path.name, methods)


def resolve_space_file(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """(the space file's mapping with every method's body inline: `methods: all` expanded,
    fragments read, `overrides:` applied; the file each method's body came from). The mapping is
    what a single-file copy of the space holds (`space_yaml`)."""
    raw = read_yaml(path)
    if not isinstance(raw, dict) or "methods" not in raw:
        raise ValueError(f"{path}: a space file needs a `methods:` mapping (see {SPACES_DIR})")
    raw_methods = _space_methods(path, raw.get("methods"), raw.pop("overrides", None))
    resolved, origins = {}, {}
    for method, body in raw_methods.items():
        origins[method] = str(path)
        if isinstance(body, str):  # a fragment file, relative to the space
            fragment = path.parent / body
            origins[method] = str(fragment)
            body = read_yaml(fragment, f"{path}: methods.{method}: {fragment}", FRAGMENT_EXPECTED)
        resolved[method] = body or {}
    return {**raw, "methods": resolved}, origins


def validated_space(
    resolved: dict[str, Any], source: str, name: str, methods: list[str] | None = None
) -> SearchSpace:
    """A SearchSpace from a mapping whose methods are inline (`resolve_space_file`'s, or a
    generated one), restricted to `methods`; `source` prefixes every error, `name` is what
    `--methods` errors call the space. ValueError with one line."""
    body = dict(resolved)
    found = body.get("methods") or {}
    if methods:
        unknown = [m for m in methods if m not in found]
        if unknown:
            raise ValueError(
                f"--methods: {', '.join(unknown)} not in {name}; it has: {', '.join(found)}"
            )
        body["methods"] = {m: found[m] for m in methods}
    try:
        space = SearchSpace.model_validate({**body, "source": source})
    except ValidationError as error:
        raise ValueError(f"{source}: {describe_validation_error(error)}") from None
    _check_against_method_configs(space)
    return space


def _space_methods(path: Path, listed: Any, overrides: Any) -> dict[str, Any]:
    """The space's `methods:` (`all` expanded to fragment paths) with `overrides:` applied; every
    name checked against the registry."""
    if listed == ALL_METHODS:
        folder = path.parent
        fragments = {method: method_fragment(method, folder) for method in METHODS.in_order()}
        listed = {method: str(file) for method, file in fragments.items() if file is not None}
    if not isinstance(listed, dict) or not listed:
        raise ValueError(
            f"{path}: methods: give at least one method, e.g. `magnitude: {{}}`, or `all`"
        )
    if not isinstance(overrides, dict | None):
        raise ValueError(f"{path}: overrides: expected a mapping, method name -> parameters")
    for method, body in (overrides or {}).items():
        if method not in listed:
            raise ValueError(
                f"{path}: overrides.{shorten(str(method))}: not among the space's methods "
                f"({shorten(', '.join(map(str, listed)))})"
            )
        listed[method] = body
    for method in listed:
        try:
            METHODS.check(str(method))
        except ValueError as error:
            raise ValueError(f"{path}: methods.{shorten(str(method))}: {error}") from None
    return listed


def space_yaml(header: list[str], resolved: dict[str, Any], notes: dict[str, str]) -> str:
    """A single-file space: `header` as comment lines, then `description`, `train` and every
    method inline, one parameter a line, each method under a comment (`notes[method]`, e.g. the
    fragment it came from). `load_space` reads it back to the same space."""
    lines = [f"# {line}" if line else "#" for line in header]
    for key in ("description", "train"):
        if key in resolved:
            lines.append(yaml.safe_dump({key: resolved[key]}, sort_keys=False, width=100).rstrip())
    lines.append("methods:")
    for method, params in resolved["methods"].items():
        if notes.get(method):
            lines.append(f"  # {notes[method]}")
        lines.append(f"  {_flow({method: params})}" if not params else f"  {method}:")
        lines += [f"    {_flow({name: spec})}" for name, spec in (params or {}).items()]
    return "\n".join(lines) + "\n"


def _flow(entry: dict[str, Any]) -> str:
    """`{name: value}` as one YAML line, `name: value`, the value in flow style."""
    return yaml.safe_dump(entry, default_flow_style=True, sort_keys=False, width=10**6).strip()[
        1:-1
    ]


def _check_against_method_configs(space: SearchSpace) -> None:
    for method, params in space.methods.items():
        config_class = method_config_class(method)
        for name, spec in params.items():
            where = f"{space.source}: methods.{method}.{name}"
            if name not in config_class.model_fields:
                allowed = ", ".join(config_class.model_fields) or "none"
                raise ValueError(f"{where}: unknown parameter; {method} has: {allowed}")
            for other in spec.when:
                if other not in params or list(params).index(other) >= list(params).index(name):
                    raise ValueError(
                        f"{where}: `when` refers to {other!r}, which must be a parameter of "
                        f"{method} listed before {name!r}"
                    )
            for edge, value in spec.candidate_values():
                try:
                    config_class.model_validate({name: value})
                except ValidationError as error:
                    problem = describe_validation_error(error).removeprefix(f"{name}: ")
                    raise ValueError(f"{where}{'.' + edge if edge else ''}: {problem}") from None


def read_yaml(path: Path, label: str | None = None, expected: str = SPACE_EXPECTED) -> Any:
    """A space file or fragment through the package's YAML reader (its limits, one-line errors);
    `label` starts every error line (default: the path)."""
    return load_file(path, label=label, expected=expected)
