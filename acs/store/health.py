"""Full storage: telling a write refused for lack of space from other failures, and
remembering it until a write there succeeds again.

SQLite reports a full database file or disk as ``SQLITE_FULL`` ("database or disk is full",
also what it makes of ENOSPC while writing its WAL); file writes raise ``OSError`` with
``ENOSPC`` (or ``EDQUOT`` over a quota). Either way nothing was written: the store's
transaction rolled back, the upload's temporary file is removed. The listeners answer 503
instead of 500, and ``/healthz`` reports the storage degraded while :class:`StorageHealth`
says so. PostgreSQL says ``disk_full`` (SQLSTATE 53100). A PostgreSQL server out of reach
(``StorageUnavailable``) is answered 503 as well, with a shorter Retry-After.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator

from acs.store.errors import StorageUnavailable

DATABASE = "database"
FILES = "files"
STORAGES = (DATABASE, FILES)
# Seconds a client refused for full storage is asked to wait (Retry-After, on every
# listener): long enough for an operator to free space; a CPE keeps its events meanwhile.
STORAGE_FULL_RETRY_AFTER = 60
# Seconds a client is asked to wait while the database server cannot be reached (a
# PostgreSQL restart or failover takes seconds to a minute).
STORAGE_UNAVAILABLE_RETRY_AFTER = 15

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# How far down a chain of wrapped exceptions (``raise X from exc``) the cause is looked for.
_MAX_CHAIN = 8


def _causes(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling, nearest first."""
    for _ in range(_MAX_CHAIN):
        if exc is None:
            return
        yield exc
        exc = (
            exc.__cause__
            if exc.__cause__ is not None
            else (None if exc.__suppress_context__ else exc.__context__)
        )


def is_storage_full(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an exception it was raised from or while handling, says the
    database or the disk is full."""
    for cause in _causes(exc):
        if isinstance(cause, sqlite3.Error):
            # Extended result codes (SQLITE_FULL | n << 8) keep the primary code in the low byte.
            code = getattr(cause, "sqlite_errorcode", None)
            if isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_FULL:
                return True
        # PostgreSQL's disk_full (psycopg.errors.DiskFull), without importing the driver.
        if getattr(cause, "sqlstate", None) == "53100":
            return True
        if isinstance(cause, OSError) and cause.errno in _FULL_ERRNOS:
            return True
    return False


def is_storage_unavailable(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what it was raised from) says the database server cannot be
    reached: answered 503 with Retry-After, like full storage, instead of 500."""
    return any(isinstance(cause, StorageUnavailable) for cause in _causes(exc))


class StorageHealth:
    """Which storages (``database``, ``files``) last refused a write for lack of space, and
    how many writes each refused since start. A storage stops being full at its next
    successful write (a real one, or the maintenance job's probe)."""

    def __init__(self) -> None:
        self._full: set[str] = set()
        self.refused: dict[str, int] = dict.fromkeys(STORAGES, 0)

    @property
    def full(self) -> tuple[str, ...]:
        return tuple(name for name in STORAGES if name in self._full)

    def is_full(self, storage: str) -> bool:
        return storage in self._full

    def refused_write(self, storage: str) -> None:
        self._full.add(storage)
        self.refused[storage] += 1

    def wrote(self, storage: str) -> None:
        self._full.discard(storage)
