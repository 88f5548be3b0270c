"""Shared fixtures: `harness` (the in-memory API harness of tests/apiharness.py) and `store`
(an empty in-memory Store).

``ACS_TEST_ENGINE=postgresql`` (``make test-pg``) runs the suite on PostgreSQL: a throwaway
server (tests/pgserver.py) is started for the session and every database a test opens, an
in-memory one or a file, becomes a fresh PostgreSQL database (the same file path twice, the
same database). Tests of what only the SQLite engine has are marked ``sqlite_only``.
"""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apiharness import harness

from acs.store import Store
from acs.store.db import Database

__all__ = ["harness", "store"]

POSTGRESQL = os.environ.get("ACS_TEST_ENGINE") == "postgresql"


def pytest_configure(config: pytest.Config) -> None:
    if not POSTGRESQL:
        return
    import pgserver

    context = pgserver.started()
    server = pgserver.ACTIVE = context.__enter__()
    config.add_cleanup(lambda: context.__exit__(None, None, None))
    sqlite_open = Database.open.__func__  # type: ignore[attr-defined]

    def open_on_postgresql(cls: type[Database], path: str | Path) -> Any:
        target = str(path)
        if not target.startswith(("postgresql://", "postgres://")):
            target = server.fresh() if target == ":memory:" else server.for_file(target)
        return sqlite_open(cls, target)

    Database.open = classmethod(open_on_postgresql)  # type: ignore[method-assign,assignment]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not POSTGRESQL:
        return
    skip = pytest.mark.skip(reason="SQLite engine only")
    for item in items:
        if "sqlite_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module", autouse=True)
def _drop_postgresql_databases() -> Iterator[None]:
    yield
    if POSTGRESQL:
        import pgserver

        assert pgserver.ACTIVE is not None
        pgserver.ACTIVE.drop_created()


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store.open(":memory:")
    yield s
    s.close()
