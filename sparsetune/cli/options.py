"""Typer options generated from an option model's fields, so each option is declared once.

A field becomes `--field-name` (or its `flag` mark), typed by its annotation, with its
`description` as help and its default shown (or, for a default computed later, the words of its
`shown_default` mark). A `list[str]` field is one comma-separated value (`--methods a,b`); a
`dict` field is a repeated `key=value` option whose values are YAML (`--set rounds=2`). The
command receives the options the user gave, and only those, as one dict: validated by the model,
they leave `model_fields_set` meaning "given".
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from sparsetune.app.checks import flag
from sparsetune.app.errors import BadInput
from sparsetune.search.options import CHOICES, FLAG, SHOWN_DEFAULT, mark
from sparsetune.yamlio import excerpt, shorten

GIVEN = "given"  # the command's parameter that receives the generated options' values
_CONTEXT = "typer_context"
_SCALARS = (str, int, float, Path)


def with_options(
    model: type[BaseModel], *, optional: Collection[str] = ()
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a command whose parameter `given` is to receive `model`'s options: one option per
    field, in the fields' order, where `given` stands among the command's own parameters. A field
    the model requires is a required option, unless named in `optional` (the command then says
    what is missing itself)."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        generated = [
            _parameter(name, field, name in optional) for name, field in model.model_fields.items()
        ]
        parameters = []
        for parameter in inspect.signature(command, eval_str=True).parameters.values():
            if parameter.name == GIVEN:
                parameters += generated
            else:
                parameters.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY))
        parameters.append(
            inspect.Parameter(_CONTEXT, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
        )

        @functools.wraps(command)
        def run(**values: Any) -> Any:
            given = given_options(values.pop(_CONTEXT), model)
            own = {name: value for name, value in values.items() if name not in model.model_fields}
            return command(given=given, **own)

        run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run

    return decorate


def given_options(context: typer.Context, model: type[BaseModel]) -> dict[str, Any]:
    """The options of `model` the user gave on the command line (defaults left out), as the
    model's fields take them."""
    given = {}
    for name, field in model.model_fields.items():
        source = context.get_parameter_source(name)
        if source is None or source.name == "DEFAULT":
            continue
        kind, _ = _cli_type(field.annotation)
        value = context.params[name]
        if kind == "list":
            value = [item.strip() for item in value.split(",") if item.strip()] if value else None
        elif kind == "dict":
            value = _key_values(_flag(name, field), value or [])
        if value is not None:
            given[name] = value
    return given


def _key_values(option: str, items: list[str]) -> dict[str, Any]:
    """`--set KEY=VALUE ...` as a mapping, each value read as YAML (`loads`: its limits, one
    line on a bad value); a key given twice is refused rather than the last one winning."""
    from sparsetune.yamlio import YamlError, loads

    values = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadInput(
                f"{option} {excerpt(item)}: expected key=value, e.g. {option} sparsity=0.9"
            )
        if key in values:
            raise BadInput(f"{option} {shorten(key)}: given twice; give each key once")
        try:
            values[key] = loads(raw, where=f"{option} {shorten(key)}")
        except YamlError as error:
            raise BadInput(str(error)) from None
    return values


def _flag(name: str, field: FieldInfo) -> str:
    return mark(field, FLAG) or flag(name)


def _parameter(name: str, field: FieldInfo, optional: bool) -> inspect.Parameter:
    kind, cli_type = _cli_type(field.annotation)
    if field.is_required() and not optional:
        default: Any = ...
    elif kind == "scalar" and not field.is_required():
        default = field.default
    else:  # a list or dict option left out leaves the model's default
        default = None
    help_text = (field.description or "") + (", comma-separated" if kind == "list" else "")
    if default is None:
        shown = mark(field, SHOWN_DEFAULT) or False  # typer shows a text in parentheses
    else:
        shown = default is not ...
    choices = field_choices(field)
    info = typer.Option(
        _flag(name, field),
        help=help_text,
        show_default=shown,
        metavar=choice_metavar(choices) if choices else None,
        autocompletion=completer(choices) if choices else None,
    )
    annotation = cli_type if default is not None else cli_type | None
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=default,
        annotation=Annotated[annotation, info],
    )


def field_choices(field: FieldInfo) -> list[str] | None:
    """The values a field takes, where they are a closed set: its `choices` mark, or its
    Literal's values. The field's own validator still checks them (one line, as any option)."""
    marked = mark(field, CHOICES)
    if marked:
        return [str(choice) for choice in marked]
    annotation = field.annotation
    if get_origin(annotation) in (Union, types.UnionType):
        (annotation,) = [arg for arg in get_args(annotation) if arg is not type(None)]
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) is Literal:
        return [str(choice) for choice in get_args(annotation)]
    return None


def choice_metavar(choices: Collection[str]) -> str:
    """`<a|b|c>`, as typer shows a choice (a `Literal` or an `Enum`) in help."""
    return "<" + "|".join(choices) + ">"


def completer(choices: Collection[str]) -> Callable[[str], list[str]]:
    """Shell completion of an option's choices (`sparsetune --install-completion`)."""
    return lambda incomplete: [choice for choice in choices if choice.startswith(incomplete)]


def _cli_type(annotation: Any) -> tuple[str, Any]:
    """("scalar" | "list" | "dict", the type typer parses) for a field's annotation."""
    if get_origin(annotation) in (Union, types.UnionType):
        (annotation,) = [arg for arg in get_args(annotation) if arg is not type(None)]
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) is Literal:
        return "scalar", type(get_args(annotation)[0])
    if get_origin(annotation) is list:
        return "list", str
    if get_origin(annotation) is dict:
        return "dict", list[str]
    if annotation in _SCALARS:
        return "scalar", annotation
    raise TypeError(f"no command-line form for a field of type {annotation!r}")
