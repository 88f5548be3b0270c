"""Desired settings: the store API (upsert, confirm, wipe), and the configuration_update /
reconf task kinds driven through `SessionTasks` with rpc dataclasses (batching, confirmation,
per-parameter faults, coalescing, re-apply after a device factory reset).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, cast

import pytest
from factories import informed_device
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock

from acs.cwmp import rpc
from acs.store import DONE, FAILED, PENDING, Device, NotFound, Store
from acs.store.migrations import MIGRATIONS, migrate
from acs.tasks import SPV_BATCH, SessionTasks, TaskEngine, task_key

SERIAL = "SN-SET-1"
PII = "Device.ManagementServer.PeriodicInformInterval"


def make_device(store: Store, serial: str = SERIAL, *, root: str = "Device.") -> Device:
    return informed_device(store, serial, root=root, provisioned=True)


@pytest.fixture
def device(store: Store) -> Device:
    return make_device(store)


class Waker:
    def __init__(self) -> None:
        self.woken: list[int] = []

    def __call__(self, device_id: int) -> Any:
        self.woken.append(device_id)
        return None


@pytest.fixture
def waker() -> Waker:
    return Waker()


@pytest.fixture
def engine(store: Store, waker: Waker) -> TaskEngine:
    clock = Clock()
    clock.advance(10.0)
    return TaskEngine(store, cast(IReactorTime, clock), wake=waker)


def spv_sent(message: rpc.Message | None) -> rpc.SetParameterValues:
    assert isinstance(message, rpc.SetParameterValues), message
    return message


def pending_paths(store: Store, device: Device) -> list[str]:
    return [s.path for s in store.desired_settings(device.id) if not s.confirmed]


# --- schema --------------------------------------------------------------------------------


def test_migration_adds_desired_settings_table_with_cascade(store: Store, device: Device) -> None:
    assert "desired settings" in [name for name, _ in MIGRATIONS]
    store.set_desired_settings(device.id, {PII: "60"}, now=2.0, actor="op")
    store.delete_device(device.id, now=3.0, actor="op")
    assert store.db.execute("SELECT count(*) FROM desired_settings").fetchone()[0] == 0


def test_migration_from_version_one_keeps_existing_rows() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    assert migrate(conn, MIGRATIONS[:1]) == 1
    conn.execute("INSERT INTO organizations (name) VALUES ('o')")
    assert migrate(conn) == len(MIGRATIONS)
    assert conn.execute("SELECT name FROM organizations").fetchall() == [("o",)]
    assert conn.execute("SELECT count(*) FROM desired_settings").fetchone() == (0,)


# --- store API -----------------------------------------------------------------------------


def test_new_settings_are_unconfirmed_with_inferred_types(store: Store, device: Device) -> None:
    changed = store.set_desired_settings(
        device.id,
        {PII: "60", "Device.WiFi.Radio.1.Enable": "true", "Device.WiFi.SSID.1.SSID": "home"},
        now=2.0,
        actor="op",
    )
    assert changed == 3
    got = {s.path: (s.value, s.type, s.confirmed) for s in store.desired_settings(device.id)}
    assert got == {
        PII: ("60", "xsd:unsignedInt", False),
        "Device.WiFi.Radio.1.Enable": ("true", "xsd:boolean", False),
        "Device.WiFi.SSID.1.SSID": ("home", "xsd:string", False),
    }
    assert store.unconfirmed_settings_count(device.id) == 3


def test_type_comes_from_the_parameter_cache_when_known(store: Store, device: Device) -> None:
    path = "Device.WiFi.SSID.1.SSID"
    store.upsert_parameters(device.id, [(path, "old", "xsd:string", True)], now=2.0)
    store.set_desired_settings(device.id, {path: "12345"}, now=3.0, actor="op")
    (setting,) = store.desired_settings(device.id)
    assert setting.type == "xsd:string"  # digits, but the CPE said it is a string


def test_unchanged_value_stays_confirmed_and_is_not_counted(store: Store, device: Device) -> None:
    store.set_desired_settings(device.id, {PII: "60"}, now=2.0, actor="op")
    store.confirm_settings(device.id, [PII], now=3.0)
    assert store.set_desired_settings(device.id, {PII: "60"}, now=4.0, actor="op") == 0
    assert store.unconfirmed_settings_count(device.id) == 0
    assert store.set_desired_settings(device.id, {PII: "120"}, now=5.0, actor="op") == 1
    assert store.unconfirmed_settings_count(device.id) == 1
    assert store.unconfirmed_settings_summary([device.id]) == {device.id: (1, 5.0)}


def test_setting_change_is_audited_without_values(store: Store, device: Device) -> None:
    secret = "Device.WiFi.AccessPoint.1.Security.KeyPassphrase"
    store.set_desired_settings(device.id, {secret: "hunter22"}, now=2.0, actor="alice")
    entry = store.history(device.id, limit=1)[0]
    assert (entry.action, entry.actor, entry.detail) == (
        "settings_changed",
        "alice",
        {"paths": [secret]},
    )
    assert "hunter22" not in str([h.detail for h in store.history(device.id)])


@pytest.mark.parametrize(
    "bad",
    [
        {"Device.": "x"},
        {"Device.A.": "x"},
        {"Other.A": "x"},
        {"Device..A": "x"},
        {"Device.A B": "x"},
        {PII: 60},
        {PII: None},
        {"Device." + "A" * 300: "x"},
    ],
)
def test_bad_settings_are_refused_and_nothing_is_stored(
    store: Store, device: Device, bad: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):
        store.set_desired_settings(device.id, {"Device.Good": "1", **bad}, now=2.0, actor="op")
    assert store.desired_settings(device.id) == []


def test_settings_of_unknown_device_raise_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.set_desired_settings(999, {PII: "60"}, now=2.0, actor="op")
    with pytest.raises(NotFound):
        store.clear_desired_settings(999, now=2.0, actor="op")


def test_unconfirm_all_and_clear(store: Store, device: Device) -> None:
    store.set_desired_settings(device.id, {PII: "60", "Device.A": "x"}, now=2.0, actor="op")
    store.confirm_settings(device.id, [PII, "Device.A"], now=3.0)
    store.unconfirm_all_settings(device.id, now=4.0)
    assert store.unconfirmed_settings_count(device.id) == 2
    store.clear_desired_settings(device.id, now=5.0, actor="op")
    assert store.desired_settings(device.id) == []
    assert store.history(device.id, limit=1)[0].action == "settings_cleared"


def test_remove_stops_managing_a_path(store: Store, device: Device) -> None:
    store.set_desired_settings(device.id, {PII: "60", "Device.A": "x"}, now=2.0, actor="op")
    assert (
        store.remove_desired_settings(device.id, ["Device.A", "Device.B"], now=3.0, actor="o") == 1
    )
    assert [s.path for s in store.desired_settings(device.id)] == [PII]


def test_fail_task_keeps_result_when_given(store: Store, device: Device) -> None:
    t = store.queue_task(device.id, "reboot", {}, now=2.0, actor="op")
    store.start_task(t.id, now=3.0)
    failed = store.fail_task(
        t.id, now=4.0, fault_code=9003, fault_string="x", retry_at=None, result={"a": 1}
    )
    assert failed.result == {"a": 1}


# --- configuration_update ------------------------------------------------------------------


def test_configuration_update_pushes_unconfirmed_and_confirms(
    store: Store, device: Device, engine: TaskEngine
) -> None:
    store.set_desired_settings(device.id, {PII: "60", "Device.A": "x"}, now=2.0, actor="op")
    store.confirm_settings(device.id, ["Device.A"], now=2.0)
    t = engine.queue(device.id, "configuration_update", actor="op", now=3.0)
    session = SessionTasks(engine, device.id)
    spv = spv_sent(session.next_request(now=4.0))
    assert spv.parameters == (rpc.ParameterValue(PII, "60", "xsd:unsignedInt"),)
    assert spv.parameter_key == task_key(t)
    session.on_response(rpc.SetParameterValuesResponse(status=0), now=5.0)
    assert session.next_request(now=5.0) is None
    done = store.get_task(t.id)
    assert done is not None and done.state == DONE
    assert done.result == {"parameters": 1, "status": 0}
    assert store.unconfirmed_settings_count(device.id) == 0
    cached = store.get_parameter(device.id, PII)
    assert cached is not None and cached.value == "60"
    updated = store.get_device(device.id)
    assert updated is not None
    assert updated.last_configuration == 5.0
    # The liveness window follows the new periodic inform interval.
    assert updated.update_frequency == 60


def test_status_one_counts_as_applied(store: Store, device: Device, engine: TaskEngine) -> None:
    store.set_desired_settings(device.id, {"Device.A": "x"}, now=2.0, actor="op")
    t = engine.queue(device.id, "configuration_update", actor="op", now=3.0)
    session = SessionTasks(engine, device.id)
    spv_sent(session.next_request(now=4.0))
    session.on_response(rpc.SetParameterValuesResponse(status=1), now=5.0)
    assert store.get_task(t.id).state == DONE  # type: ignore[union-attr]
    assert store.unconfirmed_settings_count(device.id) == 0


def test_nothing_pending_completes_without_an_rpc(
    store: Store, device: Device, engine: TaskEngine
) -> None:
    t = engine.queue(device.id, "configuration_update", actor="op", now=3.0)
    session = SessionTasks(engine, device.id)
    assert session.next_request(now=4.0) is None
    done = store.get_task(t.id)
    assert done is not None and done.state == DONE
    assert done.result == {"parameters": 0, "status": 0}


def test_many_settings_are_sent_in_batches(
    store: Store, device: Device, engine: TaskEngine
) -> None:
    values = {f"Device.X.{i:03d}.Name": f"v{i}" for i in range(SPV_BATCH + 5)}
    store.set_desired_settings(device.id, values, now=2.0, actor="op")
    t = engine.queue(device.id, "configuration_update", actor="op", now=3.0)
    session = SessionTasks(engine, device.id)
    first = spv_sent(session.next_request(now=4.0))
    assert len(first.parameters) == SPV_BATCH
    session.on_response(rpc.SetParameterValuesResponse(status=0), now=5.0)
    # The first batch is confirmed before the second is even sent.
    assert store.unconfirmed_settings_count(device.id) == 5
    second = spv_sent(session.next_request(now=5.0))
    assert len(second.parameters) == 5
    session.on_response(rpc.SetParameterValuesResponse(status=0), now=6.0)
    assert session.next_request(now=6.0) is None
    assert store.get_task(t.id).result == {"parameters": SPV_BATCH + 5, "status": 0}  # type: ignore[union-attr]
    assert store.unconfirmed_settings_count(device.id) == 0


def test_value_changed_while_spv_in_flight_stays_pending(
    store: Store, device: Device, engine: TaskEngine
) -> None:
    store.set_desired_settings(device.id, {PII: "60"}, now=2.0, actor="op")
    engine.queue(device.id, "configuration_update", actor="op", now=3.0)
    session = SessionTasks(engine, device.id)
    spv_sent(session.next_request(now=4.0))
    store.set_desired_settings(device.id, {PII: "90"}, now=4.5, actor="op")
    second = engine.queue(device.id, "configuration_update", actor="op", now=4.5)
    session.on_response(rpc.SetParameterValuesResponse(status=0), now=5.0)
    assert pending_paths(store, device) == [PII]
    # The second task (not coalesced: the first was already running) sends the new value.
    spv = spv_sent(session.next_request(now=5.0))
    assert spv.parameters[0].value == "90"
    assert spv.parameter_key == task_key(second)


def test_cpe_fault_fails_task_with_parameter_faults_in_result_and_history(
    store: Store, device: Device, engine: TaskEngine
) -> None:
    store.set_desired_settings(device.id, {PII: "5", "Device.A": "x"}, now=2.0, actor="op")
    t = engine.queue(device.id, "configuration_update", actor="op", now=3.0)
    session = SessionTasks(engine, device.id)
    spv_sent(session.next_request(now=4.0))
    fault = rpc.Fault(
        code=9003,
        string="Invalid arguments",
        set_parameter_values_faults=(
            rpc.SetParameterValuesFault(PII, 9007, "Invalid parameter value"),
        ),
    )
    session.on_response(fault, now=5.0)
    failed = store.get_task(t.id)
    assert failed is not None
    assert (failed.state, failed.fault_code) == (FAILED, 9003)
    expected = [{"name": PII, "code": 9007, "string": "Invalid parameter value"}]
    assert failed.result is not None
    assert failed.result["parameter_faults"] == expected
    detail = next(h for h in store.history(device.id) if h.action == "task_fault_detail")
    assert detail.detail["parameter_faults"] == expected
    # Nothing was applied: both settings are still pending.
    assert store.unconfirmed_settings_count(device.id) == 2


def test_transient_fault_is_retried_later(store: Store, device: Device, engine: TaskEngine) -> None:
    store.set_desired_settings(device.id, {PII: "60"}, now=2.0, actor="op")
    t = engine.queue(device.id, "configuration_update", actor="op", now=3.0)
    session = SessionTasks(engine, device.id)
    spv_sent(session.next_request(now=4.0))
    session.on_response(rpc.Fault(code=9002, string="Internal error"), now=5.0)
    retried = store.get_task(t.id)
    assert retried is not None and retried.state == PENDING
    assert retried.next_attempt_at is not None and retried.next_attempt_at > 5.0


def test_reconf_repushes_every_stored_setting(
    store: Store, device: Device, engine: TaskEngine
) -> None:
    store.set_desired_settings(device.id, {PII: "60", "Device.A": "x"}, now=2.0, actor="op")
    store.confirm_settings(device.id, [PII, "Device.A"], now=2.0)
    t = engine.queue(device.id, "reconf", actor="op", now=3.0)
    session = SessionTasks(engine, device.id)
    spv = spv_sent(session.next_request(now=4.0))
    assert {p.name for p in spv.parameters} == {PII, "Device.A"}
    session.on_response(rpc.SetParameterValuesResponse(status=0), now=5.0)
    assert store.get_task(t.id).state == DONE  # type: ignore[union-attr]
    assert store.unconfirmed_settings_count(device.id) == 0


def test_configuration_update_all_repushes_everything(
    store: Store, device: Device, engine: TaskEngine
) -> None:
    store.set_desired_settings(device.id, {"Device.A": "x"}, now=2.0, actor="op")
    store.confirm_settings(device.id, ["Device.A"], now=2.0)
    engine.queue(device.id, "configuration_update", {"all": True}, actor="op", now=3.0)
    session = SessionTasks(engine, device.id)
    assert [p.name for p in spv_sent(session.next_request(now=4.0)).parameters] == ["Device.A"]


def test_bad_configuration_update_args_are_refused(device: Device, engine: TaskEngine) -> None:
    with pytest.raises(ValueError, match="all must be a boolean"):
        engine.queue(device.id, "configuration_update", {"all": "yes"}, actor="op")
    with pytest.raises(ValueError, match="unknown argument"):
        engine.queue(device.id, "reconf", {"x": 1}, actor="op")


# --- coalescing ----------------------------------------------------------------------------


def test_configuration_update_is_coalesced_but_still_wakes(
    store: Store, device: Device, engine: TaskEngine, waker: Waker
) -> None:
    first = engine.queue(device.id, "configuration_update", actor="a", now=3.0)
    second = engine.queue(device.id, "configuration_update", actor="b", now=4.0)
    assert second.id == first.id
    assert [t.kind for t in store.tasks_for_device(device.id)] == ["configuration_update"]
    assert waker.woken == [device.id, device.id]


def test_push_all_is_not_swallowed_by_a_pending_partial_push(
    store: Store, device: Device, engine: TaskEngine
) -> None:
    partial = engine.queue(device.id, "configuration_update", actor="a", now=3.0)
    full = engine.queue(device.id, "configuration_update", {"all": True}, actor="a", now=3.0)
    assert full.id != partial.id
    # ...but a partial push is covered by a pending full one.
    again = engine.queue(device.id, "configuration_update", actor="a", now=3.0)
    assert again.id == partial.id


def test_a_later_scheduled_one_does_not_absorb_an_immediate_one(
    store: Store, device: Device, engine: TaskEngine
) -> None:
    later = engine.queue(device.id, "configuration_update", actor="a", scheduled_at=1000.0, now=3.0)
    now = engine.queue(device.id, "configuration_update", actor="a", now=3.0)
    assert now.id != later.id


def test_a_running_one_does_not_absorb_a_new_one(
    store: Store, device: Device, engine: TaskEngine
) -> None:
    store.set_desired_settings(device.id, {"Device.A": "x"}, now=2.0, actor="op")
    first = engine.queue(device.id, "configuration_update", actor="a", now=3.0)
    SessionTasks(engine, device.id).next_request(now=4.0)
    second = engine.queue(device.id, "configuration_update", actor="a", now=4.0)
    assert second.id != first.id


def test_after_device_factory_reset_settings_are_reapplied(
    store: Store, device: Device, engine: TaskEngine
) -> None:
    store.set_desired_settings(device.id, {"Device.A": "x"}, now=2.0, actor="op")
    store.confirm_settings(device.id, ["Device.A"], now=2.0)
    t = engine.queue(device.id, "device_factory_reset", actor="op", now=3.0)
    session = SessionTasks(engine, device.id)
    assert isinstance(session.next_request(now=4.0), rpc.FactoryReset)
    session.on_response(rpc.FactoryResetResponse(), now=5.0)
    current = store.get_device(device.id)
    assert current is not None
    engine.on_inform(
        current,
        rpc.Inform(
            device_id=rpc.DeviceId("Acme", "00AABB", "Router", SERIAL),
            events=(rpc.EventStruct("0 BOOTSTRAP"),),
            current_time="2024-01-01T00:00:00Z",
        ),
        now=6.0,
    )
    assert store.get_task(t.id).state == DONE  # type: ignore[union-attr]
    assert store.unconfirmed_settings_count(device.id) == 1
    kinds = [x.kind for x in store.tasks_for_device(device.id, states=(PENDING,))]
    assert "configuration_update" in kinds


def test_migration_renames_task_kinds_and_arguments_as_the_rpcs() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    migrate(conn, MIGRATIONS[:9])
    conn.execute("INSERT INTO organizations (name) VALUES ('o')")
    conn.execute(
        "INSERT INTO devices (uuid, serial_number, name, organization_id, created, last_change,"
        " status_change) VALUES ('u', 'SN', 'SN', 1, 0, 0, 0)"
    )
    old = [
        ("set_parameters", '{"parameters": [{"name": "Device.X.Y", "value": "1"}]}'),
        ("refresh", '{"path": "Device.WiFi."}'),
        ("refresh", "{}"),
        ("get_parameter_attributes", '{"names": ["Device.X."]}'),
        ("reboot", "{}"),
    ]
    for kind, args in old:
        conn.execute(
            "INSERT INTO tasks (device_id, kind, args, state, priority, created, actor) "
            "VALUES (1, ?, ?, 'pending', 10, 0, 't')",
            (kind, args),
        )
    assert migrate(conn) == len(MIGRATIONS)
    rows = conn.execute("SELECT kind, args FROM tasks ORDER BY id").fetchall()
    assert [(kind, json.loads(args)) for kind, args in rows] == [
        ("set_parameter_values", {"parameters": [{"name": "Device.X.Y", "value": "1"}]}),
        ("refresh", {"parameter_path": "Device.WiFi."}),
        ("refresh", {}),
        ("get_parameter_attributes", {"parameter_names": ["Device.X."]}),
        ("reboot", {}),
    ]
