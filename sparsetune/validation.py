"""Pydantic's validation errors as the one line a user reads: the field, what is wrong, the input.

Every front end (CLI, sweep spec, search space, recipe) reports a bad value through
`describe_validation_error`; a model registered with `register_for_messages` gets its allowed keys
listed when a key is unknown.
"""

from __future__ import annotations

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
    if first["type"] == "extra_forbidden":
        message = "unknown key"
        allowed = _allowed_keys(error, model)
        if allowed:
            message += f"; allowed keys: {', '.join(allowed)}"
    elif (
        "input" in first
        and first["loc"]  # a whole-model check: its input is the whole model, not one value
        and first["type"] != "missing"
        and repr(first["input"]) not in message
    ):
        message += f" (got {first['input']!r})"
    return f"{where}: {message}" if where else message


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
