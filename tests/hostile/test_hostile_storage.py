"""Hostile storage (issue 9). Secrets at rest: the database, its WAL and the files directory
are the owner's only, since they hold device passwords, connection-request passwords, the
URL-signing key and configuration backups. Full storage: a write refused for lack of space is
a 503 with a clear message on every listener, loses nothing already stored, and shows on
/healthz until space is freed; the WAL is cut back after checkpoints."""

from __future__ import annotations

import errno
import sqlite3
import stat
from pathlib import Path
from typing import Any, cast

import metricscheck
import psycopg
import pytest
from apiharness import T0, ApiHarness
from cwmpharness import make_inform, wire
from treq.testing import StubTreq
from twisted.internet import task

import acs.files
import acs.store.db
from acs.config import Config, ConfigError, RetentionConfig, StorageConfig
from acs.cwmp import rpc
from acs.files import FileStorage
from acs.maintenance import DAY, INTERVAL, StorageMaintenance
from acs.service import open_store
from acs.store import Store
from acs.store.db import JOURNAL_SIZE_LIMIT
from acs.store.health import is_storage_full
from acs.tasks import task_key


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.sqlite_only
def test_database_wal_and_files_directory_are_owner_only(tmp_path: Path) -> None:
    db, files = tmp_path / "var" / "acs.db", tmp_path / "var" / "files"
    store = open_store(Config(storage=StorageConfig(database=str(db), files=str(files))))
    try:
        store.ensure_organization("Default")  # a write, so the WAL exists
        assert mode(db) == 0o600
        assert mode(Path(f"{db}-wal")) == 0o600
        assert mode(files) == 0o700
    finally:
        store.close()


@pytest.mark.sqlite_only
def test_an_existing_database_others_can_read_is_refused_untouched(tmp_path: Path) -> None:
    db, files = tmp_path / "acs.db", tmp_path / "files"
    config = Config(storage=StorageConfig(database=str(db), files=str(files)))
    open_store(config).close()
    db.chmod(0o644)
    before = db.read_bytes()
    with pytest.raises(ConfigError, match=r"open to other users \(mode 0644\).*chmod 600"):
        open_store(config)
    assert (db.read_bytes(), mode(db)) == (before, 0o644)  # nothing written, nothing changed
    db.chmod(0o600)
    open_store(config).close()  # once the owner's alone, it opens


@pytest.mark.sqlite_only
def test_a_new_database_and_files_directory_are_owner_only(tmp_path: Path) -> None:
    db, files = tmp_path / "acs.db", tmp_path / "files"
    files.mkdir(mode=0o755)
    open_store(Config(storage=StorageConfig(database=str(db), files=str(files)))).close()
    assert (mode(db), mode(files)) == (0o600, 0o700)


# --- full storage (issue 9) -------------------------------------------------------------------
# SQLite's max_page_count makes a real SQLITE_FULL ("database or disk is full") without
# filling a disk; a full files directory is a write raising OSError(ENOSPC).

STORAGE_FULL = {"detail": "Storage is full; the write was not made."}
DEVICES = "/api/v1/inventory_device/"


def fill_database(store: Store) -> None:
    """Cap the file at its current size, then fill its pages up with ever smaller rows until
    not even a small row fits."""
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages}")
    for size in (4000, 500, 60, 0):
        for _ in range(10_000):
            try:
                store.add_history(None, "filler", {"pad": "x" * size}, now=T0)
            except sqlite3.OperationalError as exc:
                assert is_storage_full(exc), exc
                break
        else:
            raise AssertionError("the database never filled up")


def free_space(store: Store) -> None:
    store.db.execute("PRAGMA max_page_count = 1073741823")


def integrity(store: Store) -> str:
    return str(store.db.execute("PRAGMA integrity_check").fetchone()[0])


def stub(resource: Any, method: str, url: str, **kw: Any) -> tuple[int, Any, bytes]:
    client: Any = StubTreq(resource)  # Any: treq.testing is untyped
    out: list[Any] = []
    client.request(method, url, **kw).addCallback(
        lambda r: client.content(r).addCallback(lambda body: out.append((r.code, r.headers, body)))
    )
    client.flush()
    assert out, f"{method} {url}: no response"
    return cast(tuple[int, Any, bytes], out[0])


def refused_metric(harness: ApiHarness, token: str, storage: str) -> int:
    text = harness.call("GET", "/metrics", token=token).raw.decode()
    assert metricscheck.types(text)["acs_storage_writes_refused"] == "counter"
    refused = metricscheck.value(text, "acs_storage_writes_refused_total", storage=storage)
    assert refused is not None, text
    return int(refused)


def new_device(harness: ApiHarness, token: str, serial: str) -> Any:
    org = harness.store.ensure_organization("Default")
    body = {"name": serial, "serial_number": serial, "organization_id": org.id}
    return harness.call("POST", DEVICES, token=token, json_body=body)


@pytest.mark.sqlite_only
def test_a_full_database_is_503_and_loses_nothing_and_healthz_recovers(
    harness: ApiHarness,
) -> None:
    admin = harness.token("admin")
    before = [new_device(harness, admin, f"SN{i}") for i in range(3)]
    assert [r.status for r in before] == [201] * 3
    harness.appliance.maintenance.startService()
    fill_database(harness.store)
    refused = refused_metric(harness, admin, "database")

    reply = new_device(harness, admin, "SN-LATE")
    assert (reply.status, reply.json) == (503, STORAGE_FULL)
    assert reply.header("Retry-After") == "60"
    assert refused_metric(harness, admin, "database") == refused + 1

    # Nothing lost or half-written: the file is sound and the earlier devices are as stored.
    assert integrity(harness.store) == "ok"
    assert harness.store.find_device_by_serial("SN-LATE") is None
    for earlier in before:
        detail = harness.call("GET", f"{DEVICES}{earlier.json['id']}/", token=admin)
        assert {k: detail.json[k] for k in earlier.json} == earlier.json

    health = harness.call("GET", "/healthz")
    assert health.status == 503
    assert (health.json["status"], health.json["storage"]) == ("degraded", "full")
    assert health.json["storage_full"] == ["database"]
    assert health.json["devices"] == 3

    harness.clock.advance(INTERVAL)  # the maintenance probe: still full, still degraded
    assert harness.call("GET", "/healthz").status == 503

    free_space(harness.store)
    harness.clock.advance(INTERVAL)  # the probe's write succeeds: healthy again, by itself
    health = harness.call("GET", "/healthz")
    assert (health.status, health.json["status"], health.json["storage"]) == (200, "ok", "ok")
    assert "storage_full" not in health.json
    assert new_device(harness, admin, "SN-LATE").status == 201
    assert integrity(harness.store) == "ok"
    harness.appliance.maintenance.stopService()


@pytest.mark.sqlite_only
def test_a_successful_write_clears_the_full_state_without_waiting_for_the_probe(
    harness: ApiHarness,
) -> None:
    admin = harness.token("admin")
    fill_database(harness.store)
    assert new_device(harness, admin, "SN1").status == 503
    free_space(harness.store)
    assert harness.call("GET", "/healthz").status == 503  # nothing written since
    assert new_device(harness, admin, "SN1").status == 201
    assert harness.call("GET", "/healthz").json["status"] == "ok"


@pytest.mark.sqlite_only
def test_retention_frees_a_full_database_and_healthz_recovers_by_itself(
    harness: ApiHarness,
) -> None:
    admin = harness.token("admin")
    fill_database(harness.store)  # with history rows written at T0
    assert new_device(harness, admin, "SN1").status == 503
    harness.appliance.maintenance.startService()
    harness.clock.advance(31 * DAY)  # the filler is past [retention] history_days now
    assert harness.call("GET", "/healthz").json["status"] == "ok"
    assert new_device(harness, admin, "SN1").status == 201
    assert integrity(harness.store) == "ok"
    harness.appliance.maintenance.stopService()


@pytest.mark.sqlite_only
def test_a_full_database_answers_cwmp_503_with_retry_after_and_stores_nothing(
    harness: ApiHarness,
) -> None:
    known = harness.store.create_device(
        serial_number="KNOWN",
        name="known",
        organization_id=harness.store.ensure_organization("Default").id,
        now=T0,
        actor="test",
    )
    fill_database(harness.store)
    harness.clock.advance(60)
    for serial in ("KNOWN", "NEW-1"):
        code, headers, body = stub(
            harness.appliance.cwmp,
            "POST",
            "http://127.0.0.1:7547/",
            data=wire(make_inform(serial)),
        )
        assert code == 503, body
        assert headers.getRawHeaders("retry-after") == ["60"]
        assert b"Storage is full" in body
        assert headers.getRawHeaders("set-cookie") is None
    assert harness.appliance.cwmp.active_sessions() == 0
    assert harness.store.find_device_by_serial("NEW-1") is None
    assert harness.store.get_device(known.id) == known  # the Inform's update rolled back
    assert integrity(harness.store) == "ok"


def test_a_full_files_directory_refuses_an_upload_with_503_and_leaves_nothing(
    harness: ApiHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = harness.token("admin")
    storage = harness.appliance.storage
    harness.appliance.maintenance.startService()

    def no_space(self: Any, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(acs.files._Sink, "write", no_space)
    raw = {"Content-Type": "application/octet-stream"}
    url = "/api/v1/firmware_image/?name=fw&version=1"
    reply = harness.call("POST", url, token=admin, data=b"image", headers=raw)
    assert (reply.status, reply.json) == (503, STORAGE_FULL)
    assert list(storage.firmware_dir.iterdir()) == []  # the temporary file is gone
    assert harness.call("GET", "/api/v1/firmware_image/", token=admin).json["count"] == 0
    health = harness.call("GET", "/healthz").json
    assert (health["status"], health["storage_full"]) == ("degraded", ["files"])
    assert refused_metric(harness, admin, "files") == 1
    assert refused_metric(harness, admin, "database") == 0

    harness.clock.advance(INTERVAL)  # the probe writes the way uploads do: still full
    assert harness.call("GET", "/healthz").status == 503
    monkeypatch.undo()
    harness.clock.advance(INTERVAL)
    assert harness.call("GET", "/healthz").json["status"] == "ok"
    assert list(storage.root.glob("*.part")) == []  # the probe's file is removed too
    assert harness.call("POST", url, token=admin, data=b"image", headers=raw).status == 201
    harness.appliance.maintenance.stopService()


def test_a_full_files_directory_refuses_a_cpe_backup_with_503_and_retry_after(
    harness: ApiHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = harness.store
    device = store.create_device(
        serial_number="SN1",
        name="one",
        organization_id=store.ensure_organization("Default").id,
        now=T0,
        actor="test",
    )
    backup_task = store.queue_task(device.id, "backup", {}, now=T0, actor="test")
    store.start_task(backup_task.id, now=T0)

    def no_space(self: Any, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(acs.files._Sink, "write", no_space)
    url = harness.appliance.signer.backup_upload_url(backup_task.id)
    assert url.startswith("http://127.0.0.1:")
    code, headers, body = stub(harness.appliance.files, "PUT", url, data=b"config")
    assert (code, headers.getRawHeaders("retry-after")) == (503, ["60"])
    assert body == b"Storage is full; the file was not stored.\n"
    assert store.list_backups(device.id) == []
    assert store.get_task(backup_task.id).state == "in_progress"  # type: ignore[union-attr]
    monkeypatch.undo()
    code, _, _ = stub(harness.appliance.files, "PUT", url, data=b"config")
    assert code == 200
    assert harness.call("GET", "/healthz").json["storage"] == "ok"


@pytest.mark.sqlite_only
def test_the_wal_is_cut_back_after_the_maintenance_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert JOURNAL_SIZE_LIMIT <= 64 * 1024 * 1024
    limit = 64 * 1024
    monkeypatch.setattr(acs.store.db, "JOURNAL_SIZE_LIMIT", limit)
    db = tmp_path / "acs.db"
    store = open_store(Config(storage=StorageConfig(database=str(db), files=str(tmp_path / "f"))))
    try:
        assert store.db.execute("PRAGMA journal_size_limit").fetchone()[0] == limit
        clock = task.Clock()
        clock.advance(T0)
        job = StorageMaintenance(
            store, FileStorage(tmp_path / "f", store), clock, RetentionConfig()
        )
        wal = Path(f"{db}-wal")
        with store.transaction():  # ~2 MB: less than the automatic checkpoint's 1,000 pages
            for i in range(500):
                store.add_history(None, "big", {"pad": "x" * 4000, "i": i}, now=T0)
        assert wal.stat().st_size > 2_000_000
        job.startService()
        clock.advance(INTERVAL)
        store.add_history(None, "after", {}, now=T0)  # the WAL starts over, cut to the limit
        assert wal.stat().st_size <= limit
        job.stopService()
    finally:
        store.close()


@pytest.mark.parametrize(
    ("exc", "full"),
    [
        (sqlite3.OperationalError("database or disk is full"), None),
        (OSError(errno.ENOSPC, "No space left on device"), True),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), True),
        (OSError(errno.EIO, "Input/output error"), False),
        (sqlite3.OperationalError("database is locked"), False),
        (ValueError("x"), False),
        # PostgreSQL's disk_full, and another of its errors
        (psycopg.errors.DiskFull("could not extend file"), True),
        (psycopg.errors.UniqueViolation("duplicate key"), False),
    ],
)
def test_is_storage_full_tells_full_storage_from_other_errors(
    exc: BaseException, full: bool | None
) -> None:
    if full is None:  # a real SQLITE_FULL, with its error code
        conn = sqlite3.connect(":memory:")
        conn.execute("CREATE TABLE t (x)")
        conn.execute("PRAGMA max_page_count = 2")
        with pytest.raises(sqlite3.OperationalError) as info:
            conn.execute("INSERT INTO t VALUES (zeroblob(100000))")
        conn.close()
        exc, full = info.value, True
    assert is_storage_full(exc) is full
    try:
        try:
            raise exc
        except BaseException as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert is_storage_full(outer) is full


@pytest.mark.sqlite_only
def test_a_transfer_complete_refused_for_full_storage_is_not_acknowledged(
    harness: ApiHarness,
) -> None:
    # Acknowledged, the CPE would never report the transfer again: the task would wait for
    # transfer_timeout and fail although the transfer worked.
    store = harness.store
    device = store.create_device(
        serial_number="SN1",
        name="one",
        organization_id=store.ensure_organization("Default").id,
        now=T0,
        actor="test",
        provisioned=True,
    )
    backup = store.queue_task(device.id, "backup", {}, now=T0, actor="test")
    store.start_task(backup.id, now=T0)
    session = harness.appliance.tasks.open_session(device.id)
    report = rpc.TransferComplete(task_key(backup), rpc.FaultStruct(0, ""))
    fill_database(store)
    with pytest.raises(sqlite3.OperationalError) as info, store.transaction():
        session.on_cpe_request(report, now=T0 + 1)
    assert is_storage_full(info.value)
    assert store.get_task(backup.id).state == "in_progress"  # type: ignore[union-attr]

    free_space(store)
    with store.transaction():
        assert session.on_cpe_request(report, now=T0 + 2) == rpc.TransferCompleteResponse()
    # No backup reached the file server, so the task fails now, on the CPE's report.
    assert store.get_task(backup.id).state == "failed"  # type: ignore[union-attr]
