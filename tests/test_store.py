"""Behaviour of the storage layer (acs.store): devices, informs, liveness, parameters, tasks,
history, tokens, transactions and migrations. Times are plain numbers driven by the tests."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import FrozenInstanceError, asdict
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import formatEvent, globalLogPublisher

from acs.store import (
    DOWN,
    UP,
    Conflict,
    Device,
    DeviceFilter,
    InformRecord,
    NotFound,
    SchemaError,
    Store,
    StoreError,
    codec,
)
from acs.store.migrations import MIGRATIONS, migrate, sql

T0 = 1_700_000_000.0


@pytest.fixture
def org_id(store: Store) -> int:
    return store.ensure_organization("Default").id


def make_device(store: Store, org_id: int, serial: str = "SN1", **fields: Any) -> Device:
    return store.create_device(
        serial_number=serial,
        name=f"dev-{serial}",
        organization_id=org_id,
        now=T0,
        actor="admin",
        **fields,
    )


def inform(serial: str = "SN1", *events: str, **overrides: Any) -> InformRecord:
    values: dict[str, Any] = {
        "manufacturer": "Acme",
        "oui": "001122",
        "product_class": "Router",
        "serial_number": serial,
        "software_version": "1.0",
        "hardware_version": "hw1",
        "connection_request_url": "http://127.0.0.1:7548/cr",
        "data_model_root": "Device.",
        "address": "127.0.0.1",
        "event_codes": events or ("2 PERIODIC",),
    }
    values.update(overrides)
    return InformRecord(**values)


def actions(store: Store, device_id: int | None) -> list[str]:
    return [h.action for h in reversed(store.history(device_id))]


# --- lifecycle, migrations, transactions -----------------------------------------------


@pytest.mark.sqlite_only
def test_open_creates_parent_dirs_and_turns_on_wal_and_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "var" / "sub" / "acs.db"
    s = Store.open(path)
    try:
        assert path.exists()
        assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert s.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert s.db.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    finally:
        s.close()


def test_migrations_are_idempotent_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "acs.db"
    s = Store.open(path)
    org = s.ensure_organization("Default")
    make_device(s, org.id)
    s.close()
    s = Store.open(path)
    try:
        versions = [r[0] for r in s.db.execute("SELECT version FROM schema_version")]
        assert versions == list(range(1, len(MIGRATIONS) + 1))
        assert s.count_devices() == 1
    finally:
        s.close()


@pytest.mark.sqlite_only
def test_database_from_a_newer_program_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "acs.db"
    Store.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_version VALUES (999, 'future')")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaError, match="newer"):
        Store.open(path)


@pytest.mark.sqlite_only
def test_unopenable_database_gives_a_clear_error(tmp_path: Path) -> None:
    not_a_db = tmp_path / "junk.db"
    not_a_db.write_bytes(b"this is not an sqlite file" * 100)
    not_a_db.chmod(0o600)
    with pytest.raises(StoreError, match="cannot open database"):
        Store.open(not_a_db)
    with pytest.raises(StoreError, match="cannot open database"):
        Store.open(tmp_path)  # a directory


def test_failing_migration_leaves_schema_at_previous_version() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    steps = [
        ("one", sql("CREATE TABLE a (x INTEGER)")),
        ("two", sql("CREATE TABLE b (x INTEGER); CREATE TABLE broken (")),
    ]
    with pytest.raises(sqlite3.Error):
        migrate(conn, steps)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "a" in tables and "b" not in tables
    assert [r[0] for r in conn.execute("SELECT version FROM schema_version")] == [1]


def test_transaction_rolls_back_everything_on_exception(store: Store, org_id: int) -> None:
    device = make_device(store, org_id)
    with pytest.raises(RuntimeError), store.transaction():
        store.update_device(device.id, now=T0 + 1, actor="a", name="renamed")
        store.queue_task(device.id, "reboot", {}, now=T0 + 1, actor="a")
        raise RuntimeError("boom")
    assert store.get_device(device.id) == device
    assert store.tasks_for_device(device.id) == []
    assert actions(store, device.id) == ["created"]


def test_nested_transaction_failure_rolls_back_only_the_inner_part(
    store: Store, org_id: int
) -> None:
    device = make_device(store, org_id)
    with store.transaction():
        store.update_device(device.id, now=T0 + 1, actor="a", name="outer")
        with pytest.raises(Conflict), store.transaction():
            store.update_device(device.id, now=T0 + 1, actor="a", description="inner")
            make_device(store, org_id, "SN1")  # duplicate -> Conflict
    after = store.get_device(device.id)
    assert after is not None
    assert after.name == "outer"
    assert after.description is None


def test_after_commit_waits_for_the_commit_and_is_dropped_with_a_rollback(
    store: Store, org_id: int
) -> None:
    device = make_device(store, org_id)
    calls: list[tuple[str, str | None]] = []

    def seen(label: str) -> None:  # what the store holds when the call is made
        row = store.get_device(device.id)
        calls.append((label, row.name if row is not None else None))

    store.after_commit(seen, "outside")  # no transaction: at once
    assert calls == [("outside", "dev-SN1")]
    with store.transaction():
        store.update_device(device.id, now=T0 + 1, actor="a", name="committed")
        store.after_commit(seen, "outer")
        with pytest.raises(Conflict), store.transaction():
            store.after_commit(seen, "undone savepoint")
            make_device(store, org_id, "SN1")  # duplicate -> Conflict
        with store.transaction():
            store.after_commit(seen, "kept savepoint")
        assert calls == [("outside", "dev-SN1")]  # nothing before the commit
    assert calls[1:] == [("outer", "committed"), ("kept savepoint", "committed")]
    with pytest.raises(RuntimeError), store.transaction():
        store.after_commit(seen, "rolled back")
        raise RuntimeError("boom")
    assert [label for label, _ in calls] == ["outside", "outer", "kept savepoint"]


def test_a_failing_after_commit_call_is_logged_and_the_commit_stands(
    store: Store, org_id: int
) -> None:
    device = make_device(store, org_id)
    calls: list[int] = []
    logged: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        logged.append(formatEvent(event) or "")

    publisher: Any = globalLogPublisher  # Any: ILogObserver is a zope interface
    publisher.addObserver(observe)

    def broken() -> None:
        raise RuntimeError("listener bug")

    try:
        with store.transaction():
            store.update_device(device.id, now=T0 + 1, actor="a", name="kept")
            store.after_commit(broken)
            store.after_commit(calls.append, 1)  # the next call is still made
    finally:
        publisher.removeObserver(observe)
    assert calls == [1]
    after = store.get_device(device.id)
    assert after is not None and after.name == "kept"
    assert "after commit: broken failed" in logged


def test_conflicting_create_writes_nothing(store: Store, org_id: int) -> None:
    make_device(store, org_id)
    with pytest.raises(Conflict):
        make_device(store, org_id, "SN1")
    assert store.count_devices() == 1
    assert store.count_history(None) == 0


# --- organizations ---------------------------------------------------------------------


def test_ensure_organization_gets_or_creates_by_name(store: Store) -> None:
    a = store.ensure_organization("Acme")
    assert store.ensure_organization("Acme") == a
    assert store.ensure_organization("Other").id != a.id
    assert store.get_organization(a.id) == a
    assert store.get_organization(9999) is None
    with pytest.raises(ValueError):
        store.ensure_organization("  ")


# --- devices ---------------------------------------------------------------------------


def test_new_device_is_down_provisioning_with_uuid_and_created_history(
    store: Store, org_id: int
) -> None:
    device = make_device(store, org_id, serial_number_alt="ALT1", description="lab")
    assert device.status == DOWN
    assert device.status_change == T0
    assert device.operational_status == "provisioning"
    assert device.provisioned is False
    assert uuid.UUID(device.uuid).version == 4
    assert device.update_frequency == 300
    assert device.serial_number_alt == "ALT1"
    assert device.description == "lab"
    assert device.created == device.last_change == T0
    assert store.get_device(device.id) == device
    [entry] = store.history(device.id)
    assert (entry.action, entry.actor) == ("created", "admin")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"serial": "A"}, {"serial": "A"}),
        ({"serial": "A"}, {"serial": "B", "serial_number_alt": "A"}),
        ({"serial": "A", "serial_number_alt": "X"}, {"serial": "X"}),
        ({"serial": "A", "serial_number_alt": "X"}, {"serial": "B", "serial_number_alt": "X"}),
    ],
    ids=["serial=serial", "alt=serial", "serial=alt", "alt=alt"],
)
def test_create_device_conflicts_on_any_serial_collision(
    store: Store, org_id: int, first: dict[str, Any], second: dict[str, Any]
) -> None:
    make_device(store, org_id, **first)
    with pytest.raises(Conflict, match="already used"):
        make_device(store, org_id, **second)
    assert store.count_devices() == 1


def test_update_device_conflicts_on_serial_collision_but_not_with_itself(
    store: Store, org_id: int
) -> None:
    a = make_device(store, org_id, "A", serial_number_alt="A2")
    b = make_device(store, org_id, "B")
    with pytest.raises(Conflict):
        store.update_device(b.id, now=T0, actor="x", serial_number_alt="A")
    with pytest.raises(Conflict):
        store.update_device(b.id, now=T0, actor="x", serial_number="A2")
    renamed = store.update_device(a.id, now=T0 + 5, actor="x", serial_number="A", name="n")
    assert renamed.name == "n"
    assert store.get_device(b.id) == b


def test_serial_rules_hold_even_for_raw_sql(store: Store, org_id: int) -> None:
    make_device(store, org_id, "A")
    with pytest.raises(store.IntegrityError):
        store.db.execute(
            "INSERT INTO devices (uuid, name, serial_number, serial_number_alt, organization_id,"
            " status_change, created, last_change) VALUES ('u', 'n', 'B', 'A', ?, 0, 0, 0)",
            (org_id,),
        )


def test_serial_rules_hold_for_raw_updates_too(store: Store, org_id: int) -> None:
    a = make_device(store, org_id, "A")
    b = make_device(store, org_id, "B")
    with pytest.raises(store.IntegrityError):
        store.db.execute("UPDATE devices SET serial_number_alt = 'A' WHERE id = ?", (b.id,))
    store.db.execute("UPDATE devices SET serial_number_alt = 'A' WHERE id = ?", (a.id,))  # its own
    assert store.get_device(b.id) == b


def analyzed_fleet(store: Store, org_id: int, size: int) -> None:
    """``size`` devices with no alt serial, type, location or firmware image, and ANALYZE's
    statistics of them (which `Store.close` keeps up with PRAGMA optimize)."""
    store.bulk_seed_devices(
        ({"serial_number": f"S{i}", "name": "n", "organization_id": org_id} for i in range(size)),
        now=T0,
        actor="t",
    )
    store.db.execute("ANALYZE")


def vm_steps(store: Store, work: Callable[[], object]) -> int:
    """SQLite's virtual machine steps of ``work``, in tens."""
    steps = 0

    def step() -> int:
        nonlocal steps
        steps += 1
        return 0

    store.db.set_progress_handler(step, 10)  # called every 10 steps
    try:
        work()
    finally:
        store.db.set_progress_handler(None, 0)
    return steps


@pytest.mark.sqlite_only  # counts SQLite's virtual machine steps
def test_serial_checks_stay_on_their_indexes_once_analyzed(store: Store, org_id: int) -> None:
    """ANALYZE counts the alt serial, NULL on nearly every device, as one value of them
    all; a conflict check with an OR of the two serial columns was then planned as a scan of
    every device (10 ms per new CPE at 100,000). Registering a device, changing a serial
    and the store's own check must not visit the rows of the others."""
    others = 3_000
    analyzed_fleet(store, org_id, others)

    def work() -> None:
        device = make_device(store, org_id, "NEW")
        store.update_device(device.id, now=T0, actor="t", serial_number_alt="NEW-ALT")
        with pytest.raises(Conflict):
            store.update_device(device.id, now=T0, actor="t", serial_number_alt="S7")

    # A scan of the others takes several steps per row, so 10 x steps would exceed them.
    assert vm_steps(store, work) * 10 < others


@pytest.mark.sqlite_only  # counts SQLite's virtual machine steps
def test_reference_lookups_stay_on_their_indexes_once_analyzed(store: Store, org_id: int) -> None:
    """The devices of a type are looked up by index, though nearly every device has none:
    ANALYZE (of a fleet before it had types) counted those NULLs as one value of the whole
    fleet, and a device type's update_frequency reaching its devices was planned as a scan
    of them all (migration 24)."""
    others = 3_000
    analyzed_fleet(store, org_id, others)
    kind = store.create_device_type(name="t", now=T0, actor="t")
    typed = [make_device(store, org_id, f"T{i}", type_id=kind.id).id for i in range(2)]

    def work() -> None:
        store.update_device_type(kind.id, now=T0, actor="t", update_frequency=600)
        assert {d.id for d in store.devices_page(DeviceFilter(type_id=kind.id))[1]} == set(typed)

    assert vm_steps(store, work) * 10 < others
    assert {store.get_device(d).update_frequency for d in typed} == {600}  # type: ignore[union-attr]


def test_create_device_rejects_bad_input_with_clear_errors(store: Store, org_id: int) -> None:
    with pytest.raises(ValueError, match="unknown or read-only"):
        make_device(store, org_id, colour="red")
    with pytest.raises(ValueError, match="read-only"):
        make_device(store, org_id, status=UP)
    with pytest.raises(ValueError, match="update_frequency"):
        make_device(store, org_id, update_frequency="often")
    with pytest.raises(ValueError, match="update_frequency"):
        make_device(store, org_id, update_frequency=0)
    with pytest.raises(ValueError, match="organization_id"):
        store.create_device(serial_number="Z", name="z", organization_id=999, now=T0, actor="a")
    with pytest.raises(ValueError, match="serial_number"):
        make_device(store, org_id, "")
    with pytest.raises(ValueError, match="debug"):
        make_device(store, org_id, debug="yes")
    with pytest.raises(ValueError, match="operational_status"):
        make_device(store, org_id, operational_status="broken")
    assert store.count_devices() == 0


def test_empty_alt_serial_means_none_and_does_not_collide(store: Store, org_id: int) -> None:
    assert make_device(store, org_id, "A", serial_number_alt="").serial_number_alt is None
    assert make_device(store, org_id, "B", serial_number_alt="").serial_number_alt is None


def test_find_device_by_serial_prefers_serial_then_alt(store: Store, org_id: int) -> None:
    a = make_device(store, org_id, "A", serial_number_alt="OLD-A")
    b = make_device(store, org_id, "B")
    assert store.find_device_by_serial("A") == a
    assert store.find_device_by_serial("OLD-A") == a
    assert store.find_device_by_serial("B") == b
    assert store.find_device_by_serial("a") is None  # case-sensitive
    assert store.find_device_by_serial("nope") is None


def test_update_device_records_changed_keys_without_password_values(
    store: Store, org_id: int
) -> None:
    device = make_device(store, org_id, password="old-secret")
    updated = store.update_device(
        device.id,
        now=T0 + 10,
        actor="ops",
        name="renamed",
        password="new-secret",
        connection_request_password="cr-secret",
        provisioned=True,
        debug=False,  # unchanged: not recorded
    )
    assert updated.name == "renamed"
    assert updated.password == "new-secret"
    assert updated.provisioned is True
    assert updated.last_change == T0 + 10
    entry = store.history(device.id)[0]
    assert entry.action == "updated"
    assert entry.actor == "ops"
    assert entry.detail["fields"] == [
        "connection_request_password",
        "name",
        "password",
        "provisioned",
    ]
    assert "secret" not in repr(entry.detail)


def test_update_device_without_changes_writes_nothing(store: Store, org_id: int) -> None:
    device = make_device(store, org_id)
    assert store.update_device(device.id, now=T0 + 10, actor="x", name=device.name) == device
    assert actions(store, device.id) == ["created"]


def test_update_device_status_is_recorded_as_a_transition(store: Store, org_id: int) -> None:
    device = make_device(store, org_id)
    updated = store.update_device(device.id, now=T0 + 10, actor="ops", status="Up")
    assert updated.status == UP
    assert updated.status_change == T0 + 10
    assert actions(store, device.id) == ["created", "status"]


def test_update_unknown_device_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.update_device(42, now=T0, actor="x", name="n")


def test_delete_device_cascades_and_keeps_a_global_audit_entry(store: Store, org_id: int) -> None:
    device = make_device(store, org_id)
    other = make_device(store, org_id, "OTHER")
    store.upsert_parameters(device.id, [("Device.X", "1", "xsd:int", True)], now=T0)
    store.upsert_parameters(other.id, [("Device.X", "2", "xsd:int", True)], now=T0)
    store.queue_task(device.id, "reboot", {}, now=T0, actor="a")
    store.save_operational_record(
        device.id, operational_status="active", data={}, history=[], updated_by="a", now=T0
    )
    store.add_session_transcript(device.id, "<soap/>", started=T0)

    store.delete_device(device.id, now=T0 + 1, actor="admin")

    assert store.get_device(device.id) is None
    assert store.count_history(device.id) == 0
    for table in ("tasks", "parameters", "operational_records", "cwmp_sessions"):
        count = store.db.execute(
            f"SELECT count(*) FROM {table} WHERE device_id = ?", (device.id,)
        ).fetchone()[0]
        assert count == 0, table
    assert store.get_parameter(other.id, "Device.X") is not None
    [audit] = store.history(None)
    assert audit.action == "device_deleted"
    assert audit.device_id is None
    assert audit.actor == "admin"
    assert audit.detail["serial_number"] == "SN1"
    with pytest.raises(NotFound):
        store.delete_device(device.id, now=T0, actor="admin")


def test_devices_page_filters_counts_and_pages_by_id(store: Store, org_id: int) -> None:
    other_org = store.ensure_organization("Other").id
    kind = store.create_device_type(now=1.0, actor="t", name="t").id
    a = make_device(store, org_id, "A", type_id=kind)
    b = make_device(store, org_id, "B")
    c = make_device(store, other_org, "C")
    store.set_status(b.id, UP, now=T0 + 100)
    assert store.devices_page(limit=2) == (3, [a, store.get_device(b.id)])
    assert store.devices_page(limit=2, offset=2) == (3, [c])
    assert store.devices_page(DeviceFilter(organization_ids=(other_org,))) == (1, [c])
    assert store.devices_page(DeviceFilter(organization_ids=())) == (0, [])
    assert store.devices_page(DeviceFilter(type_id=kind))[1] == [a]
    assert [d.id for d in store.devices_page(DeviceFilter(status=DOWN))[1]] == [a.id, c.id]
    assert [d.id for d in store.devices_page(DeviceFilter(status_change_from=T0 + 100))[1]] == [
        b.id
    ]
    assert store.count_devices(DeviceFilter(organization_ids=(org_id,), status=UP)) == 1
    with pytest.raises(ValueError, match="limit"):
        store.devices_page(limit=-1)
    with pytest.raises(ValueError, match="status"):
        store.devices_page(DeviceFilter(status="maybe"))


def test_devices_page_at_any_offset_matches_filtering_every_device(
    store: Store, org_id: int
) -> None:
    # Deep offsets seek through an index instead of OFFSET over rows: each filter (and their
    # combinations, several organizations, a status_change range) must page exactly like
    # filtering and slicing the whole inventory in id order.
    orgs = [org_id, store.ensure_organization("B").id, store.ensure_organization("C").id]
    kinds = [store.create_device_type(now=1.0, actor="t", name=f"t{i}").id for i in range(2)]
    store.bulk_seed_devices(
        (
            {
                "serial_number": f"S{i:03d}",
                "name": f"S{i:03d}",
                "organization_id": orgs[i % 3],
                "type_id": kinds[i % 2] if i % 5 else None,
                "status": UP if i % 4 == 0 else DOWN,
                "status_change": T0 + (i % 7) * 10,
            }
            for i in range(60)
        ),
        now=T0,
        actor="test",
    )
    every = store.devices_page(limit=100)[1]
    filters = [
        DeviceFilter(),
        DeviceFilter(organization_ids=(orgs[1],)),
        DeviceFilter(organization_ids=(orgs[0], orgs[2])),
        DeviceFilter(type_id=kinds[1]),
        DeviceFilter(status=UP),
        DeviceFilter(status_change_from=T0 + 30),
        DeviceFilter(organization_ids=(orgs[0],), type_id=kinds[0], status=DOWN),
        DeviceFilter(organization_ids=(orgs[1], orgs[2]), status_change_from=T0 + 20),
    ]
    for f in filters:
        expected = [
            d
            for d in every
            if (f.organization_ids is None or d.organization_id in f.organization_ids)
            and (f.type_id is None or d.type_id == f.type_id)
            and (f.status is None or d.status == f.status)
            and (f.status_change_from is None or d.status_change >= f.status_change_from)
        ]
        assert store.count_devices(f) == len(expected), f
        for offset in (0, 1, 3, len(expected) - 1, len(expected), len(expected) + 5):
            for limit in (0, 1, 4):
                page = store.devices_page(f, limit=limit, offset=max(offset, 0))
                assert page == (len(expected), expected[max(offset, 0) :][:limit]), (f, offset)


def test_batch_lookups_return_rows_of_the_given_ids_only(store: Store, org_id: int) -> None:
    a = make_device(store, org_id, "A")
    b = make_device(store, org_id, "B")
    kind = store.create_device_type(now=1.0, actor="t", name="t")
    place = store.create_location(now=1.0, actor="t", name="Here", organization_id=org_id)
    store.queue_task(a.id, "reboot", {}, now=T0, actor="t")
    store.queue_task(a.id, "sync", {}, now=T0 + 1, actor="t", front=True)
    store.set_desired_settings(b.id, {"Device.X": "1", "Device.Y": "2"}, now=T0 + 5, actor="t")
    assert store.device_types_by_id([kind.id, kind.id, 999]) == {kind.id: kind}
    assert store.locations_by_id([place.id]) == {place.id: place}
    assert store.organizations_by_id([org_id]) == {org_id: store.get_organization(org_id)}
    assert store.device_types_by_id([]) == {}
    tasks = store.tasks_for_devices([a.id, b.id])
    assert tasks == {a.id: store.tasks_for_device(a.id)}  # queue order, b has none
    assert [t.kind for t in store.tasks_for_devices([a.id], kinds=["reboot"])[a.id]] == ["reboot"]
    assert store.tasks_for_devices([a.id], kinds=[]) == {}
    assert store.unconfirmed_settings_summary([a.id, b.id]) == {b.id: (2, T0 + 5)}
    assert store.unconfirmed_settings_summary([]) == {}


@pytest.mark.sqlite_only
def test_device_list_indexes_exist_after_migration(store: Store) -> None:
    names = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"devices_by_status", "devices_by_status_change", "devices_list"} <= names


# --- informs and status ----------------------------------------------------------------


def test_record_inform_fills_device_and_marks_it_up_once(store: Store, org_id: int) -> None:
    device = make_device(store, org_id)
    after = store.record_inform(device.id, inform("SN1", "1 BOOT"), now=T0 + 100)
    assert after.manufacturer == "Acme"
    assert after.oui == "001122"
    assert after.product_class == "Router"
    assert after.unique_identifier == "001122-Router-SN1"
    assert (after.software_version, after.hardware_version) == ("1.0", "hw1")
    assert after.connection_request_url == "http://127.0.0.1:7548/cr"
    assert after.data_model_root == "Device."
    assert after.address == "127.0.0.1"
    assert after.last_connection == after.last_contact == T0 + 100
    assert after.status == UP
    assert after.status_change == T0 + 100
    assert store.get_device(device.id) == after

    again = store.record_inform(device.id, inform("SN1", "2 PERIODIC"), now=T0 + 400)
    assert again.status_change == T0 + 100
    assert again.last_contact == T0 + 400
    assert actions(store, device.id) == ["created", "status", "inform", "inform"]
    informs = [h for h in store.history(device.id) if h.action == "inform"]
    assert informs[0].detail == {"events": ["2 PERIODIC"]}
    status = next(h for h in store.history(device.id) if h.action == "status")
    assert status.detail == {"from": DOWN, "to": UP, "reason": "inform"}


def test_record_inform_without_product_class_and_without_optional_values(
    store: Store, org_id: int
) -> None:
    device = make_device(store, org_id)
    store.record_inform(device.id, inform(), now=T0)
    after = store.record_inform(
        device.id,
        inform(
            product_class="",
            connection_request_url=None,
            software_version=None,
            address=None,
            event_codes=("6 CONNECTION REQUEST", "M Reboot"),
        ),
        now=T0 + 1,
    )
    assert after.unique_identifier == "001122-SN1"
    assert after.connection_request_url == "http://127.0.0.1:7548/cr"  # kept: not given
    assert after.software_version == "1.0"
    assert after.address == "127.0.0.1"
    assert store.history(device.id)[0].detail == {"events": ["6 CONNECTION REQUEST", "M Reboot"]}


def test_bootstrap_inform_clears_cached_parameters_and_provisioning(
    store: Store, org_id: int
) -> None:
    device = make_device(store, org_id)
    store.upsert_parameters(device.id, [("Device.A", "1", "xsd:string", True)], now=T0)
    store.update_device(device.id, now=T0, actor="acs", provisioned=True)

    kept = store.record_inform(device.id, inform("SN1", "1 BOOT"), now=T0 + 1)
    assert kept.provisioned is True
    assert len(store.get_parameters(device.id)) == 1

    wiped = store.record_inform(device.id, inform("SN1", "0 BOOTSTRAP", "1 BOOT"), now=T0 + 2)
    assert wiped.provisioned is False
    assert store.get_parameters(device.id) == []
    assert store.history(device.id)[0].detail == {"events": ["0 BOOTSTRAP", "1 BOOT"]}


def test_record_inform_for_unknown_device_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.record_inform(7, inform(), now=T0)


def test_set_status_records_each_transition_once(store: Store, org_id: int) -> None:
    device = make_device(store, org_id)
    assert store.set_status(device.id, UP, now=T0 + 10, reason="connection request") is True
    assert store.set_status(device.id, UP, now=T0 + 20) is False
    up = store.get_device(device.id)
    assert up is not None
    assert up.status_change == T0 + 10
    assert up.last_contact == T0 + 20  # Up is contact even without a transition
    assert store.set_status(device.id, DOWN, now=T0 + 30, actor="liveness") is True
    assert store.set_status(device.id, DOWN, now=T0 + 40) is False
    down = store.get_device(device.id)
    assert down is not None
    assert (down.status, down.status_change, down.last_contact) == (DOWN, T0 + 30, T0 + 20)
    transitions = [h for h in reversed(store.history(device.id)) if h.action == "status"]
    assert [(h.detail["from"], h.detail["to"], h.actor) for h in transitions] == [
        (DOWN, UP, "acs"),
        (UP, DOWN, "liveness"),
    ]
    assert transitions[0].detail["reason"] == "connection request"


def test_set_status_rejects_unknown_values_and_devices(store: Store, org_id: int) -> None:
    device = make_device(store, org_id)
    with pytest.raises(ValueError, match="status"):
        store.set_status(device.id, "sideways", now=T0)
    with pytest.raises(NotFound):
        store.set_status(999, UP, now=T0)


def test_devices_due_down_at_the_exact_window_edge(store: Store, org_id: int) -> None:
    fast = make_device(store, org_id, "FAST", update_frequency=30)
    slow = make_device(store, org_id, "SLOW")  # 300 s
    make_device(store, org_id, "NEVER")  # Down: never due
    store.record_inform(fast.id, inform("FAST"), now=T0)
    store.record_inform(slow.id, inform("SLOW"), now=T0)
    fast_edge = T0 + 2 * 30 + 60
    slow_edge = T0 + 2 * 300 + 60
    assert store.devices_due_down(fast_edge) == []
    assert store.devices_due_down(fast_edge + 0.001) == [fast.id]
    assert store.devices_due_down(slow_edge) == [fast.id]
    assert store.devices_due_down(slow_edge + 0.001) == [fast.id, slow.id]
    store.set_status(fast.id, DOWN, now=slow_edge)
    assert store.devices_due_down(slow_edge + 0.001) == [slow.id]


def test_devices_due_down_uses_status_change_without_contact(store: Store, org_id: int) -> None:
    device = make_device(store, org_id)
    store.update_device(device.id, now=T0 + 5, actor="ops", status=UP)  # no last_contact
    assert store.devices_due_down(T0 + 5 + 660) == []
    assert store.devices_due_down(T0 + 5 + 660.5) == [device.id]


def query_plan(store: Store, call: Callable[[], object]) -> str:
    """The query plans of the statements `call` runs (captured as executed, values bound), so
    the test checks the store's real queries rather than a copy of their text."""
    conn = store.db
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        call()
    finally:
        conn.set_trace_callback(None)
    return " ".join(
        str(row[3])
        for sql in statements
        if sql.lstrip().upper().startswith("SELECT")
        for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")
    )


@pytest.mark.sqlite_only
def test_devices_due_down_query_uses_the_liveness_index(store: Store) -> None:
    plan = query_plan(store, lambda: store.devices_due_down(T0))
    assert "USING INDEX devices_liveness" in plan


@pytest.mark.sqlite_only
def test_tasks_coming_due_query_uses_the_scheduled_and_retry_indexes(store: Store) -> None:
    plan = query_plan(store, lambda: store.tasks_coming_due(after=T0, until=T0 + 5))
    assert "USING INDEX tasks_scheduled" in plan
    assert "USING INDEX tasks_retry" in plan


# --- parameters ------------------------------------------------------------------------


def test_upsert_parameters_none_leaves_existing_values(store: Store, org_id: int) -> None:
    device = make_device(store, org_id)
    store.upsert_parameters(
        device.id,
        [("Device.A.Name", None, None, True), ("Device.A.Enable", None, None, False)],
        now=T0,
    )
    store.upsert_parameters(device.id, [("Device.A.Name", "x", "xsd:string", None)], now=T0 + 1)
    name = store.get_parameter(device.id, "Device.A.Name")
    assert name is not None
    assert (name.value, name.type, name.writable, name.updated) == ("x", "xsd:string", True, T0 + 1)
    enable = store.get_parameter(device.id, "Device.A.Enable")
    assert enable is not None
    assert (enable.value, enable.writable) == (None, False)
    assert store.get_parameter(device.id, "Device.Missing") is None


def test_get_parameters_is_ordered_and_prefix_filtered(store: Store, org_id: int) -> None:
    device = make_device(store, org_id)
    paths = ["Device.B.x", "Device.A.2", "Device.A.1", "Device.AB.c", "Device.A/"]
    store.upsert_parameters(device.id, [(p, "v", "xsd:string", None) for p in paths], now=T0)
    assert [p.path for p in store.get_parameters(device.id)] == sorted(paths)
    assert [p.path for p in store.get_parameters(device.id, "Device.A.")] == [
        "Device.A.1",
        "Device.A.2",
    ]
    assert [p.path for p in store.get_parameters(device.id, "Device.A")] == [
        "Device.A.1",
        "Device.A.2",
        "Device.A/",
        "Device.AB.c",
    ]


def test_delete_parameters_by_prefix_and_all(store: Store, org_id: int) -> None:
    device = make_device(store, org_id)
    store.upsert_parameters(
        device.id,
        [(p, "v", None, None) for p in ("Device.A.1", "Device.A.2", "Device.B.1")],
        now=T0,
    )
    assert store.delete_parameters(device.id, "Device.A.") == 2
    assert [p.path for p in store.get_parameters(device.id)] == ["Device.B.1"]
    assert store.delete_parameters(device.id) == 1
    assert store.get_parameters(device.id) == []


def test_upsert_parameters_rejects_bad_input_atomically(store: Store, org_id: int) -> None:
    device = make_device(store, org_id)
    with pytest.raises(ValueError, match="path"):
        store.upsert_parameters(
            device.id, [("Device.A", "1", None, None), ("", "x", None, None)], now=T0
        )
    with pytest.raises(ValueError, match="writable"):
        store.upsert_parameters(device.id, [("Device.A", "1", None, "yes")], now=T0)  # type: ignore[list-item]
    assert store.get_parameters(device.id) == []
    with pytest.raises(NotFound):
        store.upsert_parameters(999, [("Device.A", "1", None, None)], now=T0)


# --- tasks -----------------------------------------------------------------------------


def test_tasks_run_fifo_and_front_goes_ahead(store: Store, org_id: int) -> None:
    device = make_device(store, org_id)
    a = store.queue_task(device.id, "set", {"n": 1}, now=T0, actor="ops")
    b = store.queue_task(device.id, "set", {"n": 2}, now=T0, actor="ops")
    f1 = store.queue_task(device.id, "provision", {}, now=T0, actor="acs", front=True)
    f2 = store.queue_task(device.id, "provision", {}, now=T0, actor="acs", front=True)
    assert [t.id for t in store.tasks_for_device(device.id)] == [f1.id, f2.id, a.id, b.id]
    order = []
    while (task := store.next_task(device.id, now=T0)) is not None:
        order.append(task.id)
        store.start_task(task.id, now=T0)
        store.complete_task(task.id, now=T0)
    assert order == [f1.id, f2.id, a.id, b.id]
    assert a.args == {"n": 1}
    assert a.state == "pending"


def test_scheduled_task_is_not_returned_early(store: Store, org_id: int) -> None:
    device = make_device(store, org_id)
    later = store.queue_task(device.id, "reboot", {}, now=T0, actor="ops", scheduled_at=T0 + 60)
    assert store.next_task(device.id, now=T0 + 59.9) is None
    now_task = store.queue_task(device.id, "sync", {}, now=T0, actor="ops")
    assert store.next_task(device.id, now=T0 + 59.9) == now_task  # not blocked by `later`
    assert store.next_task(device.id, now=T0 + 60) == later


def test_failed_task_with_retry_waits_then_runs_again(store: Store, org_id: int) -> None:
    device = make_device(store, org_id)
    task = store.queue_task(device.id, "set", {}, now=T0, actor="ops")
    store.start_task(task.id, now=T0)
    retried = store.fail_task(
        task.id, now=T0 + 1, fault_code=9002, fault_string="Internal error", retry_at=T0 + 120
    )
    assert retried.state == "pending"
    assert retried.next_attempt_at == T0 + 120
    assert (retried.fault_code, retried.fault_string) == (9002, "Internal error")
    assert retried.finished is None
    assert store.next_task(device.id, now=T0 + 119) is None
    again = store.next_task(device.id, now=T0 + 120)
    assert again is not None and again.id == task.id
    assert store.start_task(task.id, now=T0 + 120).attempts == 2
    assert actions(store, device.id)[-1] == "cwmp_fault"
    assert "task_failed" not in actions(store, device.id)


def test_failed_task_without_retry_is_final(store: Store, org_id: int) -> None:
    device = make_device(store, org_id)
    task = store.queue_task(device.id, "set", {}, now=T0, actor="ops")
    store.start_task(task.id, now=T0)
    failed = store.fail_task(
        task.id, now=T0 + 1, fault_code=9005, fault_string="Invalid parameter name", retry_at=None
    )
    assert failed.state == "failed"
    assert failed.finished == T0 + 1
    assert store.next_task(device.id, now=T0 + 1000) is None
    assert actions(store, device.id)[-2:] == ["cwmp_fault", "task_failed"]
    fault = store.history(device.id)[1]
    assert fault.detail["code"] == 9005
    assert fault.detail["string"] == "Invalid parameter name"
    with pytest.raises(Conflict):
        store.start_task(task.id, now=T0 + 2)


def test_failure_without_fault_code_records_no_cwmp_fault(store: Store, org_id: int) -> None:
    device = make_device(store, org_id)
    task = store.queue_task(device.id, "download", {}, now=T0, actor="ops")
    store.fail_task(task.id, now=T0, fault_code=None, fault_string="timeout", retry_at=None)
    assert "cwmp_fault" not in actions(store, device.id)
    assert actions(store, device.id)[-1] == "task_failed"


def test_complete_task_stores_result_and_history(store: Store, org_id: int) -> None:
    device = make_device(store, org_id)
    task = store.queue_task(device.id, "sync", {}, now=T0, actor="ops")
    started = store.start_task(task.id, now=T0 + 1)
    assert (started.state, started.started, started.attempts) == ("in_progress", T0 + 1, 1)
    done = store.complete_task(task.id, now=T0 + 2, result={"count": 3})
    assert (done.state, done.finished, done.result) == ("done", T0 + 2, {"count": 3})
    assert store.get_task(task.id) == done
    assert actions(store, device.id) == ["created", "task_queued", "task_done"]
    with pytest.raises(Conflict):
        store.complete_task(task.id, now=T0 + 3)


def test_cancel_only_from_pending(store: Store, org_id: int) -> None:
    device = make_device(store, org_id)
    pending = store.queue_task(device.id, "reboot", {}, now=T0, actor="ops")
    running = store.queue_task(device.id, "sync", {}, now=T0, actor="ops")
    store.start_task(running.id, now=T0)
    cancelled = store.cancel_task(pending.id, now=T0 + 1, actor="ops")
    assert (cancelled.state, cancelled.finished) == ("cancelled", T0 + 1)
    with pytest.raises(Conflict, match="in_progress"):
        store.cancel_task(running.id, now=T0 + 1, actor="ops")
    with pytest.raises(Conflict, match="cancelled"):
        store.cancel_task(pending.id, now=T0 + 1, actor="ops")
    with pytest.raises(NotFound):
        store.cancel_task(12345, now=T0, actor="ops")
    assert store.history(device.id)[0].action == "task_cancelled"


def test_task_calls_on_unknown_ids_are_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.start_task(1, now=T0)
    with pytest.raises(NotFound):
        store.complete_task(1, now=T0)
    with pytest.raises(NotFound):
        store.fail_task(1, now=T0, fault_code=None, fault_string=None, retry_at=None)
    with pytest.raises(NotFound):
        store.queue_task(1, "reboot", {}, now=T0, actor="x")
    assert store.get_task(1) is None


def test_requeue_in_progress_only_the_given_kinds(store: Store, org_id: int) -> None:
    device = make_device(store, org_id)
    sync = store.queue_task(device.id, "sync", {}, now=T0, actor="ops")
    reboot = store.queue_task(device.id, "reboot", {}, now=T0, actor="ops")
    store.start_task(sync.id, now=T0)
    store.start_task(reboot.id, now=T0)
    assert store.requeue_in_progress(device.id, now=T0 + 5, kinds=["sync", "set"]) == 1
    assert store.tasks_for_device(device.id, ["pending"]) == [store.get_task(sync.id)]
    assert [t.id for t in store.tasks_for_device(device.id, ["in_progress"])] == [reboot.id]
    assert store.requeue_in_progress(device.id, now=T0 + 5) == 1
    assert store.tasks_for_device(device.id, ["in_progress"]) == []


def test_queue_task_rejects_bad_args_and_keeps_them_out_of_history(
    store: Store, org_id: int
) -> None:
    device = make_device(store, org_id)
    with pytest.raises(ValueError, match="JSON"):
        store.queue_task(device.id, "set", {"x": object()}, now=T0, actor="ops")
    with pytest.raises(ValueError, match="kind"):
        store.queue_task(device.id, "", {}, now=T0, actor="ops")
    with pytest.raises(ValueError, match="state"):
        store.tasks_for_device(device.id, ["sleeping"])
    store.queue_task(device.id, "set", {"Device.X.Password": "hunter2"}, now=T0, actor="ops")
    assert "hunter2" not in repr(store.history(device.id))


def test_tasks_survive_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "acs.db"
    s = Store.open(path)
    org = s.ensure_organization("Default")
    device = make_device(s, org.id)
    first = s.queue_task(device.id, "reboot", {"key": "k"}, now=T0, actor="ops")
    s.queue_task(device.id, "sync", {}, now=T0, actor="ops")
    s.close()
    s = Store.open(path)
    try:
        assert [t.kind for t in s.tasks_for_device(device.id)] == ["reboot", "sync"]
        assert s.next_task(device.id, now=T0) == first
        # Ids keep growing after a restart (AUTOINCREMENT): never reused.
        assert s.queue_task(device.id, "x", {}, now=T0, actor="ops").id > first.id + 1
    finally:
        s.close()


# --- history ---------------------------------------------------------------------------


def test_history_is_newest_first_with_paging_and_global_log(store: Store, org_id: int) -> None:
    device = make_device(store, org_id)
    for i in range(5):
        store.add_history(device.id, "note", {"i": i}, now=T0 + i, actor="ops")
    store.add_history(None, "login", {"who": "x"}, now=T0)
    assert store.count_history(device.id) == 6  # + created
    page = store.history(device.id, limit=2, offset=1)
    assert [h.detail["i"] for h in page] == [3, 2]
    assert [h.action for h in store.history(None)] == ["login"]
    assert store.count_history(None) == 1
    with pytest.raises(NotFound):
        store.add_history(999, "note", {}, now=T0)
    with pytest.raises(ValueError):
        store.add_history(device.id, "note", "not a dict", now=T0)  # type: ignore[arg-type]


# --- API tokens ------------------------------------------------------------------------


def test_tokens_are_hashed_at_rest_and_verify(tmp_path: Path) -> None:
    path = tmp_path / "acs.db"
    s = Store.open(path)
    org = s.ensure_organization("Default")
    row, plaintext = s.create_token("ci", "operator", [org.id], now=T0)
    assert len(plaintext) >= 40
    assert (row.name, row.role, row.organization_ids, row.revoked) == (
        "ci",
        "operator",
        (1,),
        False,
    )
    assert s.verify_token(plaintext) == row
    assert s.verify_token(plaintext + "x") is None
    assert s.verify_token("") is None
    s.close()
    for file in tmp_path.iterdir():
        assert plaintext.encode() not in file.read_bytes(), file


def test_revoked_token_no_longer_verifies(store: Store) -> None:
    row, plaintext = store.create_token("admin", "admin", [], now=T0)
    other, other_plain = store.create_token("view", "viewer", [], now=T0)
    assert store.revoke_token(row.id) is True
    assert store.revoke_token(row.id) is False
    assert store.revoke_token(999) is False
    assert store.verify_token(plaintext) is None
    assert store.verify_token(other_plain) == other
    assert [(t.name, t.revoked) for t in store.list_tokens()] == [("admin", True), ("view", False)]


def test_create_token_validates_role_and_organizations(store: Store) -> None:
    with pytest.raises(ValueError, match="role"):
        store.create_token("x", "root", [], now=T0)
    with pytest.raises(ValueError, match="organization"):
        store.create_token("x", "viewer", [42], now=T0)
    assert store.list_tokens() == []


# --- supporting tables -----------------------------------------------------------------


def test_find_device_type_by_manufacturer_and_product_class(store: Store) -> None:
    t = store.create_device_type(
        now=1.0,
        actor="t",
        name="Acme Router",
        manufacturer="Acme",
        product_class="Router",
        default_settings={"Device.X": "1"},
        update_frequency=600,
    )
    assert store.find_device_type("Acme", "Router") == t.id
    assert store.find_device_type("Acme", "Switch") is None
    assert store.get_device_type(t.id) == t
    assert t.default_settings == {"Device.X": "1"}


def test_catalog_creations_are_audited_by_the_store(store: Store, org_id: int) -> None:
    kind = store.create_device_type(name="Box", now=T0, actor="ann")
    place = store.create_location(name="HQ", organization_id=org_id, now=T0, actor="bob")
    assert store.location_named(org_id, "HQ", now=T0, actor="cid") == place.id
    branch = store.location_named(org_id, "Branch", now=T0, actor="dee")
    log = [(e.action, e.actor, e.detail) for e in store.history(None, limit=3)]
    assert log == [
        (
            "location_created",
            "dee",
            {"location_id": branch, "name": "Branch", "organization_id": org_id},
        ),
        (
            "location_created",
            "bob",
            {"location_id": place.id, "name": "HQ", "organization_id": org_id},
        ),
        ("device_type_created", "ann", {"device_type_id": kind.id, "name": "Box"}),
    ]


def test_locations_firmware_records_and_transcripts(store: Store, org_id: int) -> None:
    loc = store.create_location(now=1.0, actor="t", name="HQ", organization_id=org_id)
    assert store.find_location(org_id, "HQ") == loc
    assert store.find_location(org_id, "Branch") is None
    image = store.create_firmware_image(
        name="fw", version="2.0", size=10, sha256="ab" * 32, filename="fw.bin", now=T0
    )
    assert store.get_firmware_image(image.id) == image
    device = make_device(store, org_id, location_id=loc.id, firmware_image_id=image.id)
    assert (device.location_id, device.firmware_image_id) == (loc.id, image.id)

    blank = store.get_operational_record(device.id)
    assert (blank.operational_status, blank.data, blank.history) == ("provisioning", {}, [])
    saved = store.save_operational_record(
        device.id,
        operational_status="maintenance",
        data={"notes": "n"},
        history=[{"to_status": "maintenance"}],
        updated_by="ops",
        now=T0 + 1,
    )
    assert store.get_operational_record(device.id) == saved
    after = store.get_device(device.id)
    assert after is not None and after.operational_status == "maintenance"
    with pytest.raises(ValueError):
        store.save_operational_record(
            device.id, operational_status="gone", data={}, history=[], updated_by=None, now=T0
        )

    first = store.add_session_transcript(device.id, "<a/>", started=T0)
    second = store.add_session_transcript(device.id, "<b/>", started=T0 + 1)
    assert store.session_transcripts(device.id) == [second, first]
    assert store.count_session_transcripts(device.id) == 2


# --- the Inform hot path ----------------------------------------------------------------


def test_inform_work_says_which_inform_checks_can_find_anything(store: Store, org_id: int) -> None:
    device = make_device(store, org_id)
    assert store.inform_work(device.id) == (False, False, False, False)

    task = store.queue_task(device.id, "reboot", {}, now=T0, actor="t")
    assert store.inform_work(device.id).active_tasks
    store.start_task(task.id, now=T0)
    assert store.inform_work(device.id).active_tasks  # in_progress counts too
    store.complete_task(task.id, now=T0)
    assert not store.inform_work(device.id).active_tasks

    fw = store.queue_task(device.id, "firmware_update", {"firmware_image": 1}, now=T0, actor="t")
    store.complete_task(fw.id, now=T0, result={"version_check": "ok"})
    assert store.inform_work(device.id) == (False, False, False, False)
    fw = store.queue_task(device.id, "firmware_update", {"firmware_image": 1}, now=T0, actor="t")
    store.complete_task(fw.id, now=T0, result={"version_check": "pending"})
    assert store.inform_work(device.id) == (False, True, False, False)

    store.set_desired_settings(device.id, {"Device.X.Y": "1"}, now=T0, actor="t")
    assert store.inform_work(device.id).settings


def test_inform_work_counts_device_type_defaults_as_settings(store: Store, org_id: int) -> None:
    empty = store.create_device_type(now=1.0, actor="t", name="empty", default_settings={})
    typed = store.create_device_type(
        now=1.0, actor="t", name="typed", default_settings={"Device.X.Y": "1"}
    )
    a = make_device(store, org_id, "A", type_id=empty.id)
    b = make_device(store, org_id, "B", type_id=typed.id)
    assert not store.inform_work(a.id).settings
    assert store.inform_work(b.id).settings
    assert not store.inform_work(a.id + b.id + 100).settings  # unknown device: nothing


def test_record_inform_in_a_rolled_back_transaction_leaves_no_trace(
    store: Store, org_id: int
) -> None:
    device = make_device(store, org_id)
    before = store.count_history(device.id)
    with pytest.raises(RuntimeError), store.transaction():
        store.record_inform(device.id, inform("SN1", "0 BOOTSTRAP"), now=T0 + 1)
        raise RuntimeError("the session failed after its Inform")
    assert store.get_device(device.id) == device
    assert store.count_history(device.id) == before


def test_record_inform_of_unknown_device_in_a_transaction_writes_nothing(
    store: Store, org_id: int
) -> None:
    device = make_device(store, org_id)
    before = store.count_history(device.id)
    with store.transaction():
        with pytest.raises(NotFound):
            store.record_inform(device.id + 1, inform(), now=T0 + 1)
        store.record_inform(device.id, inform(), now=T0 + 2)
    assert store.get_device(device.id).status == UP  # type: ignore[union-attr]
    assert store.count_history(device.id) == before + 2  # status + inform
    assert store.count_history(device.id + 1) == 0


def test_requeue_in_progress_joins_the_callers_transaction(store: Store, org_id: int) -> None:
    device = make_device(store, org_id)
    task = store.start_task(
        store.queue_task(device.id, "refresh", {}, now=T0, actor="t").id, now=T0
    )
    with pytest.raises(RuntimeError), store.transaction():
        assert store.requeue_in_progress(device.id, now=T0) == 1
        raise RuntimeError("rolled back")
    assert store.get_task(task.id).state == "in_progress"  # type: ignore[union-attr]
    assert store.requeue_in_progress(device.id, now=T0) == 1
    assert store.get_task(task.id).state == "pending"  # type: ignore[union-attr]


def test_device_rows_convert_to_equal_devices_from_rows_and_mappings(
    store: Store, org_id: int
) -> None:
    device = store.record_inform(make_device(store, org_id).id, inform(), now=T0 + 3)
    rebuilt = Device(**asdict(device))
    assert rebuilt == device and hash(rebuilt) == hash(device) and repr(rebuilt) == repr(device)
    assert codec.device(asdict(device)) == device
    assert isinstance(device.created, float) and isinstance(device.provisioned, bool)
    with pytest.raises(FrozenInstanceError):
        device.name = "x"  # type: ignore[misc]


def test_create_device_conflict_inside_a_transaction_names_the_holder_and_keeps_the_rest(
    store: Store, org_id: int
) -> None:
    first = make_device(store, org_id, "A", serial_number_alt="A2")
    with store.transaction():
        make_device(store, org_id, "B")
        with pytest.raises(Conflict, match=f"'A2' is already used by device {first.id}"):
            make_device(store, org_id, "A2")
    assert store.count_devices() == 2


# --- update_frequency: the device's own, else its type's -----------------------------------


def test_a_device_without_its_own_update_frequency_takes_its_types(
    store: Store, org_id: int
) -> None:
    slow = store.create_device_type(
        now=1.0, actor="t", name="slow", update_frequency=900, default_settings={}
    )
    plain = store.create_device_type(now=1.0, actor="t", name="plain", default_settings={})
    assert make_device(store, org_id, "A", type_id=slow.id).update_frequency == 900
    assert make_device(store, org_id, "B", type_id=plain.id).update_frequency == 300
    assert make_device(store, org_id, "C").update_frequency == 300
    own = make_device(store, org_id, "D", type_id=slow.id, update_frequency=60)
    assert own.update_frequency == 60


def test_a_type_change_reaches_the_devices_without_their_own(store: Store, org_id: int) -> None:
    dt = store.create_device_type(now=1.0, actor="t", name="t", default_settings={})
    inherited = make_device(store, org_id, "A", type_id=dt.id)
    own = make_device(store, org_id, "B", type_id=dt.id, update_frequency=120)
    other = make_device(store, org_id, "C")
    store.update_device_type(dt.id, now=T0 + 1, actor="admin", update_frequency=900)
    assert store.get_device(inherited.id).update_frequency == 900  # type: ignore[union-attr]
    assert store.get_device(own.id).update_frequency == 120  # type: ignore[union-attr]
    assert store.get_device(other.id).update_frequency == 300  # type: ignore[union-attr]
    (entry,) = [h for h in store.history(inherited.id) if h.action == "updated"]
    assert entry.detail["changes"] == {"update_frequency": {"from": 300, "to": 900}}
    assert entry.actor == "admin"
    assert not [h for h in store.history(own.id) if h.action == "updated"]
    # Clearing the type's value brings its devices back to the default.
    store.update_device_type(dt.id, now=T0 + 2, actor="admin", update_frequency=None)
    assert store.get_device(inherited.id).update_frequency == 300  # type: ignore[union-attr]


def test_setting_a_value_makes_it_the_devices_own_and_none_inherits_again(
    store: Store, org_id: int
) -> None:
    dt = store.create_device_type(
        now=1.0, actor="t", name="t", update_frequency=900, default_settings={}
    )
    device = make_device(store, org_id, "A", type_id=dt.id)
    store.update_device(device.id, now=T0, actor="admin", update_frequency=600)
    store.update_device_type(dt.id, now=T0, actor="admin", update_frequency=1200)
    assert store.get_device(device.id).update_frequency == 600  # type: ignore[union-attr]
    store.update_device(device.id, now=T0, actor="admin", update_frequency=None)
    assert store.get_device(device.id).update_frequency == 1200  # type: ignore[union-attr]


def test_a_new_type_gives_its_frequency_unless_the_device_has_its_own(
    store: Store, org_id: int
) -> None:
    fast = store.create_device_type(
        now=1.0, actor="t", name="fast", update_frequency=60, default_settings={}
    )
    slow = store.create_device_type(
        now=1.0, actor="t", name="slow", update_frequency=900, default_settings={}
    )
    inherited = make_device(store, org_id, "A", type_id=fast.id)
    own = make_device(store, org_id, "B", type_id=fast.id, update_frequency=120)
    for device in (inherited, own):
        store.update_device(device.id, now=T0, actor="admin", type_id=slow.id)
    assert store.get_device(inherited.id).update_frequency == 900  # type: ignore[union-attr]
    assert store.get_device(own.id).update_frequency == 120  # type: ignore[union-attr]


def test_interval_drift_is_a_provisioned_cpe_informing_at_another_interval(
    store: Store, org_id: int
) -> None:
    device = make_device(store, org_id, "A", update_frequency=600)
    path = "Device.ManagementServer.PeriodicInformInterval"
    store.upsert_parameters(device.id, [(path, "300", "xsd:unsignedInt", True)], now=T0)
    assert not store.inform_work(device.id).interval_drift  # not provisioned yet
    store.update_device(device.id, now=T0, actor="acs", provisioned=True)
    assert store.inform_work(device.id).interval_drift
    store.upsert_parameters(device.id, [(path, "600", "xsd:unsignedInt", True)], now=T0)
    assert not store.inform_work(device.id).interval_drift
    store.update_device(device.id, now=T0, actor="admin", update_frequency=900)
    assert store.inform_work(device.id).interval_drift
    # A desired setting of that parameter governs it instead.
    store.set_desired_settings(device.id, {path: "600"}, now=T0, actor="t")
    assert not store.inform_work(device.id).interval_drift
