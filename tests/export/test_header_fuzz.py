"""Property-based fuzzing (Hypothesis) of ticket and export headers: random metadata (random JSON,
random text, mutations of a real header, random structured layer lists) written into real
safetensors files with small random tensors, or with a real ticket's tensors. `sparsetune.load`
(with and without masks), `read_ticket` and the encoders raise nothing but the documented
one-line `ValueError`: never a RuntimeError, TypeError, KeyError, IndexError, MemoryError or
RecursionError."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

import sparsetune
from sparsetune.export import encode, read_ticket
from sparsetune.export.header import HEADER_KEY, LAYER_ARGS, check_info
from sparsetune.models import build_model
from sparsetune.pruning.masking import attach_masks, squashed_state_dict

# A real ticket to mutate: LeNet-300-100 on a 1 x 2 x 2 input (small tensors, real names).
SHAPE = [1, 2, 2]
HEADER = {"format": "ticket", "model": "lenet300", "input_shape": SHAPE, "num_classes": 3}
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure is reproducible, never flaky
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _ticket_tensors() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model("lenet300", tuple(SHAPE), 3)
    masks = attach_masks(model)
    tensors = {f"mask.{name}": mask.bool() for name, mask in masks.state().items()}
    return tensors | {f"weight.{key}": value for key, value in squashed_state_dict(model).items()}


REAL = _ticket_tensors()
FOLDER = Path(tempfile.mkdtemp(prefix="sparsetune-header-fuzz-"))

# JSON values, with the numbers that break naive readers: negative, huge, fractional, NaN.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**31, 2**63, 10**12]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)
shapes = st.lists(st.integers(min_value=-3, max_value=2**40), min_size=0, max_size=5)
known_keys = st.sampled_from(
    [
        "format",
        "model",
        "input_shape",
        "num_classes",
        "masked",
        "sparse",
        "layers",
        "changed_layers",
        "val_acc",
        "round",
        "parameters",
    ]
)
field_values = st.one_of(
    json_values,
    shapes,
    st.sampled_from(["ticket", "dense", "sparse", "structured", "lenet300", "lenet5", "vgg16"]),
    st.sampled_from(["torchvision:resnet18", "helpers:make", "os:system", "timm:resnet18"]),
    st.dictionaries(st.sampled_from(["fc1.weight", "fc2.weight", "fc3.weight", "x"]), shapes),
)
layer_specs = st.fixed_dictionaries(
    {"type": st.sampled_from([*LAYER_ARGS, "SelectFeatures", "Call", "Module", "eval"])},
    optional={
        "args": st.one_of(
            st.dictionaries(
                st.sampled_from(["in_features", "out_features", "kernel_size", "p", "bias", "x"]),
                scalars | shapes,
                max_size=4,
            ),
            json_values,
        ),
        "size": scalars,
        "function": st.sampled_from(["torch.relu", "os.system", "builtins.eval"]) | scalars,
        "method": st.sampled_from(["flatten", "__reduce__", "view"]) | scalars,
        "kwargs": json_values,
    },
)
structured_headers = st.fixed_dictionaries(
    {
        "format": st.just("structured"),
        "model": st.sampled_from(["lenet300", "helpers:make"]),
        "input_shape": st.just(SHAPE) | shapes,
        "num_classes": st.just(3) | scalars,
    },
    optional={
        "layers": st.lists(layer_specs, max_size=4) | json_values,
        "changed_layers": st.dictionaries(
            st.sampled_from(["fc1", "fc2", "fc9", "", "fc1.weight", "a/b"]), layer_specs, max_size=3
        ),
    },
)


def mutated_headers() -> st.SearchStrategy[dict]:
    """The real header with keys set to random values, or removed."""
    changes = st.dictionaries(known_keys, field_values, max_size=4)
    removed = st.lists(known_keys, max_size=2)
    return st.builds(
        lambda set_, drop: {k: v for k, v in {**HEADER, **set_}.items() if k not in drop},
        changes,
        removed,
    )


def formatted_headers() -> st.SearchStrategy[dict]:
    """A mutated header that keeps one of the four formats, so that the checks past the format
    (per-format models, tensor lists, building) are reached."""
    formats = st.sampled_from(["ticket", "dense", "sparse", "structured"])
    return st.builds(lambda header, fmt: {**header, "format": fmt}, mutated_headers(), formats)


metadata = st.one_of(
    formatted_headers().map(json.dumps),
    mutated_headers().map(json.dumps),
    structured_headers.map(json.dumps),
    st.dictionaries(st.text(max_size=10), json_values, max_size=6).map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=40),
)

dtypes = st.sampled_from([torch.float32, torch.float16, torch.bool, torch.uint8, torch.int64])
tensor_names = st.one_of(
    st.sampled_from(list(REAL)),
    st.sampled_from(["values.fc1.weight", "indices.fc1.weight", "dense.fc1.bias", "0.weight"]),
    st.sampled_from(["1.weight", "1.bias", "mask.x", "weight.x", "values.x", "indices.x"]),
    st.text(min_size=1, max_size=12),
)


@st.composite
def small_tensors(draw) -> dict[str, torch.Tensor]:
    """Random names, shapes (up to 3 dims of up to 4) and dtypes; sometimes on top of the real
    ticket's tensors, so that loading gets past the first checks."""
    base = dict(REAL) if draw(st.booleans()) else {}
    for name in draw(st.lists(tensor_names, max_size=4)):
        shape = draw(st.lists(st.integers(min_value=0, max_value=4), max_size=3))
        base[name] = torch.zeros(shape, dtype=draw(dtypes))
    return base or {"w": torch.zeros(1)}


def only_the_documented_error(call) -> None:
    """Run `call`; it may succeed or raise a one-line ValueError, nothing else."""
    try:
        call()
    except ValueError as error:
        message = str(error)
        assert "\n" not in message and len(message) < 800, message


@SETTINGS
@given(header=metadata, tensors=small_tensors(), masks=st.booleans())
def test_a_random_header_and_tensors_raise_only_the_documented_error(header, tensors, masks):
    path = FOLDER / "round-1.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), {HEADER_KEY: header})
    only_the_documented_error(lambda: sparsetune.load(path, masks=masks))
    only_the_documented_error(lambda: read_ticket(path))
    only_the_documented_error(lambda: encode(read_ticket(path), "sparse").size)
    only_the_documented_error(lambda: encode(read_ticket(path), "dense").model)


@SETTINGS
@given(header=mutated_headers() | formatted_headers(), masks=st.booleans())
def test_a_mutated_header_on_the_real_tensors_raises_only_the_documented_error(header, masks):
    path = FOLDER / "mutated.safetensors"
    save_file(REAL, str(path), {HEADER_KEY: json.dumps(header)})
    only_the_documented_error(lambda: sparsetune.load(path, masks=masks))
    only_the_documented_error(lambda: read_ticket(path).masked_model())


@settings(max_examples=300, deadline=None, derandomize=True)
@given(info=st.one_of(json_values, mutated_headers(), structured_headers))
def test_the_header_check_raises_only_the_documented_error(info):
    only_the_documented_error(lambda: check_info(info, Path("file.safetensors")))


@pytest.mark.parametrize("format", ["dense", "sparse"])
def test_the_unmutated_header_still_loads(format, tmp_path):
    """The fuzzed header is a real one: without changes it loads, and so do its exports."""
    path = tmp_path / "round-1.safetensors"
    save_file(REAL, str(path), {HEADER_KEY: json.dumps(HEADER)})
    exported = encode(read_ticket(path), format).write(tmp_path / f"{format}.safetensors")
    model = sparsetune.load(exported, masks=True)
    assert model(torch.zeros(2, *SHAPE)).shape == (2, 3)
