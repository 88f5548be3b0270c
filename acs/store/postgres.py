"""The PostgreSQL engine: ``[storage] database = "postgresql://user@host/db"``.

The aggregates keep their SQL, written for SQLite; this module runs it on PostgreSQL:

- `PgConnection` gives a psycopg 3 connection the part of the ``sqlite3.Connection``
  interface the store uses (``execute``/``executemany`` with ``?`` parameters, rows by
  index and by name, ``total_changes``, ``in_transaction``). Parameters are bound on the
  client (``psycopg.ClientCursor``): SQLite's untyped parameters become literals whose type
  PostgreSQL infers from where they stand, as SQLite's do. Booleans are sent as '1'/'0',
  what SQLite stores and also a boolean where one is wanted. Inside a transaction each
  write runs under a savepoint, so a failing statement (a unique index refusing a row)
  undoes only itself, as in SQLite, and the caller may go on in the same transaction.
- `translate` rewrites each statement once (cached): the few SQLite-only constructs,
  listed in ``REWRITES`` and ``_PATTERNS``, become their PostgreSQL equivalents (JSON
  functions, ``IS ?``, ``INSERT OR IGNORE``, scalar ``max``, index hints), and parameters
  become psycopg's (``?NNN`` by position).
- `PgEngine` replaces what `Database` does with SQLite itself: the write lock (one
  transaction-scoped advisory lock: writers queue as they do on SQLite, across every node),
  the schema (`acs.store.pgschema`), the storage probe, checkpoints (PostgreSQL's own).

Used from the reactor thread, synchronously, like the SQLite engine: each statement is a
round trip to the server. Features used: plain SQL, identity columns, a stored generated
column, partial indexes, one plpgsql trigger function, advisory locks, jsonb operators.
"""

from __future__ import annotations

import functools
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from acs.store.db import AfterCommit, Database, redacted
from acs.store.errors import SchemaError, StorageUnavailable, StoreError
from acs.store.migrations import MIGRATIONS
from acs.store.nodes import NodeStatus, read_nodes
from acs.store.pgschema import BASE, BASE_VERSION, DELTAS
from acs.store.series import _BUCKETED, _GAUGES

try:
    import psycopg
    import psycopg.conninfo
    from psycopg.adapt import Dumper
    from psycopg.pq import TransactionStatus
except ImportError:  # pragma: no cover - exercised only where psycopg is not installed
    psycopg = None  # type: ignore[assignment]

D = TypeVar("D", bound=Database)
T = TypeVar("T")

# pg_advisory_xact_lock key of the store's write lock ("acsw" in ASCII).
WRITE_LOCK_KEY = 0x61637377
# pg_advisory_xact_lock key held while the schema is created or migrated ("acsm").
MIGRATE_LOCK_KEY = 0x6163736D


def _pg_bucketed() -> str:
    """series: SQLite takes the gauges from the row holding max(at); PostgreSQL names it."""
    return ", ".join(
        f"(array_agg({c} ORDER BY at DESC, id DESC))[1] AS {c}" if c in _GAUGES else c
        for c in _BUCKETED.split(", ")
    )


def _json_value(expr: str) -> str:
    """A jsonb value as SQLite's json_each gives j.value: the scalar's text, else the JSON."""
    return (
        f"CASE jsonb_typeof({expr}) WHEN 'object' THEN ({expr})::text"
        f" WHEN 'array' THEN ({expr})::text ELSE {expr} #>> '{{}}' END"
    )


_JSON_TYPE = (
    "CASE jsonb_typeof(j.v) WHEN 'string' THEN 'text' WHEN 'boolean' THEN (j.v)::text"
    " WHEN 'number' THEN CASE WHEN (j.v)::text ~ '^-?[0-9]+$' THEN 'integer' ELSE 'real' END"
    " ELSE jsonb_typeof(j.v) END"
)

# (SQLite text, PostgreSQL text): exact fragments of the store's statements. Each must still
# occur in acs/store (tests/test_postgres_translate.py checks), so one edited on one side
# only fails a test instead of silently reaching PostgreSQL untranslated.
REWRITES: tuple[tuple[str, str], ...] = (
    # tasks.inform_work, firmware_version_checks, retention
    (
        "json_extract(result, '$.version_check') = 'pending'",
        "(result::jsonb ->> 'version_check') = 'pending'",
    ),
    (
        "json_each(t.default_settings) WHERE v.id = ?1",
        "jsonb_each(t.default_settings::jsonb) WHERE v.id = ?1",
    ),
    ("WHERE d.id = ?1 AND d.provisioned", "WHERE d.id = ?1 AND d.provisioned <> 0"),
    (
        "CAST(p.value AS INTEGER) IS NOT d.update_frequency",
        "(CASE WHEN p.value ~ '^ *[-+]?[0-9]{1,18} *$' THEN CAST(p.value AS BIGINT) END)"
        " IS DISTINCT FROM d.update_frequency",
    ),
    (
        "json_each(t.default_settings) j   WHERE t.id = d.type_id",
        "jsonb_each(t.default_settings::jsonb) j   WHERE t.id = d.type_id",
    ),
    # tasks.transfers_overdue
    (
        "coalesce(json_extract(args, '$.delay_seconds'),"
        " json_extract(args, '$.time_windows[#-1].window_end'), 0)",
        "coalesce((args::jsonb ->> 'delay_seconds')::float8,"
        " (args::jsonb -> 'time_windows' -> -1 ->> 'window_end')::float8, 0)",
    ),
    # tasks.tasks_coming_due
    (
        "ORDER BY max(coalesce(t.scheduled_at, 0), coalesce(t.next_attempt_at, 0))",
        "ORDER BY greatest(coalesce(t.scheduled_at, 0), coalesce(t.next_attempt_at, 0))",
    ),
    ("SELECT id FROM campaigns WHERE hold)", "SELECT id FROM campaigns WHERE hold <> 0)"),
    # campaigns.set_state
    (
        "ELSE ?1 = 'paused' END",
        "ELSE CASE WHEN ?1 = 'paused' THEN 1 ELSE 0 END END",
    ),
    # campaigns: a token's scope
    (
        "json_each(organization_ids) j WHERE j.value NOT IN (",
        "jsonb_array_elements_text(organization_ids::jsonb) j(value)"
        " WHERE j.value::bigint NOT IN (",
    ),
    # settings.effective_settings
    (
        "SELECT j.key, j.value, j.type, 'type', '', 1, 0.0"
        " FROM devices v JOIN device_types t ON t.id = v.type_id,"
        " json_each(t.default_settings) j",
        f"SELECT j.key, {_json_value('j.v')}, {_JSON_TYPE}, 'type', '', 1, 0.0"
        " FROM devices v JOIN device_types t ON t.id = v.type_id,"
        " jsonb_each(t.default_settings::jsonb) j(key, v)",
    ),
    (
        "j.type IN ('text', 'integer', 'real', 'true', 'false')",
        "jsonb_typeof(j.v) IN ('string', 'number', 'boolean')",
    ),
    # settings.refused_settings
    (
        "json_extract(j.value, '$.fp') AS fp,"
        " json_extract(j.value, '$.code') AS code, json_extract(j.value, '$.string') AS msg",
        "j.value ->> 'fp' AS fp, (j.value ->> 'code')::bigint AS code, j.value ->> 'string' AS msg",
    ),
    ("json_each(t.result, '$.refused') j", "jsonb_each(t.result::jsonb -> 'refused') j"),
    # files: images and files in use by open transfers
    (
        "json_extract(args, '$.firmware_image') = ?",
        "(args::jsonb -> 'firmware_image') = to_jsonb(?::bigint)",
    ),
    ("json_extract(args, '$.file') = ?", "(args::jsonb -> 'file') = to_jsonb(?::bigint)"),
    # tags: in the order they were added
    ("WHERE device_id = ? ORDER BY rowid", "WHERE device_id = ? ORDER BY seq"),
    ("ORDER BY device_id, rowid", "ORDER BY device_id, seq"),
    # webhooks.advance
    ("SET cursor = max(cursor, ?)", "SET cursor = greatest(cursor, ?)"),
    # series: buckets
    ("GROUP BY CAST(at / ? AS INTEGER)", "GROUP BY floor(at / ?)"),
    (_BUCKETED, _pg_bucketed()),
    # the storage probe
    ("VALUES (zeroblob(?))", "VALUES (decode(repeat('00', ?), 'hex'))"),
)

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bIS NOT (\?\d*)"), r"IS DISTINCT FROM \1"),
    (re.compile(r"\bIS (\?\d*)"), r"IS NOT DISTINCT FROM \1"),
    (re.compile(r"\s+INDEXED BY \w+"), ""),
    (re.compile(r"\binstr\("), "strpos("),
)
_OR_IGNORE = re.compile(r"\bINSERT OR IGNORE INTO\b")
_RETURNING = re.compile(r"\sRETURNING\s")
# A quoted string or identifier, or a parameter (?, ?NNN), or a %.
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?(\d*)|%")


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> tuple[str, tuple[int, ...] | None]:
    """(PostgreSQL statement, positions of the caller's parameters for its %s in order, or
    None when they are the caller's own order) for a statement of the store."""
    for old, new in REWRITES:
        if old in sql:
            sql = sql.replace(old, new)
    for pattern, new in _PATTERNS:
        sql = pattern.sub(new, sql)
    if _OR_IGNORE.search(sql):
        sql = _OR_IGNORE.sub("INSERT INTO", sql)
        found = _RETURNING.search(sql)
        at = found.start() if found else len(sql)
        sql = f"{sql[:at]} ON CONFLICT DO NOTHING{sql[at:]}"
    order: list[int] = []
    numbered = False
    has_params = False
    highest = 0  # SQLite numbers a bare ? one past the highest number so far

    def token(match: re.Match[str]) -> str:
        nonlocal numbered, has_params, highest
        text = match.group(0)
        if text == "%":
            return "%%"
        if text[0] != "?":
            return text.replace("%", "%%")
        has_params = True
        if match.group(1):
            numbered = True
            number = int(match.group(1))
        else:
            number = highest + 1
        highest = max(highest, number)
        order.append(number - 1)
        return "%s"

    out = _TOKENS.sub(token, sql)
    if not has_params:
        return sql, None  # no placeholders: psycopg leaves % alone
    return out, tuple(order) if numbered else None


class PgRow(tuple[Any, ...]):
    """A row by position and, like ``sqlite3.Row``, by column name; ``keys()``."""

    _index: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if type(key) is str:
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


@functools.lru_cache(maxsize=1024)
def _row_class(names: tuple[bytes, ...]) -> type[PgRow]:
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        index.setdefault(name.decode(), i)  # as sqlite3.Row: the first of two equal names
    return type("Row", (PgRow,), {"_index": index})


def _row_factory(cursor: Any) -> Any:
    # The result's column names straight from libpq: cursor.description would build a
    # Column object per column of every result.
    result = cursor.pgresult
    if result is None or not result.nfields:
        return tuple
    cls = _row_class(tuple(result.fname(i) or b"" for i in range(result.nfields)))
    return lambda values: tuple.__new__(cls, values)


if psycopg is not None:

    class _BoolDumper(Dumper):
        """A bool as the untyped literal '1' or '0': PostgreSQL reads it as the integer
        SQLite stores in an INTEGER column and as a boolean where one is wanted
        (``CASE WHEN ?``), as SQLite does."""

        def dump(self, obj: Any) -> bytes:
            return b"1" if obj else b"0"

        def quote(self, obj: Any) -> bytes:
            return b"'1'" if obj else b"'0'"


_WRITES = ("INSERT", "UPDATE", "DELETE")
_ENDS = ("COMMIT", "ROLLBACK")


def _unavailable(exc: Exception) -> StorageUnavailable:
    return StorageUnavailable(f"lost the connection to PostgreSQL: {exc}")


def _timed_out(exc: Exception) -> StorageUnavailable:
    """A statement cancelled by ``statement_timeout`` (a stuck query, or the write lock held
    that long): the unit fails whole and its caller answers 503, as for a lost server."""
    return StorageUnavailable(f"PostgreSQL did not answer in time: {exc}")


def _is_rollback(sql: str) -> bool:
    verb = sql.lstrip()[:11].upper()
    return verb.startswith("ROLLBACK") and not verb.startswith("ROLLBACK TO")


def _is_write(sql: str) -> bool:
    return sql.lstrip()[:6].upper().startswith(_WRITES)


# What opens a transaction of the store: BEGIN and the cluster-wide write lock.
_OPENING = f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})"


def _bound(text: str, order: tuple[int, ...] | None, params: Sequence[Any] | None) -> Any:
    """The parameters to send with the translated ``text`` (None: none at all)."""
    if params is None or not (params or "%s" in text):
        return None
    if isinstance(params, dict):
        raise StoreError("named parameters are not used by the store")
    return params if order is None else [params[i] for i in order]


# The savepoint a write inside a transaction runs under (see PgConnection).
_SAVEPOINT = "SAVEPOINT st; "
_RELEASE = "RELEASE SAVEPOINT st; "


class PgConnection:
    """The ``sqlite3.Connection`` subset of the store over a psycopg connection.

    SQLite undoes a failed statement alone and the transaction goes on; PostgreSQL aborts
    the whole transaction. So inside a transaction each write runs under the savepoint
    ``st`` (rolled back to when the write fails), sent in the same round trip as the write,
    and released in the round trip of the next statement: at most one such savepoint is
    open, and no statement costs an extra round trip unless it fails."""

    def __init__(self, conn: Any, url: str) -> None:
        self.raw = conn
        self.url = url
        self.total_changes = 0
        self._held = False  # whether savepoint st is open
        self._begun = False  # whether a transaction of ours is open (begin() to its end)
        self._owed = False  # whether its BEGIN is still to be sent (with its first statement)

    @property
    def in_transaction(self) -> bool:
        if self._owed:
            return True
        if self.raw.broken:  # the server ended it; ours stays open until rolled back
            return self._begun
        return bool(self.raw.info.transaction_status != TransactionStatus.IDLE)

    def begin(self) -> None:
        """A transaction under the write lock. Its BEGIN and the lock are sent in the round
        trip of its first statement (one round trip less a transaction; one with no
        statement costs none)."""
        self._begun = self._owed = True

    def _pay(self) -> None:
        """Send the BEGIN owed now, on its own. A connection the server dropped since the
        last transaction (a restart, a failover, an idle timeout) is opened again first."""
        self._owed = False
        if self.raw.broken:
            self._reconnect()
        try:
            try:
                self.raw.execute(_OPENING)
            except psycopg.errors.QueryCanceled as exc:  # the write lock was held too long
                self.raw.execute("ROLLBACK")
                raise _timed_out(exc) from exc
            except psycopg.OperationalError:
                if not self.raw.broken:
                    raise
                self._reconnect()  # dropped while idle: found out only now
                try:
                    self.raw.execute(_OPENING)
                except psycopg.OperationalError as exc:
                    if not self.raw.broken:
                        raise
                    raise _unavailable(exc) from exc
        except BaseException:
            self._begun = False
            raise

    def _reconnect(self) -> None:
        self.raw = _open(self.url)
        self._held = False

    def execute(self, sql: str, params: Sequence[Any] | None = ()) -> Any:
        if self._owed:
            verb = sql.lstrip()[:11].upper()
            if verb.startswith(_ENDS) and not verb.startswith("ROLLBACK TO"):
                self._begun = self._owed = self._held = False  # nothing was sent: nothing to end
                return None
            return self._first(sql, params)
        if self.raw.broken:
            if not self._begun:
                self._reconnect()
            elif _is_rollback(sql):
                self._begun = self._held = False  # the server rolled it back already
                return None
            else:
                raise StorageUnavailable("the connection to PostgreSQL was lost in a transaction")
        text, order = translate(sql)
        bound = _bound(text, order, params)
        prefix, guarded = self._prefix(sql)
        alone = not prefix and not self.in_transaction and _is_write(sql)
        if alone:
            # A write outside a transaction takes the write lock too, as on SQLite: in the
            # same round trip, committed right after.
            prefix = _OPENING + "; "
            text += "; COMMIT"
        cur = self.raw.cursor()
        try:
            cur.execute(prefix + text, bound)
        except psycopg.OperationalError as exc:
            if not self.raw.broken:
                self._undo(guarded, alone)
                if isinstance(exc, psycopg.errors.QueryCanceled):
                    raise _timed_out(exc) from exc
                raise
            if self._begun or alone or prefix:
                raise _unavailable(exc) from exc
            # A read on its own, on a connection dropped while idle: read again on a new one.
            self._reconnect()
            cur = self.raw.cursor()
            try:
                cur.execute(text, bound)
            except psycopg.OperationalError as again:
                if not self.raw.broken:
                    raise
                raise _unavailable(again) from again
        except BaseException:
            self._undo(guarded, alone)
            raise
        for _ in range(prefix.count(";")):
            cur.nextset()
        self._count(cur)
        return cur

    def _first(self, sql: str, params: Sequence[Any] | None) -> Any:
        """The transaction's first statement, with the BEGIN and write lock it owes in one
        round trip. Whatever fails before the statement has run (the lock wait cut off by
        statement_timeout, the connection found dropped) fails the transaction whole, as
        BEGIN failing did; a connection dropped while idle is opened again and the round
        trip sent once more, since nothing of the transaction was lost."""
        text, order = translate(sql)
        bound = _bound(text, order, params)
        prefix, guarded = self._prefix(sql)
        self._owed = False
        if self.raw.broken:
            self._reconnect()
        sent = _OPENING + "; " + prefix
        for attempt in (1, 2):
            cur = self.raw.cursor()
            try:
                cur.execute(sent + text, bound)
                break
            except psycopg.OperationalError as exc:
                if self.raw.broken:
                    if attempt == 1:
                        self._reconnect()  # dropped while idle: found out only now
                        continue
                    self._begun = self._held = False
                    raise _unavailable(exc) from exc
                # The lock wait or the statement itself cut off, or refused: all undone.
                self.raw.execute("ROLLBACK")
                self._begun = self._held = False
                if isinstance(exc, psycopg.errors.QueryCanceled):
                    raise _timed_out(exc) from exc
                raise
            except BaseException:
                if self.raw.info.transaction_status == TransactionStatus.IDLE:
                    # Refused before it was sent (a value psycopg cannot adapt): still owed.
                    self._owed, self._held = True, False
                else:
                    self._undo(guarded, False)  # BEGIN and the lock took; the statement failed
                raise
        for _ in range(sent.count(";")):
            cur.nextset()
        self._count(cur)
        return cur

    def _undo(self, guarded: bool, alone: bool) -> None:
        """After a failed statement: back to before it, as SQLite leaves things."""
        if self.raw.broken:
            return
        if guarded:
            self.raw.execute("ROLLBACK TO SAVEPOINT st")
        elif alone and self.in_transaction:
            self.raw.execute("ROLLBACK")

    def executemany(self, sql: str, seq: Any) -> Any:
        text, order = translate(sql)
        rows = [list(p) if order is None else [p[i] for i in order] for p in seq]
        if not rows:
            return None
        if self.in_transaction:
            return self._many(sql, text, rows)
        self.begin()  # one transaction under the write lock, as on SQLite
        try:
            cur = self._many(sql, text, rows)
            self.execute("COMMIT")
        except BaseException:
            self.execute("ROLLBACK")
            raise
        return cur

    def _many(self, sql: str, text: str, rows: list[list[Any]]) -> Any:
        if self._owed:
            self._pay()
        if self.raw.broken:
            raise StorageUnavailable("the connection to PostgreSQL was lost in a transaction")
        prefix, guarded = self._prefix(sql)
        cur = self.raw.cursor()
        try:
            if prefix:
                self.raw.execute(prefix)
            cur.executemany(text, rows)
        except psycopg.OperationalError as exc:
            if self.raw.broken:
                raise _unavailable(exc) from exc
            self._undo(guarded, False)
            if isinstance(exc, psycopg.errors.QueryCanceled):
                raise _timed_out(exc) from exc
            raise
        except BaseException:
            self._undo(guarded, False)
            raise
        self._count(cur)
        return cur

    def _prefix(self, sql: str) -> tuple[str, bool]:
        """(statements to send before ``sql`` in its round trip, whether ``sql`` runs under
        savepoint st), the savepoint's state updated for after it."""
        if not self.in_transaction:
            return "", False
        verb = sql.lstrip()[:11].upper()
        if verb.startswith(_ENDS):
            # COMMIT and ROLLBACK end every savepoint; ROLLBACK TO an outer one ends st,
            # made after it (the statement before it released any older st), and must work
            # in a transaction a failed statement aborted, where RELEASE would not.
            self._held = False
            if not verb.startswith("ROLLBACK TO"):
                self._begun = False
            return "", False
        prefix = _RELEASE if self._held else ""
        if _is_write(sql):
            self._held = True
            return prefix + _SAVEPOINT, True
        self._held = False
        return prefix, False

    def _count(self, cur: Any) -> None:
        status = cur.statusmessage or ""
        if status.startswith(_WRITES) and cur.rowcount > 0:
            self.total_changes += cur.rowcount

    def close(self) -> None:
        self.raw.close()


def connect(url: str) -> PgConnection:
    """A connection to the database at ``url``, its schema created or migrated."""
    if psycopg is None:
        raise StoreError(
            f"cannot open database {url}: the PostgreSQL driver is not installed "
            "(pip install 'psycopg[binary]', or the acs[postgresql] extra)"
        )
    raw = _open(url)
    conn = PgConnection(raw, url)
    try:
        raw.execute("SET statement_timeout = 0")  # a migration may take long on a big database
        migrate(conn)
        raw.execute("RESET statement_timeout")
    except BaseException:
        raw.close()
        raise
    return conn


# libpq settings a URL may leave out: a server that does not answer must not hold the
# reactor or a pool thread for the kernel's TCP timeouts (minutes), connecting or later;
# nor may a stuck statement or a write lock held for long (statement_timeout, in ms).
STATEMENT_TIMEOUT_MS = 30_000
CONNECT_DEFAULTS = {
    "connect_timeout": "10",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
    "application_name": "acs",
    "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
}


def conninfo(url: str) -> str:
    """``url`` with ``CONNECT_DEFAULTS`` for what it does not set itself."""
    given = psycopg.conninfo.conninfo_to_dict(url)
    return psycopg.conninfo.make_conninfo(
        url, **{k: v for k, v in CONNECT_DEFAULTS.items() if k not in given}
    )


def _open(url: str) -> Any:
    try:
        raw = psycopg.connect(
            conninfo(url),
            autocommit=True,
            cursor_factory=psycopg.ClientCursor,
            row_factory=_row_factory,
        )
    except psycopg.Error as exc:
        raise StorageUnavailable(f"cannot open database {redacted(url)}: {exc}") from None
    raw.adapters.register_dumper(bool, _BoolDumper)
    return raw


def read_status(url: str, *, now: float) -> tuple[int, int, list[NodeStatus]]:
    """(schema version, bytes the database takes, its nodes and their sessions) of the
    PostgreSQL database at ``url``, read in a read-only transaction (``acs db status``);
    the nodes only when the schema is not newer than this program's."""
    raw = _open(url)
    try:
        raw.execute("BEGIN READ ONLY")
        if raw.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None:
            raise StoreError(f"{redacted(url)}: no ACS schema")
        conn = PgConnection(raw, url)
        version = schema_version(conn)
        size = int(raw.execute("SELECT pg_database_size(current_database())").fetchone()[0])
        nodes = read_nodes(conn, now=now) if version <= len(MIGRATIONS) else []
        raw.execute("ROLLBACK")
    finally:
        raw.close()
    return version, size, nodes


def schema_version(conn: PgConnection) -> int:
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    return int(row[0])


def migrate(conn: PgConnection) -> int:
    """Create the schema in an empty database, or bring an older one up to date."""
    raw = conn.raw
    raw.execute(
        "CREATE TABLE IF NOT EXISTS schema_version "
        "(version BIGINT PRIMARY KEY, description TEXT NOT NULL)"
    )
    current = schema_version(conn)
    if current > len(MIGRATIONS):
        raise SchemaError(
            f"database schema version {current} is newer than this program "
            f"(which knows up to {len(MIGRATIONS)}): run the newer acs that wrote it"
        )
    if current == len(MIGRATIONS):
        return current
    with raw.transaction():
        raw.execute(f"SELECT pg_advisory_xact_lock({MIGRATE_LOCK_KEY})")
        current = schema_version(conn)  # another node may have migrated meanwhile
        steps: list[tuple[int, str, str]] = []
        if current == 0:
            steps.extend(
                (v, MIGRATIONS[v - 1][0], BASE if v == BASE_VERSION else "")
                for v in range(1, BASE_VERSION + 1)
            )
        elif current < BASE_VERSION:
            raise SchemaError(f"PostgreSQL schema version {current} is not one this program made")
        steps.extend(
            (v, description, sql)
            for v, (description, sql) in enumerate(DELTAS, start=BASE_VERSION + 1)
            if v > current
        )
        for version, description, sql in steps:
            if sql:
                raw.execute(sql)
            raw.execute(
                "INSERT INTO schema_version (version, description) VALUES (%s, %s)",
                (version, description),
            )
    return schema_version(conn)


# Serialization failure and deadlock: the transaction lost to another and may simply run
# again (what PostgreSQL-wire distributed databases answer under contention, too).
RERUN_SQLSTATES = frozenset({"40001", "40P01"})
# A unit runs at most this many times more, after pauses that start at RERUN_PAUSE seconds
# and double, each scaled by a random factor in [0.5, 1.5) so losers do not collide again.
RERUNS = 5
RERUN_PAUSE = 0.005


class _Here(threading.local):
    """What one thread has of the engine: its connection, opened at its first statement,
    its transaction's depth and lock and what to call once that commits; while it runs a
    unit of the pool, the calls its commits handed over (made on the reactor thread)."""

    def __init__(self) -> None:
        self.conn: PgConnection | None = None
        self.depth = 0
        self.lock = threading.RLock()
        self.pending: list[AfterCommit] = []
        self.committed: list[AfterCommit] | None = None


class PgEngine(Database):
    """What `Database` does with SQLite itself, done on PostgreSQL; first in the MRO of
    the store class `engine_class` makes.

    Each thread has its own connection: the reactor's (the one `Store.open` made), and one
    per thread that runs a unit (`start_pool`) or any other store call."""

    IntegrityError = psycopg.IntegrityError if psycopg is not None else Exception
    Error = psycopg.Error if psycopg is not None else Exception

    def __init__(self, conn: PgConnection) -> None:
        self._here = _Here()
        self._url = conn.url
        self._opened = [conn]
        self._opened_lock = threading.Lock()
        self._pool: ThreadPool | None = None
        self._reactor: Any = None  # IReactorFromThreads and IReactorCore
        self._stopping: Any = None
        # Units run again after a serialization failure or deadlock (a figure for tests),
        # counted by the pool's threads.
        self.reruns = 0
        self._reruns_lock = threading.Lock()
        super().__init__(conn)  # type: ignore[arg-type]

    # Per thread: `Database` reads and sets these as attributes.
    @property  # type: ignore[override]
    def _conn(self) -> PgConnection:
        here = self._here
        conn = here.conn
        if conn is None:
            conn = here.conn = PgConnection(_open(self._url), self._url)
            with self._opened_lock:
                self._opened.append(conn)
        return conn

    @_conn.setter
    def _conn(self, conn: PgConnection) -> None:
        self._here.conn = conn

    @property
    def _depth(self) -> int:
        return self._here.depth

    @_depth.setter
    def _depth(self, depth: int) -> None:
        self._here.depth = depth

    @property
    def _lock(self) -> threading.RLock:
        return self._here.lock

    @_lock.setter
    def _lock(self, lock: threading.RLock) -> None:
        self._here.lock = lock

    @property
    def _pending(self) -> list[AfterCommit]:
        return self._here.pending

    @_pending.setter
    def _pending(self, pending: list[AfterCommit]) -> None:
        self._here.pending = pending

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(self._conn.execute(sql, params).fetchall())

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(sql, params).fetchone()

    def _begin_immediate(self) -> None:
        self._conn.begin()

    def checkpoint(self) -> tuple[int, int]:
        """PostgreSQL checkpoints its WAL itself: nothing to copy here."""
        return 0, 0

    # --- units of work -----------------------------------------------------------------

    @property
    def runs_inline(self) -> bool:  # type: ignore[override]
        return self._pool is None

    def start_pool(self, reactor: Any, size: int) -> None:
        """Run units in ``size`` threads from now on, so that no round trip to the server
        holds the reactor; a reactor without threads (``task.Clock``) keeps them inline."""
        if self._pool is not None or not IReactorFromThreads.providedBy(reactor):
            return
        pool = ThreadPool(minthreads=0, maxthreads=size, name="acs-postgresql")
        pool.start()
        self._pool, self._reactor = pool, reactor
        # Its threads would keep the process alive: stopped with the reactor, if not closed.
        self._stopping = reactor.addSystemEventTrigger(
            "during", "shutdown", self._stop_pool, shutdown=True
        )

    def _stop_pool(self, *, shutdown: bool = False) -> None:
        """Stop the pool, waiting for the units it runs (their results are not delivered)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            if not shutdown:
                self._reactor.removeSystemEventTrigger(self._stopping)
            pool.stop()

    def run(self, unit: Callable[..., T], *args: Any, rerun: bool = True) -> Deferred[T]:
        here = self._here
        if self._pool is None or here.depth or here.committed is not None:
            return maybeDeferred(self._attempts, unit, args, rerun)
        return self._in_pool(self._attempts, unit, args, rerun)

    def read(self, unit: Callable[..., T], *args: Any) -> Deferred[T]:
        if self._pool is None or self._here.committed is not None:
            return super().read(unit, *args)
        return self._in_pool(unit, *args)

    def _in_pool(self, body: Callable[..., T], *args: Any) -> Deferred[T]:
        assert self._reactor is not None and self._pool is not None
        ran: Deferred[tuple[T, list[AfterCommit]]] = deferToThreadPool(
            self._reactor, self._pool, self._in_thread, body, *args
        )
        # The caller's own Deferred: cancelling it (an API client went away) leaves the
        # unit to finish, and what its commit asked for is still done.
        result: Deferred[T] = Deferred()
        ran.addCallback(self._told).chainDeferred(result)
        return result

    def _in_thread(self, body: Callable[..., T], *args: Any) -> tuple[T, list[AfterCommit]]:
        here = self._here
        here.committed = []
        try:
            return body(*args), here.committed
        finally:
            here.committed = None

    def _attempts(self, unit: Callable[..., T], args: tuple[Any, ...], rerun: bool) -> T:
        """``unit(*args)`` in a transaction, run again (``rerun``) while it loses to another
        (RERUN_SQLSTATES), at most RERUNS times more. The pauses between runs are spent in
        the pool's thread, or in the caller's when there is no pool (tests, `acs` commands)."""
        pause = RERUN_PAUSE
        for attempt in range(RERUNS + 1):
            try:
                with self.transaction():
                    return unit(*args)
            except psycopg.Error as exc:
                if not rerun or self._depth or attempt == RERUNS:
                    raise
                if exc.sqlstate not in RERUN_SQLSTATES:
                    raise
            with self._reruns_lock:
                self.reruns += 1
            time.sleep(pause * (0.5 + random.random()))  # jitter: no secret
            pause *= 2
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _told(self, ran: tuple[T, list[AfterCommit]]) -> T:
        result, committed = ran
        super()._committed(committed)  # on the reactor thread
        return result

    def _committed(self, calls: list[AfterCommit]) -> None:
        committed = self._here.committed
        if committed is None:
            super()._committed(calls)
        else:  # a unit of the pool: made on the reactor thread once the unit is over
            committed.extend(calls)

    def close(self) -> None:
        """Stop the pool (waiting for the units it runs), then close every connection."""
        self._stop_pool()
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()


_ENGINES: dict[type, type] = {}


def engine_class(cls: type[D]) -> type[D]:
    """The store class ``cls`` on PostgreSQL (made once per class)."""
    found = _ENGINES.get(cls)
    if found is None:
        found = _ENGINES[cls] = type(f"Pg{cls.__name__}", (PgEngine, cls), {})
    return found


# Not copied by copy_from_sqlite: the processes serving the old database (`nodes`, and the
# `leases` of their periodic jobs) are not those that will serve the new one.
_NOT_COPIED = frozenset({"nodes", "leases", "storage_probe"})
_BATCH = 1000


def copy_from_sqlite(path: str, url: str) -> dict[str, int]:
    """Copy the SQLite database file at ``path`` (read only, one snapshot) into the empty
    PostgreSQL database at ``url`` (its schema created if needed), in one transaction:
    every row, the same ids, each identity column set past the highest id SQLite ever gave
    (ids of deleted rows are not reused, as on SQLite). Devices lose their session lease.
    Returns rows copied per table; StoreError, and nothing written, on any failure."""
    from acs.store.db import read_only
    from acs.store.migrations import schema_version as sqlite_version

    conn = connect(url)
    try:
        with read_only(path) as source:
            source.execute("BEGIN")  # one snapshot for every table
            version = sqlite_version(source)
            if version != len(MIGRATIONS):
                raise StoreError(
                    f"{path} has schema {version}, this program {len(MIGRATIONS)}: "
                    + (
                        "start this acs on it once (it migrates the file), then copy it"
                        if version < len(MIGRATIONS)
                        else "copy it with the newer acs that wrote it"
                    )
                )
            return _copy(source, conn, path)
    finally:
        conn.close()


def _copy(source: Any, conn: PgConnection, path: str) -> dict[str, int]:
    raw = conn.raw
    schema = BASE + "".join(sql for _, sql in DELTAS)
    tables = [t for t in re.findall(r"CREATE TABLE (\w+)", schema) if t not in _NOT_COPIED]
    counts: dict[str, int] = {}
    try:
        with raw.transaction():
            raw.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")
            used = [t for t in tables if raw.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()]
            if used:
                raise StoreError(f"the target database is not empty ({', '.join(used)})")
            sequences = dict(source.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
            for table in tables:
                counts[table] = _copy_table(source, raw, table)
                if _has_identity_id(raw, table):
                    highest = raw.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()
                    after = max(int(highest[0]), int(sequences.get(table, 0))) + 1
                    raw.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), %s, false)",
                        (after,),
                    )
    except psycopg.Error as exc:
        raise StoreError(f"copying {path} failed, nothing was written: {exc}") from None
    except sqlite3.Error as exc:
        raise StoreError(f"reading {path} failed, nothing was written: {exc}") from None
    return counts


def _has_identity_id(raw: Any, table: str) -> bool:
    return (
        raw.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND table_name = %s AND column_name = 'id' AND is_identity = 'YES'",
            (table,),
        ).fetchone()
        is not None
    )


def _copy_table(source: Any, raw: Any, table: str) -> int:
    target_columns = {
        r[0]
        for r in raw.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = %s"
            " AND is_generated = 'NEVER' AND identity_generation IS DISTINCT FROM 'ALWAYS'",
            (table,),
        )
    }
    columns = [
        r[1] for r in source.execute(f"PRAGMA table_xinfo({table})") if r[1] in target_columns
    ]
    select = ", ".join(columns)
    # device_tags: in the order they were added (their rowid), which PostgreSQL's seq keeps.
    order = "rowid" if table == "device_tags" else columns[0]
    insert = f"INSERT INTO {table} ({select}) VALUES ({', '.join('%s' for _ in columns)})"
    later: list[tuple[Any, Any]] = []
    copied = 0
    cursor = source.execute(f"SELECT {select} FROM {table} ORDER BY {order}")
    while rows := cursor.fetchmany(_BATCH):
        batch = [_adapt(table, columns, row, later) for row in rows]
        with raw.cursor() as cur:
            cur.executemany(insert, batch)
        copied += len(batch)
    for parent_id, location_id in later:
        raw.execute("UPDATE locations SET parent_id = %s WHERE id = %s", (parent_id, location_id))
    return copied


def _adapt(table: str, columns: list[str], row: Sequence[Any], later: list[Any]) -> list[Any]:
    values = list(row)
    if table == "devices":
        for name in ("session_node", "session_until"):
            values[columns.index(name)] = None
    elif table == "stun_bindings":
        values[columns.index("node")] = None  # a node of the old database's processes
    elif table == "locations":
        # A parent may come after its child: every parent is set once all rows exist.
        at = columns.index("parent_id")
        if values[at] is not None:
            later.append((values[at], values[columns.index("id")]))
            values[at] = None
    return values
