"""The lazy name -> object table behind every extension point."""

from __future__ import annotations

import pytest

from sparsetune.registry import Registry


def test_a_registered_object_resolves_and_an_unlisted_one_is_not_offered():
    table = Registry("thing", {"built-in": "collections:OrderedDict"})
    table.register("added", dict)
    table.register("python-thing-1a2b", list, listed=False)
    assert table["added"] is dict and table["python-thing-1a2b"] is list
    assert "python-thing-1a2b" in table and table.check("python-thing-1a2b")
    assert table.names() == ["added", "built-in"] and len(table) == 2
    with pytest.raises(ValueError, match=r"^unknown thing 'nope'; choose one of: added, built-in$"):
        table.check("nope")
