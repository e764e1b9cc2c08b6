"""`sparsetune space`: a model's search space as one YAML file, to read, edit and pass to `--space`.

A model with a built-in space (`search_spaces/<model>.yaml`) gets it with every fragment inline; a
model without one gets the space `search` would generate for it (`search.generated_space`), built
from its prunable layers for the data's input shape and classes. Either way `load_space` reads the
text back to the same space.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import Field

from sparsetune.app.checks import validated
from sparsetune.app.errors import BadInput
from sparsetune.config import DEFAULT_DATA_DIR, DataConfig, Frozen
from sparsetune.search.options import (
    DEFAULT_DATASET,
    DataDirOption,
    DatasetOption,
    ModelOption,
)

if TYPE_CHECKING:
    from sparsetune.search.space import SearchSpace


class SpaceOptions(Frozen):
    """`sparsetune space`'s options."""

    model: ModelOption
    # A model without a space is built for the data's input shape and classes.
    dataset: DatasetOption = DEFAULT_DATASET
    data_dir: DataDirOption = DEFAULT_DATA_DIR
    methods: list[str] | None = Field(None, description="only these methods")


@dataclass(frozen=True)
class SpaceText:
    """A space as one YAML file, the space it reads back to, and where it came from."""

    yaml: str
    space: SearchSpace
    note: str


def space(options: SpaceOptions | Mapping[str, Any]) -> SpaceText:
    """The search space of `options.model` as one YAML file (see the module docstring). Bad input
    (a model that does not build, data that does not load, a method that does not apply) is
    BadInput with one line; nothing is written but what loading the data writes (a download)."""
    if not isinstance(options, SpaceOptions):
        options = validated(SpaceOptions, {k: v for k, v in options.items() if v is not None})
    from sparsetune.search.space import default_space_path

    path = default_space_path(options.model)
    try:
        if path.is_file():
            return _built_in(options, path)
        return _generated(options)
    except ValueError as error:
        raise BadInput(str(error)) from None


def _built_in(options: SpaceOptions, path: Any) -> SpaceText:
    from sparsetune.search.generated_space import shown_path
    from sparsetune.search.space import resolve_space_file, space_yaml, validated_space

    resolved, origins = resolve_space_file(path)
    space = validated_space(resolved, str(path), path.name, options.methods)
    resolved = {**resolved, "methods": {m: resolved["methods"][m] for m in space.method_names}}
    header = [
        f"The built-in search space of {options.model} ({shown_path(path)}), each method's",
        "fragment inline. Edit it and pass it back with `sparsetune search --space FILE`.",
    ]
    notes = {method: f"from {shown_path(origins[method])}" for method in space.method_names}
    text = space_yaml(header, resolved, notes)
    return SpaceText(text, space, f"built-in for {options.model}: {shown_path(path)}")


def _generated(options: SpaceOptions) -> SpaceText:
    from sparsetune.data import load_splits
    from sparsetune.search.generated_space import generate_space

    # One example held out is enough: only the input shape and the classes are read.
    data = DataConfig(name=options.dataset, data_dir=options.data_dir, val_size=1)
    splits = load_splits(data)
    generated = generate_space(
        options.model, splits.input_shape, splits.num_classes, options.methods
    )
    return SpaceText(generated.yaml(), generated.space, generated.summary())
