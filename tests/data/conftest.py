"""Fixtures of the data tests: a fresh split cache per test, and no network."""

from __future__ import annotations

import pytest

from sparsetune import data


@pytest.fixture(autouse=True)
def fresh_cache():
    # Each test decodes afresh, so that determinism is tested rather than memoisation.
    data._cached_splits.clear()
    yield
    data._cached_splits.clear()


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("SPARSETUNE_OFFLINE", "1")
    monkeypatch.delenv("SPARSETUNE_DEBIAN_FASHION_MNIST", raising=False)
