"""The PostgreSQL pass of the suite (``make test-pg``): a throwaway server
(bench/pgcluster.py) with durability off, a test database dying with the test run, and
the databases the tests get from it. ``PgServer.fresh()`` hands out a new database of the
ACS schema, copied from a template migrated once; ``for_file`` the one standing for an
SQLite file path.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from acs.store import Store
from acs.store.db import Database
from bench.pgcluster import Cluster
from bench.pgcluster import started as cluster_started

SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "64MB",
}


class PgServer:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._names = itertools.count(1)
        # The database standing for each SQLite file path a test opened (resolved).
        self._files: dict[str, str] = {}
        self._created: list[str] = []

    def url(self, database: str) -> str:
        return self.cluster.url(database)

    def fresh(self, template: str = "acs_template") -> str:
        """The URL of a new database copied from ``template`` (by default the ACS schema
        and nothing else)."""
        return self.url(self._create(template))

    def _create(self, template: str) -> str:
        name = f"t{os.getpid()}_{next(self._names)}"
        self.cluster.admin(f"CREATE DATABASE {name} TEMPLATE {template}")
        self._created.append(name)
        return name

    def drop_created(self) -> None:
        """Drop every database handed out so far (each holds a few MB on disk): tests/
        conftest.py does it after each test module, when its stores are closed."""
        for name in self._created:
            self.cluster.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        dropped = set(self._created)
        self._files = {k: v for k, v in self._files.items() if v not in dropped}
        self._created.clear()

    def for_file(self, path: str | Path) -> str:
        """The database standing for the SQLite file at ``path``: the same one each time."""
        key = str(Path(path).resolve())
        if key not in self._files:
            self._files[key] = self._create("acs_template")
        return self.url(self._files[key])

    def copy_file(self, source: Path, target: Path) -> None:
        """What copying the SQLite file ``source`` to ``target`` is: ``target`` stands for
        a copy of ``source``'s database (which nobody may have open)."""
        self.for_file(source)
        self._files[str(target.resolve())] = self._create(self._files[str(source.resolve())])


# The server of this test run when it runs on PostgreSQL (tests/conftest.py starts it).
ACTIVE: PgServer | None = None
# Database.open itself, taken before tests/conftest.py redirects it on the PostgreSQL pass
# (it imports this module first).
_SQLITE_OPEN = Database.open.__func__  # type: ignore[attr-defined]


def sqlite_store(path: Path) -> Store:
    """A Store on the SQLite file ``path``, on the PostgreSQL pass too."""
    store: Store = _SQLITE_OPEN(Store, path)
    return store


def database_setting(path: Path) -> str:
    """``[storage] database`` for a process a test starts: the file ``path``, or on the
    PostgreSQL pass the database standing for it."""
    return str(path) if ACTIVE is None else ACTIVE.for_file(path)


@contextmanager
def started() -> Iterator[PgServer]:
    """The server, with ``acs_template`` holding the migrated schema."""
    with cluster_started(SETTINGS) as cluster:
        cluster.admin("CREATE DATABASE acs_template")
        Store.open(cluster.url("acs_template")).close()
        yield PgServer(cluster)
