"""A throwaway PostgreSQL server for the PostgreSQL pass of the suite (``make test-pg``).

``started()`` runs Debian's ``initdb`` and ``pg_ctl`` (``/usr/lib/postgresql/<n>/bin``, or
``$ACS_PG_BIN``) on a fresh data directory: trust authentication for the one superuser
``acs``, a Unix socket in that directory and 127.0.0.1 on a free port, durability off
(a test database dies with the test run). As root (CI) the server runs as the ``postgres``
system user, which PostgreSQL requires. ``PgServer.fresh()`` hands out a new empty
database of the ACS schema, copied from a template migrated once.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from acs.store import Store
from acs.store.db import Database

SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "64MB",
}


def bin_dir() -> Path | None:
    """Where the server's programs are, None when PostgreSQL is not installed."""
    if os.environ.get("ACS_PG_BIN"):
        return Path(os.environ["ACS_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: p.parts)
    return found[-1].parent if found else None


class PgServer:
    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self._names = itertools.count(1)
        # The database standing for each SQLite file path a test opened (resolved).
        self._files: dict[str, str] = {}
        self._created: list[str] = []

    def url(self, database: str) -> str:
        return f"postgresql://acs@/{database}?host={self.directory}&port={self.port}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]  # our literal SQL

    def fresh(self, template: str = "acs_template") -> str:
        """The URL of a new database copied from ``template`` (by default the ACS schema
        and nothing else)."""
        return self.url(self._create(template))

    def _create(self, template: str) -> str:
        name = f"t{os.getpid()}_{next(self._names)}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE {template}")
        self._created.append(name)
        return name

    def drop_created(self) -> None:
        """Drop every database handed out so far (each holds a few MB on disk): tests/
        conftest.py does it after each test module, when its stores are closed."""
        for name in self._created:
            self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
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


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@contextmanager
def started() -> Iterator[PgServer]:
    programs = bin_dir()
    if programs is None:
        raise RuntimeError(
            "PostgreSQL is not installed (Debian: apt-get install postgresql), or set ACS_PG_BIN"
        )
    directory = Path(tempfile.mkdtemp(prefix="acs-pg-"))
    data = directory / "data"
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(directory, user.pw_uid, user.pw_gid)
    from procharness import fixed_port  # procharness imports this module

    run = _as_postgres()
    port = fixed_port()
    options = " ".join(f"-c {k}={v}" for k, v in SETTINGS.items())
    try:
        subprocess.run(
            [*run, str(programs / "initdb"), "-D", str(data), "-U", "acs", "-A", "trust",
             "-E", "UTF8", "--locale=C", "--no-sync"],
            check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run(
            [*run, str(programs / "pg_ctl"), "-D", str(data), "-l", str(directory / "log"),
             "-w", "-t", "60", "start",
             "-o", f"-k {directory} -h 127.0.0.1 -p {port} {options}"],
            check=True, capture_output=True,
        )  # fmt: skip
    except subprocess.CalledProcessError as exc:
        log = directory / "log"
        tail = log.read_text()[-2000:] if log.exists() else ""
        shutil.rmtree(directory, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {exc.stderr!r}\n{tail}") from None
    server = PgServer(directory, port)
    try:
        server.admin("CREATE DATABASE acs_template")
        Store.open(server.url("acs_template")).close()
        yield server
    finally:
        subprocess.run(
            [*run, str(programs / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )  # fmt: skip
        shutil.rmtree(directory, ignore_errors=True)
