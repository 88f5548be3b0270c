"""The PostgreSQL engine (acs.store.postgres): the translation of the store's SQLite
statements, which needs no server and runs in every pass, and on the PostgreSQL pass
(``make test-pg``) what only that engine does: its schema against SQLite's, refusing a
newer schema, clear errors for a database it cannot reach."""

from __future__ import annotations

import ast
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pgserver
import psycopg
import psycopg.conninfo
import pytest
from apiharness import ApiHarness
from cwmpharness import REACTOR, CwmpResourceCase, make_inform, wire
from e2eharness import ApplianceWithFleet, bounded
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from acs.cli import main
from acs.periodic import JobLease
from acs.scheduler import Scheduler
from acs.store import Device, SchemaError, Store, StoreError
from acs.store.errors import StorageUnavailable
from acs.store.health import STORAGE_UNAVAILABLE_RETRY_AFTER
from acs.store.migrations import MIGRATIONS, migrate
from acs.store.pgschema import BASE_VERSION, DELTAS
from acs.store.postgres import (
    RERUNS,
    REWRITES,
    STATEMENT_TIMEOUT_MS,
    WRITE_LOCK_KEY,
    conninfo,
    translate,
)
from acs.store.series import _BUCKETED

STORE = Path(__file__).resolve().parent.parent / "acs" / "store"
on_postgresql = pytest.mark.skipif(pgserver.ACTIVE is None, reason="PostgreSQL pass only")


def _store_strings() -> list[str]:
    """Every string literal of the store's modules, adjacent literals joined as Python joins
    them, an f-string's expressions as NUL."""
    found: list[str] = []
    for path in sorted(STORE.glob("*.py")):
        if path.name == "postgres.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.append(node.value)
            elif isinstance(node, ast.JoinedStr):
                found.append(
                    "".join(v.value if isinstance(v, ast.Constant) else "\0" for v in node.values)
                )
    return found


def test_every_rewrite_still_matches_a_statement_of_the_store() -> None:
    # A rewrite whose SQLite text was edited away would let the edited statement reach
    # PostgreSQL untranslated; this names the stale one. (The series' bucket columns are
    # built from SERIES_COUNTERS, not written out.)
    strings = _store_strings()
    stale = [
        old for old, _ in REWRITES if old is not _BUCKETED and not any(old in s for s in strings)
    ]
    assert stale == []


def test_parameters_keep_sqlite_numbering() -> None:
    sql, order = translate("UPDATE t SET a = ?1, b = ?2 WHERE id = ?3 AND s IN (?, ?)")
    assert sql == "UPDATE t SET a = %s, b = %s WHERE id = %s AND s IN (%s, %s)"
    assert order == (0, 1, 2, 3, 4)  # a bare ? is one past the highest number so far
    sql, order = translate("SELECT ?2, ?1, ?1")
    assert (sql, order) == ("SELECT %s, %s, %s", (1, 0, 0))
    assert translate("SELECT ? + ?") == ("SELECT %s + %s", None)


def test_quotes_and_percent_signs_are_left_as_sqlite_meant_them() -> None:
    sql, _ = translate("SELECT '?', 'a%b', \"c?\" FROM t WHERE x LIKE '5%' AND y = ?")
    assert sql == "SELECT '?', 'a%%b', \"c?\" FROM t WHERE x LIKE '5%%' AND y = %s"
    # Without parameters psycopg does not read % at all: nothing is doubled.
    assert translate("SELECT 'a%b'") == ("SELECT 'a%b'", None)


def test_sqlite_only_constructs_become_postgresql_ones() -> None:
    assert translate("SELECT 1 FROM h WHERE d IS ? AND e IS NOT ?")[0] == (
        "SELECT 1 FROM h WHERE d IS NOT DISTINCT FROM %s AND e IS DISTINCT FROM %s"
    )
    assert translate("INSERT OR IGNORE INTO s (a) VALUES (?)")[0] == (
        "INSERT INTO s (a) VALUES (%s) ON CONFLICT DO NOTHING"
    )
    assert translate("INSERT OR IGNORE INTO s (a) VALUES (?) RETURNING *")[0] == (
        "INSERT INTO s (a) VALUES (%s) ON CONFLICT DO NOTHING RETURNING *"
    )
    assert translate("SELECT * FROM t INDEXED BY t_idx WHERE instr(a, ?) > 0")[0] == (
        "SELECT * FROM t WHERE strpos(a, %s) > 0"
    )


def test_connections_time_out_unless_the_url_says_otherwise() -> None:
    settings = psycopg.conninfo.conninfo_to_dict(conninfo("postgresql://acs:pw@db/acs"))
    assert settings["connect_timeout"] == "10" and settings["keepalives_idle"] == "30"
    assert settings["password"] == "pw" and settings["host"] == "db"
    assert settings["options"] == f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"
    mine = conninfo("postgresql://acs@db/acs?connect_timeout=3&application_name=node-a")
    assert psycopg.conninfo.conninfo_to_dict(mine)["connect_timeout"] == "3"
    assert psycopg.conninfo.conninfo_to_dict(mine)["application_name"] == "node-a"


def test_the_postgresql_schema_has_every_migration() -> None:
    assert BASE_VERSION + len(DELTAS) == len(MIGRATIONS)


def _sqlite_columns() -> dict[str, set[str]]:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        migrate(conn)
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' AND name <> 'storage_probe'"
            )
        ]
        return {t: {r[1] for r in conn.execute(f"PRAGMA table_xinfo({t})")} for t in tables}
    finally:
        conn.close()


@on_postgresql
def test_postgresql_tables_and_columns_are_sqlites() -> None:
    with Store.open(":memory:") as store:
        rows = store.db.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name <> 'storage_probe'"
        ).fetchall()
        versions = [r[0] for r in store.db.execute("SELECT version FROM schema_version")]
    columns: dict[str, set[str]] = {}
    for table, column in rows:
        columns.setdefault(table, set()).add(column)
    columns["device_tags"].discard("seq")  # SQLite's rowid
    assert columns == _sqlite_columns()
    assert sorted(versions) == list(range(1, len(MIGRATIONS) + 1))


@on_postgresql
def test_a_newer_postgresql_schema_is_refused_with_a_clear_error() -> None:
    assert pgserver.ACTIVE is not None
    url = pgserver.ACTIVE.fresh()
    with Store.open(url) as store:
        store.db.execute(
            "INSERT INTO schema_version (version, description) VALUES (?, 'future')",
            (len(MIGRATIONS) + 1,),
        )
    with pytest.raises(SchemaError, match="newer than this program"):
        Store.open(url)


@on_postgresql
def test_an_unreachable_database_is_a_clear_error_without_its_password() -> None:
    url = "postgresql://acs:s3cret@127.0.0.1:1/nothing?connect_timeout=2"
    with pytest.raises(StoreError, match="cannot open database") as raised:
        Store.open(url)
    assert "s3cret" not in str(raised.value)


@on_postgresql
def test_a_failed_write_undoes_only_itself_as_on_sqlite() -> None:
    with Store.open(":memory:") as store:
        org = store.ensure_organization("Org").id
        with store.transaction():
            store.db.execute("INSERT INTO leases (name, holder, expires) VALUES ('a', 'x', 1)")
            with pytest.raises(store.IntegrityError):
                store.db.execute("INSERT INTO leases (name, holder, expires) VALUES ('a', 'y', 1)")
            store.db.execute("INSERT INTO leases (name, holder, expires) VALUES ('b', 'x', 1)")
        names = [r[0] for r in store.db.execute("SELECT name FROM leases ORDER BY name")]
        assert names == ["a", "b"]
        assert store.ensure_organization("Org").id == org


@on_postgresql
def test_failed_writes_in_nested_transactions_and_batches_undo_only_themselves() -> None:
    add = "INSERT INTO leases (name, holder, expires) VALUES (?, 'x', 1)"
    with Store.open(":memory:") as store:
        with store.transaction():
            store.db.execute(add, ("a",))
            with pytest.raises(RuntimeError), store.transaction():  # a savepoint
                store.db.execute(add, ("b",))
                with pytest.raises(store.IntegrityError):
                    store.db.execute(add, ("b",))
                raise RuntimeError("the inner part fails")
            with pytest.raises(store.IntegrityError):
                store.db.executemany(add, [("c",), ("a",)])  # the batch goes as a whole
            store.db.executemany(add, [("d",), ("e",)])
            with store.transaction():
                store.db.execute(add, ("f",))
        names = [r[0] for r in store.db.execute("SELECT name FROM leases ORDER BY name")]
        assert names == ["a", "d", "e", "f"]
        assert not store.db.in_transaction


# --- acs db migrate-to -------------------------------------------------------------------

T = 1_700_000_000.0


def _appliance_file(path: Path) -> dict[str, object]:
    """An SQLite appliance database with a bit of everything; what to find in the copy."""
    with pgserver.sqlite_store(path) as store:
        org = store.ensure_organization("Branch", code="BR").id
        child = store.create_location(name="Floor 1", organization_id=org, now=T, actor="t")
        parent = store.create_location(name="Building", organization_id=org, now=T, actor="t")
        store.update_location(child.id, parent_id=parent.id, now=T, actor="t")  # parent after
        devices = [
            store.create_device(
                serial_number=f"SN{i}", name=f"cpe-{i}", organization_id=org, now=T, actor="t"
            ).id
            for i in range(3)
        ]
        store.upsert_parameters(devices[0], [("Device.X", "1", "xsd:int", True)], now=T)
        store.set_tags(devices[0], ["zeta", "alpha"], now=T, actor="t")
        store.set_stun_credentials(devices[1], "stun-1", "pw")
        store.record_stun_binding(devices[1], "192.0.2.1", 40000, now=T)
        task = store.queue_task(devices[0], "reboot", {}, now=T, actor="t").id
        _, token = store.create_token("ops", "admin", [], now=T)
        secret = store.server_secret("url-signing")
        store.delete_device(devices[2], now=T, actor="t")  # its id is never given again
        history = [(e.action, e.time) for e in store.history(devices[0])]
    return {
        "org": org,
        "child": child.id,
        "parent": parent.id,
        "devices": devices,
        "task": task,
        "token": token,
        "secret": secret,
        "history": history,
    }


@on_postgresql
def test_migrate_to_copies_an_appliance_into_postgresql(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert pgserver.ACTIVE is not None
    made = _appliance_file(tmp_path / "acs.db")
    config = tmp_path / "acs.toml"
    config.write_text(f'[storage]\ndatabase = "{tmp_path / "acs.db"}"\n')
    url = pgserver.ACTIVE.fresh()
    assert main(["db", "migrate-to", url, "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "devices: 2" in out and "set [storage] database to that URL" in out

    with Store.open(url) as store:
        first, second, gone = made["devices"]  # type: ignore[misc]
        assert store.count_devices() == 2
        assert store.get_device(first).name == "cpe-0"  # type: ignore[union-attr]
        assert store.get_device(second).serial_number == "SN1"  # type: ignore[union-attr]
        assert [(p.path, p.value, p.writable) for p in store.get_parameters(first)] == [
            ("Device.X", "1", True)
        ]
        assert store.device_tags(first) == ["zeta", "alpha"]  # the order they were added
        binding = store.stun_credentials("stun-1")
        assert binding is not None and binding.device_id == second
        assert (binding.address, binding.port, binding.seen) == ("192.0.2.1", 40000, T)
        assert store.next_task(first, now=T).id == made["task"]  # type: ignore[union-attr]
        assert [(e.action, e.time) for e in store.history(first)] == made["history"]
        assert store.verify_token(made["token"]) is not None  # type: ignore[arg-type]
        assert store.server_secret("url-signing") == made["secret"]
        assert store.get_location(made["child"]).parent_id == made["parent"]  # type: ignore[arg-type,union-attr]
        new = store.create_device(
            serial_number="SN9",
            name="new",
            organization_id=made["org"],
            now=T,
            actor="t",  # type: ignore[arg-type]
        )
        assert new.id > gone  # SQLite never reuses a deleted row's id; neither does the copy

    # Into a database that holds anything: refused, and nothing is written.
    assert main(["db", "migrate-to", url, "--config", str(config)]) == 2
    assert "not empty" in capsys.readouterr().err
    with Store.open(url) as store:
        assert store.count_devices() == 3


@on_postgresql
def test_a_statement_or_lock_wait_past_statement_timeout_is_unavailable_not_stuck() -> None:
    assert pgserver.ACTIVE is not None
    url = pgserver.ACTIVE.fresh()
    shown = "SHOW statement_timeout"
    with Store.open(url) as store, psycopg.connect(url, autocommit=True) as other:
        assert store.db.execute(shown).fetchone()[0] == f"{STATEMENT_TIMEOUT_MS // 1000}s"
        store.db.execute("SET statement_timeout = 100")  # ms: the test's own, short
        with pytest.raises(StorageUnavailable, match="did not answer in time"):
            store.db.execute("SELECT pg_sleep(5)")
        assert store.count_devices() == 0  # the connection goes on
        with pytest.raises(StorageUnavailable), store.transaction():  # nothing of it stays
            store.db.execute(ADD, ("undone",))
            store.db.execute("SELECT pg_sleep(5)")
        other.execute("BEGIN")
        other.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")  # held, for long
        with pytest.raises(StorageUnavailable, match="did not answer in time"):
            store.db.execute(ADD, ("waited",))
        with pytest.raises(StorageUnavailable), store.transaction():
            store.db.execute(ADD, ("waited too",))
        other.execute("COMMIT")
        with store.transaction():
            store.db.execute(ADD, ("kept",))
        assert _leases(store) == ["kept"]


@on_postgresql
def test_a_transaction_sends_its_begin_with_its_first_statement() -> None:
    assert pgserver.ACTIVE is not None
    url = pgserver.ACTIVE.fresh()
    with Store.open(url) as store, psycopg.connect(url, autocommit=True) as other:
        raw = store.db.raw
        sent: list[str] = []
        cursor = raw.cursor

        def counted() -> psycopg.Cursor:  # every statement of the store goes through one
            made = cursor()
            execute = made.execute
            made.execute = lambda query, params=None: sent.append(query) or execute(query, params)
            return made

        raw.cursor = counted
        with store.transaction():
            pass  # nothing sent at all
        assert sent == [] and not store.db.in_transaction
        with store.transaction():
            assert store.db.in_transaction
            store.db.execute(ADD, ("a",))
            # Under the write lock from the first round trip on.
            held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            assert other.execute(held).fetchone()[0] == 1  # type: ignore[index]
            store.db.execute(ADD, ("b",))
        assert [q.split(";")[0] for q in sent] == ["BEGIN", "RELEASE SAVEPOINT st", "COMMIT"]
        assert "pg_advisory_xact_lock" in sent[0] and "INSERT" in sent[0]
        assert _leases(store) == ["a", "b"]
        # A first statement refused before it is sent leaves the BEGIN owed, not skipped.
        with store.transaction():
            with pytest.raises(psycopg.ProgrammingError):
                store.db.execute(ADD, (object(),))
            store.db.execute(ADD, ("c",))
            assert other.execute(held).fetchone()[0] == 1  # type: ignore[index]
        assert _leases(store) == ["a", "b", "c"]


@on_postgresql
def test_a_write_outside_a_transaction_waits_for_the_write_lock_as_on_sqlite() -> None:
    assert pgserver.ACTIVE is not None
    url = pgserver.ACTIVE.fresh()
    with Store.open(url) as store, psycopg.connect(url, autocommit=True) as other:
        other.execute("BEGIN")
        other.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")  # another node writes
        writer = threading.Thread(
            target=store.db.execute,
            args=("INSERT INTO leases (name, holder, expires) VALUES ('a', 'x', 1)",),
        )
        writer.start()
        waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        deadline = time.monotonic() + 30
        while other.execute(waiting).fetchone()[0] == 0:  # type: ignore[index]
            assert time.monotonic() < deadline, "the write never waited for the lock"
        assert other.execute("SELECT count(*) FROM leases").fetchone()[0] == 0  # type: ignore[index]
        other.execute("COMMIT")
        writer.join(timeout=30)
        assert not writer.is_alive()
        assert other.execute("SELECT count(*) FROM leases").fetchone()[0] == 1  # type: ignore[index]
        assert not store.db.in_transaction


@on_postgresql
def test_a_dropped_connection_is_opened_again_and_a_lost_transaction_fails_whole() -> None:
    assert pgserver.ACTIVE is not None
    url = pgserver.ACTIVE.fresh()

    def drop(store: Store) -> None:  # what a server restart or failover does to it
        with psycopg.connect(url, autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", (store.db.raw.info.backend_pid,))

    with Store.open(url) as store:
        org = store.ensure_organization("Org").id
        drop(store)
        assert store.count_devices() == 0  # a read on its own: read again on a new connection
        drop(store)
        with store.transaction():  # BEGIN finds the connection gone: a new one
            store.db.execute("INSERT INTO leases (name, holder, expires) VALUES ('a', 'x', 1)")
        with pytest.raises((StoreError, psycopg.OperationalError)), store.transaction():
            store.db.execute("INSERT INTO leases (name, holder, expires) VALUES ('b', 'x', 1)")
            drop(store)
            store.db.execute("INSERT INTO leases (name, holder, expires) VALUES ('c', 'x', 1)")
        assert not store.db.in_transaction
        names = [r[0] for r in store.db.execute("SELECT name FROM leases ORDER BY name")]
        assert names == ["a"]  # nothing of the lost transaction
        assert store.ensure_organization("Org").id == org


# --- the database server out of reach ------------------------------------------------------


@contextmanager
def out_of_reach(store: Store) -> Iterator[None]:
    """The store's database refuses connections and its connection is dropped (what a
    PostgreSQL restart or a failover looks like from the ACS), until the block ends."""
    url = store.db.url
    name = url.split("@/", 1)[1].split("?", 1)[0]
    assert pgserver.ACTIVE is not None
    pgserver.ACTIVE.cluster.admin(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
    try:
        with psycopg.connect(pgserver.ACTIVE.url("postgres"), autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", (store.db.raw.info.backend_pid,))
        yield
    finally:
        pgserver.ACTIVE.cluster.admin(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")


@on_postgresql
def test_the_api_answers_503_while_the_database_is_out_of_reach_then_recovers(
    harness: ApiHarness,
) -> None:
    token = harness.token()
    assert harness.call("GET", "/api/v1/inventory_device/", token=token).status == 200
    with out_of_reach(harness.store):
        reply = harness.call("GET", "/api/v1/inventory_device/", token=token)
        assert reply.status == 503, reply.raw
        assert reply.header("retry-after") == str(STORAGE_UNAVAILABLE_RETRY_AFTER)
        assert "database cannot be reached" in reply.json["detail"]
    assert harness.call("GET", "/api/v1/inventory_device/", token=token).status == 200


@pytest.mark.skipif(pgserver.ACTIVE is None, reason="PostgreSQL pass only")
class CwmpOutOfReach(CwmpResourceCase):
    async def test_an_inform_is_answered_503_while_the_database_is_out_of_reach(self) -> None:
        self.provisioned_device()
        with out_of_reach(self.store):
            reply = await self.request(wire(make_inform()))
            self.assertEqual(reply.code, 503)
            self.assertEqual(reply.header("retry-after"), str(STORAGE_UNAVAILABLE_RETRY_AFTER))
        self.flushLoggedErrors()
        await self.start_session()  # the same CPE, once the database is back


@on_postgresql
def test_db_status_reads_a_postgresql_database_and_says_when_it_is_newer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert pgserver.ACTIVE is not None
    url = pgserver.ACTIVE.fresh().replace("acs@", "acs:s3cret@")
    now = time.time()
    with Store.open(url) as store:
        store.register_node("box-1-aaaaaa", "http://127.0.0.1:9001", now=now - 60)
    config = tmp_path / "acs.toml"
    config.write_text(f'[storage]\ndatabase = "{url}"\n')
    assert main(["db", "status", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    status = json.loads(out)
    assert "s3cret" not in out and status["database"].startswith("postgresql://acs:***@/")
    assert status["schema_version"] == status["program_schema_version"] == len(MIGRATIONS)
    assert status["schema"] == "current" and status["mode"] is None and status["bytes"] > 0
    assert [n["name"] for n in status["nodes"]] == ["box-1-aaaaaa"]

    with Store.open(url) as store:
        store.db.execute(
            "INSERT INTO schema_version (version, description) VALUES (?, 'future')",
            (len(MIGRATIONS) + 1,),
        )
    assert main(["db", "status", "--config", str(config)]) == 1
    assert "newer acs" in capsys.readouterr().err
    assert main(["db", "backup", "copy.db", "--config", str(config)]) == 2
    assert "pg_dump" in capsys.readouterr().err


# --- units of work in the engine's pool ------------------------------------------------------

# A serialization failure as the server raises it (what a lost SERIALIZABLE transaction,
# or CockroachDB under contention, answers).
LOSE = "DO $$ BEGIN RAISE EXCEPTION 'lost' USING ERRCODE = 'serialization_failure'; END $$"
ADD = "INSERT INTO leases (name, holder, expires) VALUES (?, 'x', 1)"


def _leases(store: Store) -> list[str]:
    return [r[0] for r in store.db.execute("SELECT name FROM leases ORDER BY name")]


@pytest.mark.skipif(pgserver.ACTIVE is None, reason="PostgreSQL pass only")
class PooledUnits(unittest.TestCase):
    """`Store.run` on PostgreSQL with the pool started: off the reactor thread, each thread
    on its own connection, run again after a serialization failure."""

    def setUp(self) -> None:
        self.store = Store.open(":memory:")
        self.addCleanup(self.store.close)
        self.store.start_pool(REACTOR, 3)

    async def test_units_run_in_threads_of_their_own_with_their_own_connections(self) -> None:
        self.assertFalse(self.store.runs_inline)
        reactor_pid = self.store.db.raw.info.backend_pid
        started = threading.Barrier(3, timeout=30)

        def look() -> tuple[str, int, int]:
            started.wait()  # all three at once: three threads, none the reactor's
            count = self.store.count_devices()
            return threading.current_thread().name, self.store.db.raw.info.backend_pid, count

        looked = await defer.gatherResults([self.store.read(look) for _ in range(3)])
        threads = {thread for thread, _, _ in looked}
        self.assertEqual(len(threads), 3)
        self.assertNotIn(threading.current_thread().name, threads)
        pids = {pid for _, pid, _ in looked}
        self.assertEqual(len(pids), 3)
        self.assertNotIn(reactor_pid, pids)

        # Writing units take the write lock one after another, as on SQLite.
        def add(name: str) -> str:
            self.store.db.execute(ADD, (name,))
            return threading.current_thread().name

        added = await defer.gatherResults([self.store.run(add, n) for n in ("a", "b", "c")])
        self.assertTrue(set(added) <= threads)
        self.assertEqual(_leases(self.store), ["a", "b", "c"])

    async def test_a_unit_that_loses_to_another_runs_again_and_commits_once(self) -> None:
        tries: list[int] = []

        def unit() -> str:
            tries.append(1)
            self.store.db.execute(ADD, (f"try{len(tries)}",))
            if len(tries) < 3:
                self.store.db.execute(LOSE)
            return "done"

        self.assertEqual(await self.store.run(unit), "done")
        self.assertEqual(len(tries), 3)
        self.assertEqual(self.store.reruns, 2)
        self.assertEqual(_leases(self.store), ["try3"])  # the lost attempts left nothing

    async def test_a_unit_not_to_run_again_fails_whole_at_its_first_loss(self) -> None:
        def unit() -> None:
            self.store.db.execute(ADD, ("once",))
            self.store.db.execute(LOSE)

        with self.assertRaises(psycopg.errors.SerializationFailure):
            await self.store.run(unit, rerun=False)
        self.assertEqual(self.store.reruns, 0)
        self.assertEqual(_leases(self.store), [])

    async def test_one_that_keeps_losing_gives_up_after_the_last_rerun(self) -> None:
        def unit() -> None:
            self.store.db.execute(LOSE)

        with self.assertRaises(psycopg.errors.SerializationFailure):
            await self.store.run(unit)
        self.assertEqual(self.store.reruns, RERUNS)

    async def test_finished_tasks_are_told_on_the_reactor_thread_once_committed(self) -> None:
        org = self.store.ensure_organization("Org").id
        device = self.store.create_device(
            serial_number="SN1", name="SN1", organization_id=org, now=T, actor="test"
        )
        task_id = self.store.queue_task(device.id, "reboot", {}, now=T, actor="test").id
        told: list[tuple[int, str, str]] = []

        def listener(finished: int) -> None:
            row = self.store.get_task(finished)  # the reactor's connection sees the commit
            assert row is not None
            told.append((finished, row.state, threading.current_thread().name))

        self.store.task_finished.append(listener)

        def finish() -> None:
            self.store.start_task(task_id, now=T)
            self.store.complete_task(task_id, now=T)

        await self.store.run(finish)
        self.assertEqual(told, [(task_id, "done", threading.current_thread().name)])

        def fails() -> None:
            self.store.cancel_task(
                self.store.queue_task(device.id, "reboot", {}, now=T, actor="t").id,
                now=T,
                actor="t",
            )
            raise RuntimeError("undone")

        with self.assertRaises(RuntimeError):
            await self.store.run(fails)
        self.assertEqual(len(told), 1)  # nothing finished: the unit was undone

    async def test_after_commit_is_made_on_the_reactor_once_committed_even_if_nobody_waits(
        self,
    ) -> None:
        told: defer.Deferred[tuple[list[str], str]] = defer.Deferred()
        started: defer.Deferred[None] = defer.Deferred()
        go_on = threading.Event()

        def note() -> None:  # what the reactor's connection sees, and where
            told.callback((_leases(self.store), threading.current_thread().name))

        def unit() -> None:
            self.store.db.execute(ADD, ("kept",))
            self.store.after_commit(note)
            REACTOR.callFromThread(started.callback, None)
            go_on.wait(30)

        waiting = self.store.run(unit)
        await started  # the unit is under way in the pool
        waiting.cancel()  # its caller went away (an API client hung up)
        with self.assertRaises(defer.CancelledError):
            await waiting
        go_on.set()
        self.assertEqual(await told, (["kept"], threading.current_thread().name))

        def undone() -> None:
            self.store.after_commit(note)
            raise RuntimeError("undone")

        with self.assertRaises(RuntimeError):
            await self.store.run(undone)  # nothing told: note would fire `told` twice

    async def test_a_periodic_jobs_work_runs_in_the_pool_and_wakes_on_the_reactor(
        self,
    ) -> None:
        org = self.store.ensure_organization("Org").id
        device = self.store.create_device(
            serial_number="SN1", name="SN1", organization_id=org, now=T, actor="test"
        )
        self.store.queue_task(device.id, "reboot", {}, now=T, actor="test", scheduled_at=T + 1)
        clock = Clock()
        clock.advance(T + 2)
        looked: list[str] = []
        due = self.store.tasks_coming_due

        def spy(**window: float | None) -> list[tuple[int, int]]:
            looked.append(threading.current_thread().name)
            return due(**window)

        self.store.tasks_coming_due = spy  # type: ignore[method-assign]
        woken: defer.Deferred[tuple[int, str]] = defer.Deferred()

        def wake(device_id: int) -> defer.Deferred[None]:
            woken.callback((device_id, threading.current_thread().name))
            return defer.succeed(None)

        scheduler = Scheduler(self.store, clock, wake=wake)
        scheduler.startService()
        here = threading.current_thread().name
        self.assertEqual(await woken, (device.id, here))
        await scheduler.stopService()
        self.assertEqual(len(looked), 1)
        self.assertNotEqual(looked[0], here)

    async def test_a_job_lease_is_taken_by_a_unit_of_the_pool(self) -> None:
        mine = JobLease(self.store, "node-a", "job", 60)
        theirs = JobLease(self.store, "node-b", "job", 60)
        self.assertTrue(await mine.later(T))
        self.assertFalse(await theirs.later(T + 1))  # held, and node-a is no process here
        self.assertTrue(await theirs.later(T + 61))  # expired: taken over
        self.assertEqual(self.store.lease_holder("job", now=T + 62), "node-b")


@pytest.mark.skipif(pgserver.ACTIVE is None, reason="PostgreSQL pass only")
class ApiHandlersInThePool(ApplianceWithFleet):
    """The appliance's API handlers are units of work: on PostgreSQL they run in the store's
    pool, and what must follow their commit (waking the device) is done on the reactor."""

    async def test_handlers_run_off_the_reactor_and_wake_the_device_once_committed(
        self,
    ) -> None:
        await self.start_appliance(self.tempdir())
        store = self.appliance.store
        self.assertFalse(store.runs_inline)
        org = store.ensure_organization("Org").id
        device = store.create_device(
            serial_number="SN1", name="SN1", organization_id=org, now=T, actor="test"
        )
        looked_up: list[str] = []
        get_device = store.get_device

        def spy(device_id: int) -> Device | None:
            looked_up.append(threading.current_thread().name)
            return get_device(device_id)

        store.get_device = spy  # type: ignore[method-assign]
        woken: defer.Deferred[tuple[int, list[str], str]] = defer.Deferred()

        def wake(device_id: int) -> defer.Deferred[None]:
            queued = [t.kind for t in store.tasks_for_device(device_id)]  # reactor's connection
            woken.callback((device_id, queued, threading.current_thread().name))
            return defer.succeed(None)

        self.appliance.tasks.set_wake(wake)
        here = threading.current_thread().name
        code, _ = await self.api("GET", f"/inventory_device/{device.id}/")
        self.assertEqual(code, 200)
        self.assertEqual(len(looked_up), 1)
        self.assertNotEqual(looked_up[0], here)
        code, body = await self.api(
            "POST", f"/inventory_device/{device.id}/tasks/", {"kind": "reboot"}
        )
        self.assertEqual(code, 202, body)
        self.assertEqual(await bounded(woken), (device.id, ["reboot"], here))
        self.assertEqual(len(set(looked_up) - {here}), len(set(looked_up)))  # never the reactor
