"""Property-based fuzzing of every YAML parser of sparsetune: random YAML-ish text and random
structures fed to `yamlio.loads`, the space loader, the sweep-spec loader, the `--enqueue` loader
and `--set`. Whatever comes in, each either returns its result or raises its documented error (a
ValueError of one line); nothing else escapes: no TypeError, KeyError, RecursionError, hang or
traceback. Examples are not stored (`database=None`): each run explores afresh, within a bounded
number of examples per property."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparsetune.app.errors import BadInput
from sparsetune.cli.options import _key_values
from sparsetune.search.enqueue import Enqueued, load_points
from sparsetune.search.space import SearchSpace, load_space
from sparsetune.search.spec import LoadedSpec, load_spec
from sparsetune.yamlio import YamlError, loads

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Pieces of YAML's syntax, so that random text reaches past the scanner into every construct.
YAML_PIECES = [
    "[", "]", "{", "}", ": ", ":", ",", "- ", "-", "? ", "\n", "  ", "    ", "\t", "#", "'", '"',
    "&a ", "&b ", "*a", "*b", "<<: ", "!!int ", "!!float ", "!!str ", "!!bool ", "!!null ",
    "!!binary ", "!!timestamp ", "!!set ", "!!omap ", "!!python/object:os.system ", "!custom ",
    "|", ">", "---", "...", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "\\", "\x00", "\x85", "\ufeff",
    "a", "b", "method", "params", "methods", "low", "high", "step", "log", "choices", "when",
    "model", "dataset", "trials", "magnitude", "dense", "rounds", "c_fc", "1", "-1", "0", "1.5",
    "1e309", ".inf", "-.inf", ".nan", "0x1f", "0o17", "1_000", "true", "no", "~", "null",
    "2020-01-01", "2020-13-45 25:61:61", "=",
]  # fmt: skip
yamlish = st.lists(st.sampled_from(YAML_PIECES), max_size=40).map("".join)
any_text = st.one_of(yamlish, st.text(max_size=200))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),  # nan and inf included
    st.text(max_size=20),
    st.sampled_from(["magnitude", "dense", "snip", "std", "global", "lenet300", "synthetic"]),
)
keys = st.one_of(
    st.text(max_size=10),
    st.sampled_from(["low", "high", "step", "log", "choices", "value", "when", "integer"]),
)
structures = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=25,
)


def one_line(error: ValueError) -> str:
    message = str(error)
    assert message and "\n" not in message, message
    return message


def dumped(value: object) -> str:
    """`value` as YAML text; hypothesis' text includes what YAML cannot write as a plain string,
    which safe_dump quotes or escapes."""
    return yaml.safe_dump(value, allow_unicode=False)


@FUZZ
@given(any_text)
def test_loads_returns_a_value_or_one_yaml_error(text):
    try:
        loads(text, where="--set x")
    except YamlError as error:
        message = one_line(error)
        assert message.startswith("--set x: ") and len(message) < 300, message


@FUZZ
@given(structures)
def test_loads_reads_what_yaml_writes(value):
    text = dumped(value)
    try:
        loaded = loads(text, where="fuzz")
    except YamlError as error:  # only a key that YAML folds into another: 1 and 1.0 and true
        assert "duplicate key" in one_line(error)
        return
    assert _same(loaded, yaml.safe_load(text))


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@FUZZ
@given(st.lists(st.text(max_size=30), max_size=6))
def test_set_values_are_a_mapping_or_one_bad_input_line(items):
    try:
        values = _key_values("--set", items)
    except BadInput as error:
        assert one_line(error).startswith("--set ")
        return
    assert len(values) == len(items)


# The space loader: random text, random structures as a whole file, as the `methods:` mapping,
# and as one method's parameters (where ParamSpec's checks live).
shallow = st.one_of(
    scalars, st.lists(scalars, max_size=3), st.dictionaries(keys, scalars, max_size=3)
)
PARAM_SPECS = st.dictionaries(
    st.sampled_from(["low", "high", "step", "log", "choices", "value", "when", "integer", "x"]),
    shallow,
    max_size=5,
)


def _load_space(folder: Path, text: str) -> None:
    path = folder / "space.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        space = load_space(path)
    except ValueError as error:
        one_line(error)
        return
    assert isinstance(space, SearchSpace)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(text=any_text)
def test_space_loader_on_random_text(folder, text):
    _load_space(folder, text)


@FUZZ
@given(value=st.one_of(structures, st.dictionaries(st.just("methods"), structures)))
def test_space_loader_on_random_structures(folder, value):
    _load_space(folder, dumped(value))


@FUZZ
@given(
    params=st.dictionaries(
        st.sampled_from(["c_fc", "rounds", "criterion", "sparsity", "retrain_epochs", "nope"]),
        st.one_of(PARAM_SPECS, scalars),
        max_size=4,
    ),
    train=st.one_of(st.none(), st.dictionaries(st.sampled_from(["lr", "epochs", "x"]), scalars)),
)
def test_space_loader_on_random_parameter_specs(folder, params, train):
    body: dict = {"methods": {"magnitude": params, "dense": {}}}
    if train is not None:
        body["train"] = train
    _load_space(folder, dumped(body))


# The spec loader: every key a spec has, with random values (no `:` in names, so a model name
# is never an import path: fuzzing must not import modules at random).
SPEC_KEYS = [
    "model", "models", "dataset", "trials", "objective", "seed", "space", "out", "cache_dir",
    "data_dir", "storage", "new_sweep", "warm_start", "methods", "experiment", "weights",
    "max_concurrent", "sampler", "early_stop", "budget_minutes", "budget_epochs", "address",
    "bogus",
]  # fmt: skip
safe_scalars = st.one_of(
    scalars.filter(lambda v: not (isinstance(v, str) and ":" in v)),
    st.sampled_from(["npz:data.npz", "imagefolder:../photos", "/", "..", "../../etc/passwd"]),
)
spec_values = st.recursive(safe_scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=6)


def _no_colon(value: object) -> bool:
    if isinstance(value, str):
        return ":" not in value
    if isinstance(value, dict):
        return all(_no_colon(k) and _no_colon(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_no_colon(v) for v in value)
    return True


@FUZZ
@given(
    spec=st.one_of(
        structures.filter(_no_colon),
        st.dictionaries(st.sampled_from(SPEC_KEYS), spec_values, max_size=6),
        st.fixed_dictionaries(
            {"model": st.sampled_from(["lenet300", "lenet9"]), "dataset": st.just("synthetic")},
            optional={key: spec_values for key in SPEC_KEYS[3:]},
        ),
    )
)
def test_spec_loader_on_random_specs(folder, spec):
    path = folder / "spec.yaml"
    path.write_text(dumped(spec))
    try:
        loaded = load_spec(path)
    except ValueError as error:
        assert str(path) in one_line(error)
        return
    assert isinstance(loaded, LoadedSpec)


@FUZZ
@given(text=yamlish.filter(lambda text: "model" not in text))
def test_spec_loader_on_random_text(folder, text):
    path = folder / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_spec(path)
    except ValueError as error:
        one_line(error)


# The enqueue loader, against one space with every kind of parameter spec.
SPACE = """
methods:
  dense: {}
  magnitude:
    criterion: {choices: [global, std]}
    sparsity: {low: 0.5, high: 0.95, step: 0.05}
    rounds: {low: 1, high: 4, step: 1}
    retrain_lr_factor: {low: 0.01, high: 0.3, log: true}
    retrain_epochs: 2
"""
NAMES = ["criterion", "sparsity", "rounds", "retrain_lr_factor", "retrain_epochs", "nope"]
point_values = st.one_of(
    scalars, st.sampled_from(["std", "global", 1, 2, 0.6, True, 0.1, 0.5, 4]), shallow
)
points = st.fixed_dictionaries(
    {"method": st.one_of(st.sampled_from(["magnitude", "dense", "snip", "magnitud"]), scalars)},
    optional={
        "params": st.one_of(
            st.dictionaries(
                st.sampled_from(NAMES),
                point_values,
                max_size=4,
            ),
            structures,
        ),
        "models": st.one_of(st.lists(st.sampled_from(["lenet300", "lenet5"])), structures),
        "source": scalars,
        "extra": scalars,
    },
)


@pytest.fixture(scope="module")
def space(folder: Path) -> SearchSpace:
    (folder / "enqueue-space.yaml").write_text(SPACE)
    return load_space(folder / "enqueue-space.yaml")


@FUZZ
@given(raw=st.one_of(st.lists(st.one_of(points, structures), max_size=5), structures))
def test_enqueue_loader_on_random_points(folder, space, raw):
    path = folder / "points.yaml"
    path.write_text(dumped(raw))
    try:
        loaded = load_points(path, space, "lenet300")
    except ValueError as error:
        assert one_line(error).startswith("--enqueue ")
        return
    assert isinstance(loaded, Enqueued)
    for point in loaded.points:
        assert set(point) <= {"method"} | {f"magnitude.{name}" for name in NAMES[:4]}


@FUZZ
@given(text=any_text)
def test_enqueue_loader_on_random_text(folder, space, text):
    path = folder / "points.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_points(path, space, "lenet300")
    except ValueError as error:
        assert one_line(error).startswith("--enqueue ")
