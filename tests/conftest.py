"""Shared fixtures: `harness` (the in-memory API harness of tests/apiharness.py) and `store`
(an empty in-memory Store)."""

from collections.abc import Iterator

import pytest
from apiharness import harness

from acs.store import Store

__all__ = ["harness", "store"]


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store.open(":memory:")
    yield s
    s.close()
