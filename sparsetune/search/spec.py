"""A sweep spec (`sparsetune sweep FILE.yaml`): a sweep described once, in a file, so that the
same command run again (from cron, a Kubernetes CronJob) continues or repeats it.

The spec is validated at the edge, like `SweepConfig`, and translated into one `SweepConfig`
per model: its own checks run on each, and their errors name the spec file and the field.
Paths in the spec are relative to the spec file's folder, not to wherever cron runs it. No Ray,
Optuna or torch here.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, create_model, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from sparsetune.catalog import IMAGEFOLDER_PREFIX, NPZ_PREFIX
from sparsetune.config import Frozen
from sparsetune.search.options import SweepConfig, looks_like_uri
from sparsetune.validation import describe_validation_error, register_for_messages
from sparsetune.yamlio import load_file

NewSweep = Literal["never", "daily", "always"]


class SpecKeys(Frozen):
    """The keys a spec has beyond the sweep's options: the models (one sweep each) and when a
    new sweep starts. `SweepSpec` adds the options themselves."""

    model: str | None = None
    models: list[str] | None = Field(None, min_length=1, description="one sweep per model")
    new_sweep: NewSweep = "never"
    warm_start: bool = True

    @model_validator(mode="after")
    def _one_model_key(self) -> SpecKeys:
        if (self.model is None) == (self.models is None):
            raise ValueError("give either `model: NAME` or `models: [NAME, ...]`, not both")
        if self.models is not None and len(set(self.models)) != len(self.models):
            raise ValueError("models: a model is listed twice")
        return self

    @property
    def model_names(self) -> list[str]:
        return [self.model] if self.model is not None else list(self.models or [])


def _required(field: FieldInfo) -> FieldInfo:
    required = copy.copy(field)
    required.default = PydanticUndefined
    return required


def _option_fields() -> dict[str, Any]:
    """SweepConfig's fields as spec keys: `model` becomes SpecKeys' model/models; `dataset` is
    required (a spec names its data); `enqueue` is left out (a spec's new sweeps try the earlier
    fronts first instead: `warm_start`)."""
    fields: dict[str, Any] = {}
    for name, field in SweepConfig.model_fields.items():
        if name in ("model", "enqueue"):
            continue
        fields[name] = (field.annotation, _required(field) if name == "dataset" else field)
    return fields


SweepSpec = create_model(
    "SweepSpec",
    __base__=SpecKeys,
    __module__=__name__,
    __doc__="The keys of a sweep spec file (docs/cluster.md has an example): SpecKeys' and "
    "SweepConfig's fields, checked for type and name here; the checks across options run per "
    "model, in `LoadedSpec.sweep_config`.",
    **_option_fields(),
)
register_for_messages(SweepSpec)


class LoadedSpec:
    """A validated spec and where it lives: its folder anchors the spec's relative paths."""

    def __init__(self, path: Path, spec: Any) -> None:  # spec: a SweepSpec
        self.path = path
        self.spec = spec

    @property
    def out(self) -> Path:
        """The folder holding this spec's sweeps [default: sparsetune-runs/<experiment>]."""
        name = self.spec.experiment or self.path.stem
        return self._anchored(self.spec.out or Path("sparsetune-runs") / name)

    def base_dir(self, model: str) -> Path:
        """The folder of `model`'s sweeps: `out`, or `out/<model>` when the spec lists models."""
        return self.out if self.spec.model is not None else self.out / model

    def sweep_config(self, model: str, folder: Path) -> SweepConfig:
        """The `SweepConfig` of `model`'s sweep in `folder`; ValueError naming file and field."""
        spec = self.spec
        # The keys the spec gives, and only those: SweepConfig's defaults then apply as they
        # would on the command line (`cache_dir` under `storage`, for one).
        values = spec.model_dump(exclude=set(SpecKeys.model_fields), exclude_unset=True)
        for key in ("space", "data_dir", "cache_dir", "weights"):
            if values.get(key) is not None:
                values[key] = self._anchored(values[key])
        if spec.storage is not None and not looks_like_uri(spec.storage):
            values["storage"] = str(self._anchored(Path(spec.storage)))
        values |= {"model": model, "out": folder}
        try:
            return SweepConfig.model_validate(values)
        except ValidationError as error:
            # A check across options names them as flags: name the spec's keys instead.
            message = re.sub(
                r"--([a-z][a-z-]*)",
                lambda flag: flag[1].replace("-", "_"),
                describe_validation_error(error),
            )
            raise ValueError(f"{self.path}: {message}") from None

    def _anchored(self, path: Path) -> Path:
        path = Path(path).expanduser()
        return path if path.is_absolute() else (self.path.parent / path).resolve()


def load_spec(path: Path) -> LoadedSpec:
    """Read and validate a spec file (every model's SweepConfig included); one-line ValueError
    naming the file and the field."""
    path = Path(path).expanduser().resolve()
    raw = load_file(path, expected="a sweep spec file (docs/cluster.md)")
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of keys (model:, dataset:, ...)")
    try:
        spec = SweepSpec.model_validate(_data_path_anchored(raw, path.parent))
    except ValidationError as error:
        raise ValueError(f"{path}: {describe_validation_error(error)}") from None
    loaded = LoadedSpec(path, spec)
    for model in spec.model_names:  # every model's sweep is checked before any runs
        loaded.sweep_config(model, loaded.base_dir(model))
    return loaded


def _data_path_anchored(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
    """`dataset: npz:FILE` or `imagefolder:FOLDER` with a relative path is read from the spec's
    folder, as the spec's other paths are, not from wherever cron runs it. Done before the
    spec is validated, which makes the path absolute."""
    dataset = raw.get("dataset")
    for prefix in (NPZ_PREFIX, IMAGEFOLDER_PREFIX):
        if isinstance(dataset, str) and dataset.startswith(prefix):
            data_path = Path(dataset.removeprefix(prefix).strip()).expanduser()
            if str(data_path) != "." and not data_path.is_absolute():
                return raw | {"dataset": f"{prefix}{folder / data_path}"}
    return raw
