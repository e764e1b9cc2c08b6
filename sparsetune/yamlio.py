"""The one YAML reader of sparsetune: every YAML file or value the package reads comes through here.

A YAML file is user input (a colleague's space, a spec from a shared folder, a downloaded list of
points), so reading it is bounded before anything is built from it:

- the file: a regular file (never a folder, a FIFO or a device, which are refused before anything
  is read from them), at most `MAX_BYTES`, UTF-8 text (a NUL byte or invalid UTF-8 is a binary
  file);
- the document: nested at most `MAX_DEPTH` deep, and at most `MAX_VALUES` values once every alias
  (`*name`) is expanded, counted on the parser's events before anything is built, so a 500-byte
  alias bomb fails in milliseconds instead of expanding to a billion values;
- the mappings: a key given twice is refused (YAML's loaders keep the last one silently).

Every problem is a `YamlError` (a ValueError) of one line: where (the file, or `--set KEY`), the
line and column, what is wrong and the fix; never more than a short excerpt of the input. It is
built on yaml's SafeLoader (the C one where libyaml is installed): no tag builds a Python object.
Imports nothing of sparsetune and no torch (layer L0).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    ScalarEvent,
)
from yaml.nodes import MappingNode

MAX_BYTES = 1 << 20  # 1 MiB: sparsetune's YAML files are a few KiB
MAX_DEPTH = 64
MAX_VALUES = 100_000  # scalars and collections, aliases expanded
EXCERPT_CHARS = 80

_SafeBase: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlError(ValueError):
    """A YAML file or value sparsetune cannot read: one line naming where, what and the fix."""


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """`repr(value)` cut to one line of at most `limit` characters, for quoting input in a
    message. A value from an alias-heavy document can be huge: only its start is rendered."""
    if isinstance(value, (list, tuple, dict, set)):
        text = _short_repr(value, limit + 1)
    else:
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short_repr(value: Any, budget: int) -> str:
    """The first `budget` characters (or so) of a container's repr, without rendering the rest."""
    if isinstance(value, dict):
        opening, closing = "{}"
        items = ((f"{key!r}: ", item) for key, item in value.items())
    else:
        opening, closing = {list: "[]", tuple: "()"}.get(type(value), "{}")
        items = (("", item) for item in value)
    text = opening
    for index, (prefix, item) in enumerate(items):
        if len(text) > budget:
            return text + "..."
        if index:
            text += ", "
        inner = budget - len(text) - len(prefix)
        rendered = (
            _short_repr(item, inner) if isinstance(item, (list, tuple, dict, set)) else repr(item)
        )
        text += prefix + rendered
    return text + closing


class _Refused(Exception):
    """Raised inside the loader; `_load` turns it into a YamlError naming the document."""

    def __init__(self, mark: Any, what: str) -> None:
        super().__init__(what)
        self.mark = mark
        self.what = what


class _Loader(_SafeBase):  # type: ignore[misc, valid-type]
    """SafeLoader that refuses a mapping key given twice (merge keys `<<:` aside)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, Hashable):
                    continue  # the safe constructor refuses it, with its own message
                try:
                    if key in seen:
                        raise _Refused(
                            key_node.start_mark,
                            f"duplicate key {excerpt(key)} (first at line {seen[key]}); give "
                            "each key once",
                        )
                except TypeError:  # a hashable-looking key that is not (a tuple of lists)
                    continue
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def loads(text: str, where: str = "<string>") -> Any:
    """The value of the YAML text `text` (one document); `where` names it in errors (e.g.
    `--set rounds`). YamlError with one line when it is too big, too deep, expands too far,
    repeats a key or is not YAML."""
    if len(text) > MAX_BYTES:
        raise YamlError(f"{where}: {len(text)} characters, over the {_limit()} limit; shorten it")
    return _load(text, where)


def load_file(path: Path, *, label: str | None = None, expected: str = "a YAML file") -> Any:
    """The value of the YAML file `path` (None for an empty file). `label` starts every error
    line (default: the path); `expected` says what to pass instead, e.g. "a sweep spec file".
    YamlError with one line for a missing, unreadable, non-regular, oversized or binary file and
    for everything `loads` refuses."""
    path = Path(path)
    label = label or str(path)
    return _load(_read_text(path, label, expected), label)


def _read_text(path: Path, label: str, expected: str) -> str:
    # Opened without blocking and checked on the open descriptor: a FIFO is refused, not waited
    # on, and nothing can swap the file between the check and the read.
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise YamlError(f"{label}: no such file; pass {expected}") from None
    except IsADirectoryError:
        raise YamlError(f"{label}: is a folder; pass {expected}") from None
    except PermissionError:
        raise YamlError(
            f"{label}: cannot be read (permission denied); make it readable, or pass {expected}"
        ) from None
    except OSError as error:
        raise YamlError(f"{label}: cannot be opened ({error.strerror}); pass {expected}") from None
    except ValueError:  # a NUL character in the name
        raise YamlError(f"{label}: not a usable file name; pass {expected}") from None
    try:
        info = os.fstat(descriptor)
        if stat.S_ISDIR(info.st_mode):
            raise YamlError(f"{label}: is a folder; pass {expected}")
        if not stat.S_ISREG(info.st_mode):
            raise YamlError(
                f"{label}: is not a regular file (a FIFO, device or socket); pass {expected}"
            )
        if info.st_size > MAX_BYTES:
            raise YamlError(
                f"{label}: {info.st_size} bytes, over the {_limit()} limit for a YAML file; "
                f"pass {expected}"
            )
        data = b""
        while len(data) <= MAX_BYTES:  # a file may grow after fstat: read at most the limit
            chunk = os.read(descriptor, MAX_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as error:
        raise YamlError(f"{label}: cannot be read ({error.strerror}); pass {expected}") from None
    finally:
        os.close(descriptor)
    if len(data) > MAX_BYTES:
        raise YamlError(f"{label}: over the {_limit()} limit for a YAML file; pass {expected}")
    try:
        text = data.decode("utf-8-sig")
        bad = data.find(b"\0")  # valid UTF-8, but no text file holds a NUL
    except UnicodeDecodeError as error:
        bad = error.start
    if bad < 0:
        return text
    line = data.count(b"\n", 0, bad) + 1
    raise YamlError(
        f"{label}: line {line}: not UTF-8 text (a binary file?); "
        f"pass {expected}, saved as UTF-8 text"
    )


def _limit() -> str:
    return f"{MAX_BYTES // (1 << 20)} MiB"


def _load(text: str, where: str) -> Any:
    try:
        _check_shape(text)
        loader = _Loader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except _Refused as refused:
        raise YamlError(f"{where}: {_at(refused.mark)}{refused.what}") from None
    except yaml.MarkedYAMLError as error:
        raise YamlError(f"{where}: {_at(error.problem_mark)}{_problem(error)}") from None
    except yaml.reader.ReaderError as error:
        raise YamlError(
            f"{where}: character #x{error.character:04x} at position {error.position} is not "
            "allowed in YAML (a binary file?); pass text"
        ) from None
    except yaml.YAMLError as error:
        raise YamlError(f"{where}: not valid YAML ({shorten(str(error))})") from None
    except RecursionError:  # not reached with the depth limit; kept as a last guard
        raise YamlError(f"{where}: nested too deeply; at most {MAX_DEPTH} levels") from None
    except Exception as error:  # noqa: BLE001
        # A tagged scalar the safe constructor cannot build: `!!int x` (ValueError),
        # `!!timestamp 2020-13-45` (ValueError), an empty `!!int` (IndexError, found by fuzzing).
        problem = shorten(f"{type(error).__name__}: {error}")
        raise YamlError(
            f"{where}: not valid YAML ({problem}); check the tagged values (`!!`)"
        ) from None


def _check_shape(text: str) -> None:
    """Walk the parser's events (nothing is built): refuse nesting beyond MAX_DEPTH and a
    document of more than MAX_VALUES values once aliases are expanded. An anchored collection's
    expanded size is known when it closes, so an alias costs what its anchor holds."""
    loader = _Loader(text)
    sizes: dict[str, int] = {}  # anchor -> values it expands to
    opened: list[tuple[str | None, int]] = []  # (anchor, values counted when it opened)
    total = aliased = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, CollectionStartEvent):
                if len(opened) >= MAX_DEPTH:
                    raise _Refused(
                        event.start_mark,
                        f"nested more than {MAX_DEPTH} levels deep; flatten the file",
                    )
                opened.append((event.anchor, total))
                total += 1
            elif isinstance(event, CollectionEndEvent):
                anchor, start = opened.pop()
                if anchor is not None:
                    sizes[anchor] = total - start
            elif isinstance(event, ScalarEvent):
                total += 1
                if event.anchor is not None:
                    sizes[event.anchor] = 1
            elif isinstance(event, AliasEvent):
                if any(anchor == event.anchor for anchor, _ in opened):
                    raise _Refused(
                        event.start_mark,
                        f"alias *{excerpt(event.anchor)[1:-1]} refers to a collection that holds "
                        "it; a value cannot contain itself",
                    )
                expanded = sizes.get(event.anchor, 1)
                total += expanded
                aliased += expanded
            if total > MAX_VALUES:
                what = (
                    f"aliases (`*name`) expand it to over {MAX_VALUES} values; repeat fewer anchors"
                    if aliased
                    else f"over {MAX_VALUES} values; a sparsetune YAML file holds far fewer"
                )
                raise _Refused(event.start_mark, what)
    finally:
        loader.dispose()


def _at(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""


def _problem(error: yaml.MarkedYAMLError) -> str:
    said = [part for part in (error.context, error.problem) if part]
    problem = shorten(", ".join(said) or "unreadable")
    if "nesting depth" in problem:  # libyaml's own flow-depth limit, reached while scanning
        return f"nested more than {MAX_DEPTH} levels deep; flatten the file"
    if isinstance(error, yaml.constructor.ConstructorError):
        return f"{problem}; use plain values: numbers, strings, lists and mappings"
    return f"not valid YAML ({problem}); check indentation, colons and brackets"


def shorten(text: str) -> str:
    """`text` on one line, cut to at most EXCERPT_CHARS characters."""
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 3] + "..."
