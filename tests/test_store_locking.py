"""acs.store.db: a transaction waits for another process's write lock in short pauses (not
SQLite's 1, 2, 5, 10 ms sleeps), and gives up with "database is locked" after the busy
timeout. The other process is a second connection to the same file; the pauses are
observed (and the clock driven) by replacing the module's ``time``."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from acs.store import Store
from acs.store import db as store_db


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Store, sqlite3.Connection]]:
    path = tmp_path / "acs.db"
    store = Store.open(path)
    other = sqlite3.connect(path, isolation_level=None)
    yield store, other
    other.close()
    store.close()


@pytest.mark.sqlite_only
def test_a_transaction_waits_for_the_other_writer_in_short_pauses(
    pair: tuple[Store, sqlite3.Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, other = pair
    other.execute("BEGIN IMMEDIATE")
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 3:
            other.execute("COMMIT")  # the other process's transaction ends

    monkeypatch.setattr(
        store_db, "time", SimpleNamespace(sleep=sleep, monotonic=store_db.time.monotonic)
    )
    org = store.ensure_organization("Default")  # a write transaction

    assert org.name == "Default"
    pause = store_db.WRITE_LOCK_PAUSE
    assert pauses == [pause, 2 * pause, 4 * pause]
    # SQLite's own busy timeout is back for what runs inside transactions.
    assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] == store_db.BUSY_TIMEOUT_MS


@pytest.mark.sqlite_only
def test_pauses_grow_to_a_millisecond_and_stop_at_the_busy_timeout(
    pair: tuple[Store, sqlite3.Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, other = pair
    other.execute("BEGIN IMMEDIATE")
    clock = [100.0]
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(store_db, "time", SimpleNamespace(sleep=sleep, monotonic=lambda: clock[0]))
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        store.ensure_organization("Other")
    other.execute("ROLLBACK")

    assert max(pauses) == store_db.WRITE_LOCK_MAX_PAUSE
    assert sum(pauses) == pytest.approx(store_db.BUSY_TIMEOUT_MS / 1000, abs=0.002)
    assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] == store_db.BUSY_TIMEOUT_MS
    assert not store.db.in_transaction
    # Nothing was written, and the store works once the lock is free.
    assert store.ensure_organization("Other").name == "Other"
