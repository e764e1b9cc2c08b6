"""Pydantic's validation errors as the one line a user reads: the field, what is wrong, the input.

Every front end (CLI, sweep spec, search space, recipe) reports a bad value through
`describe_validation_error`; a model registered with `register_for_messages` gets its allowed keys
listed when a key is unknown.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError


def describe_validation_error(
    error: ValidationError, prefix: str = "", model: type[BaseModel] | None = None
) -> str:
    """One line for the first problem of a pydantic error: field path, what is wrong, the input.
    `model` is the class validated, for listing allowed keys when it is not registered."""
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    where = ".".join(part for part in (prefix, location) if part)
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "path_type":  # pydantic's words name its Path class, not the fix
        message = "give a path, as a str or pathlib.Path"
    if first["type"] == "extra_forbidden":
        message = "unknown key"
        allowed = _allowed_keys(error, model)
        if allowed:
            message += f"; allowed keys: {', '.join(allowed)}"
    elif (
        "input" in first
        and first["loc"]  # a whole-model check: its input is the whole model, not one value
        and first["type"] != "missing"
        # Our own checks may quote the input already: said once is enough. Pydantic's own
        # messages quote their bound, which can read like the input ("greater than 0" for 0).
        and not (first["type"] == "value_error" and _quotes(message, first["input"]))
    ):
        message += f" (got {first['input']!r})"
    return f"{where}: {message}" if where else message


def _quotes(message: str, value: object) -> bool:
    """Whether `message` already names `value`: its repr, or as the subject of the line
    ("PATH: is a folder, ...")."""
    return repr(value) in message or message.startswith(f"{value}: ")


def _allowed_keys(error: ValidationError, model: type[BaseModel] | None) -> list[str]:
    model = model or _MODELS_BY_TITLE.get(error.title)
    if model is None:
        return []
    location = error.errors()[0]["loc"][:-1]
    for part in location:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)


_MODELS_BY_TITLE: dict[str, type[BaseModel]] = {}


def register_for_messages(model: type[BaseModel]) -> type[BaseModel]:
    """Let `describe_validation_error` list the allowed keys of `model` on an unknown key."""
    _MODELS_BY_TITLE[model.__name__] = model
    return model


PathKind = Literal["file", "folder"]
_KINDS = (
    (stat.S_ISREG, "a file"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def check_path_kind(
    path: Path, expected: PathKind, option: str = "", *, must_exist: bool = False
) -> Path:
    """`path` unchanged when it is a regular file (`expected="file"`) or a folder (`"folder"`),
    or is not there yet and could be created (its nearest existing ancestor is a folder), unless
    `must_exist`. Else a one-line ValueError, `"{option} {path}: is a folder, not a file; pass a
    file"`, naming what is there. Only looks (stat): nothing is opened, read or created, so a
    FIFO or a device given where a file is expected is refused before anything touches it.
    Every option that names a path checks its kind here."""
    where = f"{option} {path}" if option else str(path)
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        if must_exist:
            raise ValueError(f"{where}: no such {expected}; pass an existing {expected}") from None
        ancestor = path.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if ancestor.exists() and not ancestor.is_dir():
            raise ValueError(
                f"{where}: cannot be created, {ancestor} is {_kind(ancestor.stat().st_mode)}, "
                f"not a folder; pass another path"
            ) from None
        return path
    except OSError as error:  # too long a name, a loop of links, no permission to look
        raise ValueError(f"{where}: cannot be read ({error.strerror}); pass another path") from None
    wanted = stat.S_ISREG if expected == "file" else stat.S_ISDIR
    if not wanted(mode):
        raise ValueError(f"{where}: is {_kind(mode)}, not a {expected}; pass a {expected} path")
    return path


def _kind(mode: int) -> str:
    return next((name for is_kind, name in _KINDS if is_kind(mode)), "neither a file nor a folder")
