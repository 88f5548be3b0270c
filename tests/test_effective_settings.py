"""Effective settings (device type defaults overlaid by the device's own), pushed after every
Inform when they differ from the cache; refusal memory; sync/reconf; the API settings object;
the `<name>_scheduled` pending form.

Engine tests drive `TaskEngine.on_inform` and `SessionTasks` with rpc dataclasses; API tests
use the in-memory harness.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from apiharness import T0, ApiHarness
from factories import informed_device
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock

from acs.cwmp import rpc
from acs.cwmp.values import values_equal
from acs.store import DONE, FAILED, PENDING, Device, Store
from acs.tasks import SessionTasks, TaskEngine, model_type
from api.device_ops import pending_settings
from api.device_settings import MAX_SETTINGS_PER_REQUEST

SERIAL = "SN-EFF-1"
PII = "Device.ManagementServer.PeriodicInformInterval"
SSID = "Device.WiFi.SSID.1.SSID"
NTP = "Device.Time.NTPServer1"
MANUFACTURER = "Device.DeviceInfo.Manufacturer"


def make_device(store: Store, serial: str = SERIAL, *, root: str = "Device.") -> Device:
    return informed_device(store, serial, root=root, provisioned=True)


@pytest.fixture
def device(store: Store) -> Device:
    return make_device(store)


@pytest.fixture
def engine(store: Store) -> TaskEngine:
    clock = Clock()
    clock.advance(10.0)
    return TaskEngine(store, cast(IReactorTime, clock))


def with_type(store: Store, device: Device, defaults: dict[str, Any]) -> Device:
    dtype = store.create_device_type(now=1.0, actor="t", name="router", default_settings=defaults)
    return store.update_device(device.id, now=2.0, actor="t", type_id=dtype.id)


def inform(engine: TaskEngine, device_id: int, now: float, *events: str) -> None:
    current = engine.store.get_device(device_id)
    assert current is not None
    engine.on_inform(
        current,
        rpc.Inform(
            device_id=rpc.DeviceId("Acme", "00AABB", "Router", SERIAL),
            events=tuple(rpc.EventStruct(e) for e in (events or ("2 PERIODIC",))),
            current_time="2024-01-01T00:00:00Z",
        ),
        now=now,
    )


def pending_kinds(store: Store, device: Device) -> list[str]:
    return [t.kind for t in store.tasks_for_device(device.id, states=(PENDING,))]


def spv(message: rpc.Message | None) -> rpc.SetParameterValues:
    assert isinstance(message, rpc.SetParameterValues), message
    return message


def cache(store: Store, device: Device, values: dict[str, tuple[str, str]]) -> None:
    store.upsert_parameters(device.id, [(p, v, t, True) for p, (v, t) in values.items()], now=3.0)


# --- effective settings and the per-Inform diff ----------------------------------------------


def test_device_setting_overrides_type_default_and_other_root_defaults_are_ignored(
    store: Store, device: Device, engine: TaskEngine
) -> None:
    device = with_type(
        store,
        device,
        {
            PII: "300",
            NTP: "127.0.0.1",
            "InternetGatewayDevice.Time.NTPServer1": "127.0.0.2",
            "Device.ManagementServer.URL": "http://127.0.0.1:1/",
        },
    )
    store.set_desired_settings(device.id, {PII: "600"}, now=3.0, actor="op")
    got = {s.path: (s.value, s.source) for s in engine.effective_settings(device.id)}
    assert got == {PII: ("600", "device"), NTP: ("127.0.0.1", "type")}


def test_inform_with_everything_applied_queues_nothing(
    store: Store, device: Device, engine: TaskEngine
) -> None:
    device = with_type(store, device, {NTP: "127.0.0.1", "Device.WiFi.Radio.1.Enable": "true"})
    # The CPE reports booleans as 1/0: "1" is "true".
    cache(
        store,
        device,
        {NTP: ("127.0.0.1", "xsd:string"), "Device.WiFi.Radio.1.Enable": ("1", "xsd:boolean")},
    )
    inform(engine, device.id, 20.0)
    assert pending_kinds(store, device) == []
    assert all(s.confirmed for s in engine.effective_settings(device.id))


def test_inform_pushes_exactly_the_differing_settings_with_model_types(
    store: Store, device: Device, engine: TaskEngine
) -> None:
    device = with_type(store, device, {NTP: "127.0.0.1", SSID: "12345", PII: "300"})
    cache(store, device, {NTP: ("127.0.0.1", "xsd:string"), PII: ("60", "xsd:unsignedInt")})
    inform(engine, device.id, 20.0)
    assert pending_kinds(store, device) == ["configuration_update"]
    inform(engine, device.id, 21.0)  # coalesced: still one
    assert pending_kinds(store, device) == ["configuration_update"]

    session = SessionTasks(engine, device.id)
    sent = spv(session.next_request(now=22.0))
    # Digits, but an SSID is a string in the data model; the cached type wins for PII.
    assert sent.parameters == (
        rpc.ParameterValue(PII, "300", "xsd:unsignedInt"),
        rpc.ParameterValue(SSID, "12345", "xsd:string"),
    )
    assert sent.parameter_key.startswith("acs-task-")
    session.on_response(rpc.SetParameterValuesResponse(status=0), now=23.0)
    assert session.next_request(now=23.0) is None
    assert all(s.confirmed for s in engine.effective_settings(device.id))
    inform(engine, device.id, 30.0)
    assert pending_kinds(store, device) == []


def test_a_cpe_side_change_is_pushed_back_at_the_next_inform(
    store: Store, device: Device, engine: TaskEngine
) -> None:
    store.set_desired_settings(device.id, {NTP: "127.0.0.1"}, now=2.0, actor="op")
    store.confirm_settings(device.id, [NTP], now=3.0)
    cache(store, device, {NTP: ("127.0.0.9", "xsd:string")})  # e.g. a value-change Inform
    inform(engine, device.id, 20.0)
    assert pending_kinds(store, device) == ["configuration_update"]


def test_bootstrap_reapplies_device_settings(
    store: Store, device: Device, engine: TaskEngine
) -> None:
    store.set_desired_settings(device.id, {NTP: "127.0.0.1"}, now=2.0, actor="op")
    store.confirm_settings(device.id, [NTP], now=3.0)
    inform(engine, device.id, 20.0)
    assert "configuration_update" not in pending_kinds(store, device)
    inform(engine, device.id, 30.0, "0 BOOTSTRAP")
    assert pending_kinds(store, device) == ["provision", "configuration_update"]
    assert store.unconfirmed_settings_count(device.id) == 1


def test_model_types_and_value_comparison() -> None:
    assert model_type("InternetGatewayDevice.LANDevice.1.WLANConfiguration.2.SSID") == "xsd:string"
    assert model_type("Device.WiFi.Radio.3.Channel") == "xsd:unsignedInt"
    assert model_type("Device.Vendor.Thing") is None
    assert values_equal("1", "true", "xsd:boolean")
    assert not values_equal("1", "false", "xsd:boolean")
    assert values_equal("060", "60", "xsd:unsignedInt")
    assert not values_equal("060", "60", "xsd:string")


# --- refusals ---------------------------------------------------------------------------------


def refuse(session: SessionTasks, path: str, code: int, now: float) -> None:
    session.on_response(
        rpc.Fault(
            code=9003,
            string="Invalid arguments",
            set_parameter_values_faults=(
                rpc.SetParameterValuesFault(path, code, "Attempt to set a non-writable parameter"),
            ),
        ),
        now=now,
    )


def test_non_writable_path_fails_the_task_per_parameter_and_the_rest_still_goes(
    store: Store, device: Device, engine: TaskEngine
) -> None:
    device = with_type(store, device, {MANUFACTURER: "Other"})
    store.set_desired_settings(device.id, {NTP: "127.0.0.1"}, now=3.0, actor="op")
    inform(engine, device.id, 20.0)
    (first,) = store.tasks_for_device(device.id, states=(PENDING,))
    session = SessionTasks(engine, device.id)
    assert {p.name for p in spv(session.next_request(now=21.0)).parameters} == {
        MANUFACTURER,
        NTP,
    }
    refuse(session, MANUFACTURER, 9008, 22.0)
    failed = store.get_task(first.id)
    assert failed is not None and (failed.state, failed.fault_code) == (FAILED, 9003)
    assert failed.result is not None
    assert failed.result["parameter_faults"] == [
        {"name": MANUFACTURER, "code": 9008, "string": "Attempt to set a non-writable parameter"}
    ]
    assert MANUFACTURER in failed.result["refused"]
    detail = next(h for h in store.history(device.id) if h.action == "task_fault_detail")
    assert detail.detail["parameter_faults"][0]["code"] == 9008
    assert "refused" not in detail.detail  # fingerprints stay out of the audit trail

    # Same session: a follow-up push sends the acceptable setting alone.
    again = spv(session.next_request(now=22.0))
    assert [p.name for p in again.parameters] == [NTP]
    session.on_response(rpc.SetParameterValuesResponse(status=0), now=23.0)
    assert session.next_request(now=23.0) is None

    states = {s.path: s for s in engine.effective_settings(device.id)}
    assert states[NTP].confirmed
    assert states[MANUFACTURER].refused == (9008, "Attempt to set a non-writable parameter")

    # Remembered: later Informs do not push it again...
    inform(engine, device.id, 30.0)
    inform(engine, device.id, 40.0)
    assert pending_kinds(store, device) == []
    # ...until the setting changes.
    store.set_desired_settings(device.id, {MANUFACTURER: "Changed"}, now=50.0, actor="op")
    inform(engine, device.id, 60.0)
    assert pending_kinds(store, device) == ["configuration_update"]


def test_transient_fault_is_not_remembered_as_a_refusal(
    store: Store, device: Device, engine: TaskEngine
) -> None:
    store.set_desired_settings(device.id, {NTP: "127.0.0.1"}, now=2.0, actor="op")
    inform(engine, device.id, 20.0)
    session = SessionTasks(engine, device.id)
    spv(session.next_request(now=21.0))
    session.on_response(rpc.Fault(code=9002, string="Internal error"), now=22.0)
    assert store.refused_settings(device.id) == {}
    assert session.next_request(now=22.0) is None


# --- sync and reconf ------------------------------------------------------------------------


def run_to_end(session: SessionTasks, answer: Any, now: float) -> list[rpc.Message]:
    """Answer every request with `answer(request)` until the session has nothing left."""
    sent: list[rpc.Message] = []
    request = session.next_request(now=now)
    while request is not None:
        sent.append(request)
        session.on_response(answer(request), now=now)
        request = session.next_request(now=now)
    return sent


def test_sync_adopts_cpe_values_and_reconf_then_sends_nothing(
    store: Store, device: Device, engine: TaskEngine
) -> None:
    store.set_desired_settings(device.id, {NTP: "127.0.0.1", PII: "600"}, now=2.0, actor="op")
    store.confirm_settings(device.id, [NTP, PII], now=2.0)
    tree = {NTP: "127.0.0.5", PII: "600", "Device.DeviceInfo.SoftwareVersion": "1.0"}

    def cpe(request: rpc.Message) -> rpc.Message:
        if isinstance(request, rpc.GetParameterNames):
            return rpc.GetParameterNamesResponse(
                tuple(rpc.ParameterInfo(name, True) for name in tree)
            )
        if isinstance(request, rpc.GetParameterValues):
            return rpc.GetParameterValuesResponse(
                tuple(rpc.ParameterValue(n, tree[n], "xsd:string") for n in request.names)
            )
        raise AssertionError(f"unexpected {request}")

    sync = engine.queue(device.id, "sync", actor="op", now=20.0)
    run_to_end(SessionTasks(engine, device.id), cpe, 21.0)
    assert store.get_task(sync.id).state == DONE  # type: ignore[union-attr]
    values = {s.path: (s.value, s.confirmed) for s in store.desired_settings(device.id)}
    assert values == {NTP: ("127.0.0.5", True), PII: ("600", True)}
    synced = store.get_device(device.id)
    assert synced is not None and synced.last_configuration == 21.0
    assert any(h.action == "settings_synced" for h in store.history(device.id))

    reconf = engine.queue(device.id, "reconf", actor="op", now=30.0)
    sent = run_to_end(SessionTasks(engine, device.id), cpe, 31.0)
    assert sent == []  # zero SetParameterValues
    done = store.get_task(reconf.id)
    assert done is not None and done.state == DONE
    assert done.result == {"parameters": 0, "status": 0}


def test_reconf_repushes_a_setting_the_cpe_changed(
    store: Store, device: Device, engine: TaskEngine
) -> None:
    store.set_desired_settings(device.id, {NTP: "127.0.0.1"}, now=2.0, actor="op")
    store.confirm_settings(device.id, [NTP], now=2.0)
    cache(store, device, {NTP: ("127.0.0.7", "xsd:string")})
    engine.queue(device.id, "reconf", actor="op", now=20.0)
    session = SessionTasks(engine, device.id)
    assert spv(session.next_request(now=21.0)).parameters == (
        rpc.ParameterValue(NTP, "127.0.0.1", "xsd:string"),
    )


# --- API: the settings object ----------------------------------------------------------------


class Wakes:
    def __init__(self) -> None:
        self.woken: list[int] = []

    def wake(self, device_id: int) -> Deferred[str]:
        self.woken.append(device_id)
        return succeed("held")


@pytest.fixture
def wakes(harness: ApiHarness) -> Wakes:
    fake = Wakes()
    harness.appliance.connreq = cast(Any, fake)
    return fake


def api_device(harness: ApiHarness) -> Device:
    device = make_device(harness.store, "SN-API-1")
    return with_type(harness.store, device, {NTP: "127.0.0.1", PII: "300"})


def url(device: Device) -> str:
    return f"/api/v1/inventory_device/{device.id}/settings/"


def test_get_settings_shows_source_state_and_redacts_credentials(
    harness: ApiHarness, wakes: Wakes
) -> None:
    device = api_device(harness)
    secret = "Device.WiFi.AccessPoint.1.Security.KeyPassphrase"
    harness.store.set_desired_settings(
        device.id, {secret: "hunter22", PII: "600"}, now=T0, actor="o"
    )
    cache(harness.store, device, {NTP: ("127.0.0.1", "xsd:string"), secret: ("old", "xsd:string")})
    reply = harness.call("GET", url(device), token=harness.token("viewer"))
    assert reply.status == 200, reply.raw
    body = reply.json
    assert body["device"] == device.id and body["pending"] == 2
    settings = body["settings"]
    assert settings[NTP] | {"updated": None} == {
        "value": "127.0.0.1",
        "type": "xsd:string",
        "source": "type",
        "confirmed": True,
        "state": "confirmed",
        "cpe_value": "127.0.0.1",
        "fault": None,
        "updated": None,
    }
    assert (settings[PII]["source"], settings[PII]["state"]) == ("device", "pending")
    assert settings[PII]["type"] == "xsd:unsignedInt"
    assert settings[secret]["value"] != "hunter22"
    assert settings[secret]["cpe_value"] != "old"
    assert "hunter22" not in reply.raw.decode()


def test_patch_settings_sets_removes_queues_once_and_wakes(
    harness: ApiHarness, wakes: Wakes
) -> None:
    device = api_device(harness)
    token = harness.token("operator", name="noc-alice")
    reply = harness.call("PATCH", url(device), token=token, json_body={PII: 900, SSID: "home"})
    assert reply.status == 200, reply.raw
    assert reply.json["settings"][PII]["value"] == "900"
    assert reply.json["settings"][PII]["source"] == "device"
    assert reply.json["settings"][SSID]["state"] == "pending"
    assert wakes.woken == [device.id]
    tasks = harness.store.tasks_for_device(device.id, states=(PENDING,))
    assert [(t.kind, t.actor) for t in tasks] == [("configuration_update", "noc-alice")]

    # null removes the device's own value: the type default applies again.
    reply = harness.call("PATCH", url(device), token=token, json_body={PII: None, SSID: None})
    assert reply.status == 200, reply.raw
    assert reply.json["settings"][PII] | {"updated": None} == reply.json["settings"][PII] | {
        "value": "300",
        "source": "type",
        "updated": None,
    }
    assert SSID not in reply.json["settings"]
    assert len(harness.store.tasks_for_device(device.id, states=(PENDING,))) == 1  # coalesced


def test_patch_settings_refuses_bad_input_and_writes_nothing(
    harness: ApiHarness, wakes: Wakes
) -> None:
    device = api_device(harness)
    token = harness.token("operator")
    reply = harness.call(
        "PATCH",
        url(device),
        token=token,
        json_body={
            PII: "sixty",
            "Device.ManagementServer.URL": "http://127.0.0.1/",
            "InternetGatewayDevice.Time.NTPServer1": "x",
            "notapath": "1",
            "Device.X.Unsendable": "a\u0000b",  # XML cannot carry it to the CPE
            NTP: "127.0.0.2",
        },
    )
    assert reply.status == 400, reply.raw
    assert set(reply.json) == {
        PII,
        "Device.ManagementServer.URL",
        "InternetGatewayDevice.Time.NTPServer1",
        "notapath",
        "Device.X.Unsendable",
    }
    assert "U+0000" in reply.json["Device.X.Unsendable"][0]
    assert harness.store.desired_settings(device.id) == []
    assert wakes.woken == []
    too_many = {f"Device.X.{i}.Name": "v" for i in range(MAX_SETTINGS_PER_REQUEST + 1)}
    assert harness.call("PATCH", url(device), token=token, json_body=too_many).status == 400
    assert harness.call("PATCH", url(device), token=token, data=b"[1]").status == 400
    viewer = harness.token("viewer")
    assert harness.call("PATCH", url(device), token=viewer, json_body={NTP: "x"}).status == 403
    assert harness.call("GET", "/api/v1/inventory_device/999/settings/", token=viewer).status == 404


def test_per_parameter_fault_is_visible_in_the_api(harness: ApiHarness, wakes: Wakes) -> None:
    device = api_device(harness)
    harness.store.set_desired_settings(device.id, {MANUFACTURER: "Other"}, now=T0, actor="o")
    engine = harness.appliance.tasks
    task = engine.queue(device.id, "configuration_update", actor="o", wake=False, now=T0)
    session = SessionTasks(engine, device.id)
    spv(session.next_request(now=T0 + 1))
    refuse(session, MANUFACTURER, 9008, T0 + 2)
    token = harness.token("viewer")
    settings = harness.call("GET", url(device), token=token).json["settings"]
    assert settings[MANUFACTURER]["state"] == "refused"
    assert settings[MANUFACTURER]["fault"]["code"] == 9008
    history = harness.call(
        "GET", f"/api/v1/inventory_device/{device.id}/history/?limit=100", token=token
    ).json["results"]
    detail = next(h["detail"] for h in history if h["action"] == "task_fault_detail")
    assert detail["task_id"] == task.id
    assert detail["parameter_faults"][0] == {
        "name": MANUFACTURER,
        "code": 9008,
        "string": "Attempt to set a non-writable parameter",
    }
    tasks = harness.call("GET", f"/api/v1/inventory_device/{device.id}/tasks/", token=token).json[
        "results"
    ]
    failed = next(t for t in tasks if t["id"] == task.id)
    assert (failed["state"], failed["fault_code"]) == ("failed", 9003)
    assert MANUFACTURER in failed["fault_string"] and "9008" in failed["fault_string"]


# --- pending form of scheduled work ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["reboot", "sync", "reconf", "factory_reset"])
def test_scheduled_work_is_named_name_scheduled_with_its_time(
    harness: ApiHarness, kind: str
) -> None:
    device = make_device(harness.store, "SN-SCHED")
    harness.store.queue_task(device.id, kind, {}, now=T0, actor="t", scheduled_at=T0 + 3600)
    assert pending_settings(harness.store, device.id, detailed=False) == f"{kind}_scheduled"
    assert pending_settings(harness.store, device.id, detailed=True) == (
        f"{kind}_scheduled:2024-01-15T10:30:00Z"
    )
