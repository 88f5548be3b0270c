"""The SQLite engine under every aggregate of the store (acs.store.postgres puts the same
aggregates on PostgreSQL): the connection and its PRAGMAs (WAL,
foreign keys), transactions and their lock, full-storage detection for `StorageHealth`, WAL
checkpoints, and the shared helpers the aggregate modules build on.

One `Database` wraps one `sqlite3` connection in autocommit mode and is used synchronously
from the reactor thread; each method is a short SQLite operation. `run` is the storage seam
for callers that must not wait on a database server: a unit of work (a function of one
transaction) whose result comes as a Deferred; SQLite runs it at once, PostgreSQL in a
thread of its own pool (`acs.store.postgres`). Methods that need the
current time take `now` explicitly so tests drive time; the store never reads the clock.
Every mutating method is atomic on its own, and `with store.transaction():` groups several
calls into one unit (a CWMP session's writes, for example). Never await or yield to the
reactor inside `transaction()`: other callbacks would run inside the open transaction.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger

from acs.store.checks import epoch, json_text
from acs.store.errors import Conflict, NotFound, StoreError, StoreExposed
from acs.store.health import DATABASE, StorageHealth, is_storage_full
from acs.store.migrations import migrate, schema_version
from acs.store.models import ROLES

log = Logger()

# What to call once a transaction commits (`Database.after_commit`).
AfterCommit = tuple[Callable[..., object], tuple[Any, ...]]

BUSY_TIMEOUT_MS = 5000
# Waiting for another process's write lock (`acs serve --workers`, nodes on one file):
# SQLite's own busy handler sleeps 1, 2, 5, 10... ms between tries, far longer than the
# ~0.1 ms a session's transaction holds the lock, and the waiting process's reactor sleeps
# with it. So BEGIN IMMEDIATE is tried without SQLite waiting, and retried after pauses
# that start at WRITE_LOCK_PAUSE and double up to WRITE_LOCK_MAX_PAUSE, for at most
# BUSY_TIMEOUT_MS in all.
WRITE_LOCK_PAUSE = 0.00002
WRITE_LOCK_MAX_PAUSE = 0.001
# Bytes the WAL is cut back to when a checkpoint lets SQLite reset it: one big transaction
# (a retention batch, a bulk seed) must not leave a WAL of its size on disk for good.
JOURNAL_SIZE_LIMIT = 32 * 1024 * 1024
# Bytes the full-storage probe writes (and deletes in the same transaction): a few pages,
# so "not full" means room for a session's writes, not for one more row in a half-empty page.
PROBE_BYTES = 16 * 1024

T = TypeVar("T")


def _owner_only(target: str) -> None:
    """Create the database file owner-only (SQLite gives its -wal and -shm files the same
    mode); refuse an existing one that others may read or write. It holds device and
    connection-request passwords, operators' password hashes and the URL-signing key: a
    copy others could read may already have leaked them, which no chmod here would undo."""
    try:
        os.close(os.open(target, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        return
    except FileExistsError:
        pass
    status = os.stat(target)
    mode = stat.S_IMODE(status.st_mode)
    if stat.S_ISREG(status.st_mode) and mode & 0o077:  # a directory: SQLite says what is wrong
        raise StoreExposed(
            f"database {target} is open to other users (mode {mode:04o}): make it the "
            f"owner's alone (chmod 600 {target}) and change the secrets it holds if others "
            "may have read it"
        )


def is_postgresql(target: str | Path) -> bool:
    """Whether ``[storage] database`` names a PostgreSQL database (a URL), not a file."""
    return str(target).startswith(("postgresql://", "postgres://"))


def redacted(target: str | Path) -> str:
    """``target`` fit for logs and messages: a URL's password replaced by ***."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", str(target))


def _locked(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


@contextmanager
def read_only(path: str) -> Iterator[sqlite3.Connection]:
    """A connection that cannot write to the database file at ``path`` (``acs db``);
    StoreError when it cannot be opened or read as an ACS database."""
    try:
        conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}") from None
    try:
        yield conn
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: no ACS schema ({exc})") from None
    finally:
        conn.close()


def file_schema_version(path: str) -> int:
    """The schema version of the database file at ``path``, read without writing to it
    (``acs db status``). StoreError when it is no SQLite file or holds no ACS schema."""
    with read_only(path) as conn:
        return schema_version(conn)


def backup_file(path: str, target: str) -> int:
    """Copy the database at ``path`` to the new file ``target`` (owner-only; an existing
    file is never overwritten) while other connections use it: SQLite's online backup in
    one step, one read transaction, so the copy is consistent. Its size in bytes."""
    try:
        source = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}") from None
    try:
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError as exc:
            raise StoreError(f"cannot create {target}: {exc.strerror}") from None
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)
        except sqlite3.Error as exc:
            copy.close()
            os.unlink(target)
            raise StoreError(f"backup failed: {exc}") from None
        copy.close()
    finally:
        source.close()
    return os.path.getsize(target)


class Database:
    """Synchronous access to the appliance's SQLite file (see the module docstring)."""

    # The driver's exceptions for a refused constraint and for any database error; the
    # PostgreSQL engine (acs.store.postgres) has psycopg's.
    IntegrityError: type[Exception] = sqlite3.IntegrityError
    Error: type[Exception] = sqlite3.Error

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._depth = 0
        # The connection may be shared with a worker thread (check_same_thread=False);
        # a transaction must not interleave with another thread's statements.
        self._lock = threading.RLock()
        # Whether the database (and, through FileStorage, the files directory) is full.
        self.health = StorageHealth()
        # Told the id of every task that reaches done, failed or cancelled (acs.tasks.engine
        # wakes whoever waits for it); called inside the store's transaction.
        self.task_finished: list[Callable[[int], None]] = []
        # What the transaction under way calls once it commits (`after_commit`).
        self._pending: list[AfterCommit] = []

    @property
    def db(self) -> Any:
        """The connection itself, for inspection by tests and tools (`store.db.execute(...)`);
        the store's own statements go through `_conn`."""
        return self._conn

    @classmethod
    def open(cls, path: str | Path) -> Self:
        """Open (creating if needed) the database at `path` and migrate it; a
        ``postgresql://`` URL opens that PostgreSQL database (`acs.store.postgres`)."""
        target = str(path)
        if is_postgresql(target):
            from acs.store import postgres

            return postgres.engine_class(cls)(postgres.connect(target))  # type: ignore[arg-type]
        try:
            if target != ":memory:":
                Path(target).parent.mkdir(parents=True, exist_ok=True)
                _owner_only(target)
            conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open database {target}: {exc}") from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            # The automatic checkpoint (every 1,000 pages) and the maintenance job's keep the
            # WAL short; this cuts the file back once they have.
            conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
            migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot open database {target}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return cls(conn)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            # Cheap; keeps the planner's statistics useful on long-lived files.
            self._conn.execute("PRAGMA optimize")
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self, *, proves_room: bool = True) -> Iterator[None]:
        """One atomic unit. Nested use becomes a SAVEPOINT, so an inner failure that the
        caller catches rolls back only the inner part. ``proves_room=False`` for a write
        that says nothing of free space (a lease renewal rewrites its row in place): its
        commit does not count as storage taking writes again."""
        with self._lock:
            if self._depth == 0:
                self._begin_immediate()
                self._depth = 1
                changes = self._conn.total_changes
                try:
                    yield
                    self._conn.execute("COMMIT")
                except BaseException as exc:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    if is_storage_full(exc):
                        self.health.refused_write(DATABASE)
                    raise
                else:
                    if proves_room and self._conn.total_changes != changes:  # not reads only
                        self.health.wrote(DATABASE)
                finally:
                    self._depth = 0
                    pending, self._pending = self._pending, []
                self._committed(pending)  # not reached when rolled back
            else:
                name = f"sp{self._depth}"
                self._conn.execute(f"SAVEPOINT {name}")
                self._depth += 1
                mark = len(self._pending)
                try:
                    yield
                except BaseException:
                    self._conn.execute(f"ROLLBACK TO {name}")
                    self._conn.execute(f"RELEASE {name}")
                    del self._pending[mark:]  # undone with the rest of it
                    raise
                else:
                    self._conn.execute(f"RELEASE {name}")
                finally:
                    self._depth -= 1

    def after_commit(self, call: Callable[..., object], *args: Any) -> None:
        """``call(*args)`` once the transaction under way commits, never if it (or the
        savepoint it was asked in) is rolled back; at once outside a transaction. For what
        must not happen before the commit, or at all without it: waking a device for the
        task just queued, removing the file of a deleted row, telling who waits for a task.
        On the reactor thread (a unit of the PostgreSQL pool hands it over); what it raises
        is logged, the commit stands."""
        if self._depth:
            self._pending.append((call, args))
        else:
            self._committed([(call, args)])

    def _committed(self, calls: list[AfterCommit]) -> None:
        for call, args in calls:
            try:
                call(*args)
            except Exception:
                log.failure("after commit: {call} failed", call=getattr(call, "__name__", call))

    # --- units of work (the storage seam) ------------------------------------------------

    runs_inline = True
    """Whether `run` and `read` run their unit at once (their Deferred has fired when they
    return): always on SQLite, whose statements wait on no network."""

    def run(self, unit: Callable[..., T], *args: Any, rerun: bool = True) -> Deferred[T]:
        """``unit(*args)`` as one transaction, the pattern of adbapi's ``runInteraction``: a
        Deferred of what it returns, or of what it raised with every write of it undone.

        A unit calls the store (not the reactor: on PostgreSQL it runs in a thread of the
        engine's pool, on that thread's connection, and what it asks `after_commit` is
        called on the reactor thread once it committed). ``rerun``: the unit may run again
        after a serialization failure or deadlock (PostgreSQL), so it may change no state
        but the database's; False for one that does (a CWMP session's step). Inside a
        transaction or another unit, it runs at once as part of it."""
        return maybeDeferred(self._transacted, unit, *args)

    def _transacted(self, unit: Callable[..., T], *args: Any) -> T:
        with self.transaction():
            return unit(*args)

    def read(self, unit: Callable[..., T], *args: Any) -> Deferred[T]:
        """``unit(*args)`` outside a transaction, run as `run` runs units: reads (each
        statement sees what was committed when it ran), or work made of transactions of
        its own that commit as they go (a periodic job's sweep). Never run again."""
        return maybeDeferred(unit, *args)

    def start_pool(self, reactor: Any, size: int) -> None:
        """Run units in a pool of ``size`` threads of ``reactor`` from now on (PostgreSQL);
        SQLite keeps running them at once."""

    def _finished(self, task_id: int) -> None:
        """Tell the `task_finished` listeners, once the transaction that finished the task
        commits."""
        for listener in self.task_finished:
            self.after_commit(listener, task_id)

    def _begin_immediate(self) -> None:
        """BEGIN IMMEDIATE, waiting for another process's write lock in short pauses (see
        WRITE_LOCK_PAUSE); "database is locked" once BUSY_TIMEOUT_MS have gone by."""
        conn = self._conn
        # Statements inside the transaction keep SQLite's busy timeout (they wait for
        # nothing: the write lock is ours); only this BEGIN waits our way.
        conn.execute("PRAGMA busy_timeout=0")
        try:
            deadline = 0.0
            pause = WRITE_LOCK_PAUSE
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")  # at once when nobody else writes
                    return
                except sqlite3.OperationalError as exc:
                    if not _locked(exc):
                        raise
                    now = time.monotonic()
                    deadline = deadline or now + BUSY_TIMEOUT_MS / 1000
                    if now >= deadline:
                        raise
                time.sleep(pause)
                pause = min(pause * 2, WRITE_LOCK_MAX_PAUSE)
        finally:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    @contextmanager
    def _atomic(self) -> Iterator[None]:
        """``transaction()`` for hot-path writers whose only statement that can fail (a
        lookup raising NotFound) runs before any write: inside a caller's transaction the
        SAVEPOINT/RELEASE pair would protect nothing, so it is skipped and a failure is the
        caller's transaction's to roll back. Alone, it is a transaction as usual."""
        with self._lock:
            if self._depth == 0:
                with self.transaction():
                    yield
            else:
                yield

    def probe_write(self) -> bool:
        """Write and delete ``PROBE_BYTES`` in one transaction: True (and the database no
        longer counts as full) if that worked, False if storage is still full. Not counted
        as a refused write: nobody's data was refused."""
        with self._lock:
            if self._depth:
                raise StoreError("probe_write inside a transaction")
            try:
                self._begin_immediate()
                try:
                    self._conn.execute(
                        "INSERT INTO storage_probe (data) VALUES (zeroblob(?))", (PROBE_BYTES,)
                    )
                    self._conn.execute("DELETE FROM storage_probe")
                    self._conn.execute("COMMIT")
                finally:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
            except self.Error as exc:
                if is_storage_full(exc):
                    return False
                raise
        self.health.wrote(DATABASE)
        return True

    def checkpoint(self) -> tuple[int, int]:
        """A passive WAL checkpoint (never waits for readers or writers): (WAL frames, frames
        copied into the database). Once every frame is copied, the next write starts the WAL
        over and SQLite cuts the file to ``JOURNAL_SIZE_LIMIT``."""
        with self._lock:
            row = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(row[1]), int(row[2])

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        cur = self._conn.cursor()
        cur.row_factory = sqlite3.Row
        return cur.execute(sql, params).fetchall()

    def _one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        cur = self._conn.cursor()
        cur.row_factory = sqlite3.Row
        row: sqlite3.Row | None = cur.execute(sql, params).fetchone()
        return row

    def _insert(self, table: str, columns: str, params: Sequence[Any]) -> sqlite3.Row:
        """INSERT one row (``columns``: comma-separated names, ``params`` their values) into
        ``table``; both are always our literals, never caller input. The row as stored."""
        marks = ", ".join("?" for _ in params)
        row = self._one(f"INSERT INTO {table} ({columns}) VALUES ({marks}) RETURNING *", params)
        assert row is not None  # RETURNING of a successful INSERT
        return row

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self._conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def _exists(self, table: str, row_id: Any) -> bool:
        if type(row_id) is not int:
            return False
        # `table` is always one of our literal table names, never caller input.
        return self._scalar(f"SELECT 1 FROM {table} WHERE id = ?", (row_id,)) is not None

    def _role_and_scope(self, role: str, organization_ids: Sequence[int]) -> list[int]:
        """A token's or user's role and organizations checked (ValueError), the ids sorted.
        Call inside the transaction that stores them."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        orgs = sorted(set(organization_ids))
        for org in orgs:
            if type(org) is not int:
                raise ValueError(f"organization id must be an int, not {org!r}")
        missing = [o for o in orgs if not self._exists("organizations", o)]
        if missing:
            raise ValueError(f"unknown organization id(s): {', '.join(map(str, missing))}")
        return orgs

    def _rows_by_id(self, table: str, ids: Iterable[int]) -> list[sqlite3.Row]:
        """The rows of ``table`` with these ids, for serialising a page: one query per kind
        of related row instead of one per item (a page is at most a few hundred ids, well
        under SQLite's limit on bound parameters)."""
        wanted = sorted({i for i in ids if type(i) is int})
        if not wanted:
            return []
        marks = ", ".join("?" for _ in wanted)
        # `table` is always one of our literal table names, never caller input.
        return self._all(f"SELECT * FROM {table} WHERE id IN ({marks})", wanted)

    def _require_device(self, device_id: int) -> None:
        if not self._exists("devices", device_id):
            raise NotFound(f"device {device_id!r} not found")

    def _insert_history(
        self, device_id: int | None, action: str, detail: dict[str, Any], now: float, actor: str
    ) -> None:
        self._conn.execute(
            "INSERT INTO history (device_id, time, actor, action, detail) VALUES (?, ?, ?, ?, ?)",
            (device_id, now, actor, action, json_text("detail", detail)),
        )

    def _audit(self, action: str, detail: dict[str, Any], now: float, actor: str) -> None:
        self._insert_history(None, action, detail, epoch("now", now), actor)

    def _page(
        self,
        table: str,
        where: str,
        params: Sequence[Any],
        decode: Callable[[sqlite3.Row], T],
        *,
        order: str = "id",
        limit: int,
        offset: int,
    ) -> tuple[int, list[T]]:
        """(rows matching, one page of them in ``order``) from one snapshot: what every list
        endpoint answers. ``table``, ``where`` ("" or " WHERE ...") and ``order`` are our
        literal SQL, never caller input; the caller has checked the page (``check_page``)."""
        with self.transaction():
            total = int(self._scalar(f"SELECT count(*) FROM {table}{where}", params))
            found = self._all(
                f"SELECT * FROM {table}{where} ORDER BY {order} LIMIT ? OFFSET ?",
                [*params, limit, offset],
            )
        return total, [decode(r) for r in found]

    def _delete_unless_used(
        self,
        table: str,
        noun: str,
        row_id: int,
        decode: Callable[[sqlite3.Row], T],
        uses: Sequence[tuple[str, str]],
        audit: tuple[str, Callable[[T], dict[str, Any]]],
        *,
        now: float,
        actor: str,
    ) -> T:
        """Delete row ``row_id`` of ``table`` and audit it in the global log; NotFound if it
        does not exist, Conflict while one of ``uses`` counts rows that depend on it. Each
        use is (count query taking the id, message with ``{id}`` and ``{n}``), checked in
        order; ``audit`` is (action, detail of the deleted row). Returns the deleted row."""
        with self.transaction():
            row = self._one(f"SELECT * FROM {table} WHERE id = ?", (row_id,))
            if row is None:
                raise NotFound(f"{noun} {row_id!r} not found")
            current = decode(row)
            for count_sql, message in uses:
                n = int(self._scalar(count_sql, (row_id,)))
                if n:
                    raise Conflict(message.format(id=row_id, n=n))
            self._conn.execute(f"DELETE FROM {table} WHERE id = ?", (row_id,))
            action, detail = audit
            self._audit(action, detail(current), now, actor)
        return current
