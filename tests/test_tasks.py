"""Tests of the task engine: each kind's RPC sequence and store effects, faults and retries,
queue order, the session driver's abort semantics, Inform-driven completions and restart safety.

The session driver is fed rpc dataclasses directly against a real in-memory Store; time is
passed explicitly (`now=`) or read from a task.Clock.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, cast

import factories
import pytest
from factories import informed_device
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock

from acs.cwmp import rpc
from acs.store import DONE, FAILED, IN_PROGRESS, PENDING, Device, NotFound, Store
from acs.tasks import KINDS, TASK_KINDS, SessionTasks, TaskEngine, task_key
from acs.tasks.run import StunOffer, XmppOffer

SERIAL = "SN0001"


def make_device(store: Store, serial: str = SERIAL, *, root: str = "Device.") -> Device:
    return informed_device(store, serial, root=root)


def inform(*events: str | tuple[str, str]) -> rpc.Inform:
    return factories.inform(SERIAL, *events)


def new_clock() -> IReactorTime:
    # mypy can't see zope's @implementer without a plugin.
    return cast(IReactorTime, Clock())


def engine_for(store: Store, **kwargs: Any) -> TaskEngine:
    return TaskEngine(store, new_clock(), **kwargs)


def provisioned(store: Store, device: Device) -> Device:
    return store.update_device(device.id, now=1.0, actor="test", provisioned=True)


@pytest.fixture
def device(store: Store) -> Device:
    return provisioned(store, make_device(store))


@pytest.fixture
def engine(store: Store) -> TaskEngine:
    return engine_for(store)


def states(store: Store, device: Device) -> list[tuple[str, str]]:
    return [(t.kind, t.state) for t in store.tasks_for_device(device.id)]


# --- queue validation and wake -----------------------------------------------------------


@pytest.mark.parametrize("kind", TASK_KINDS)
def test_every_kind_starts_an_rpc_or_finishes(
    store: Store, engine: TaskEngine, device: Device, kind: str
) -> None:
    """A kind that validates but has no run would strand its task in_progress."""
    queued = engine.queue(device.id, kind, KINDS[kind].example, actor="test", wake=False, now=0.0)
    request = engine.open_session(device.id).next_request(now=0.0)
    task = store.get_task(queued.id)
    assert task is not None
    assert request is not None or task.state in ("done", "failed"), (kind, task.state)


def test_queue_rejects_unknown_kind_with_clear_message(engine: TaskEngine, device: Device) -> None:
    with pytest.raises(ValueError, match="unknown task kind 'explode'"):
        engine.queue(device.id, "explode", actor="op")


@pytest.mark.parametrize(
    ("kind", "args", "message"),
    [
        ("reboot", {"delay": 3}, "unknown argument"),
        ("refresh", {"parameter_path": "Device. Bad"}, "not a valid parameter path"),
        ("refresh", {"parameter_path": 5}, "non-empty string"),
        ("set_parameter_values", {}, "parameters must be a non-empty list"),
        ("set_parameter_values", {"parameters": []}, "non-empty list"),
        ("set_parameter_values", {"parameters": ["x"]}, "must be an object"),
        ("set_parameter_values", {"parameters": [{"name": "Device.X."}]}, "not an object path"),
        ("set_parameter_values", {"parameters": [{"name": "Device.X"}]}, "value is required"),
        (
            "set_parameter_values",
            {"parameters": [{"name": "Device.X", "value": "1", "type": "xsd:float"}]},
            "is not one of",
        ),
        (
            "set_parameter_values",
            {"parameters": [{"name": "Device.X", "value": "yes", "type": "xsd:boolean"}]},
            "not a boolean",
        ),
        (
            "set_parameter_values",
            {"parameters": [{"name": "Device.X", "value": "-1", "type": "xsd:unsignedInt"}]},
            "out of range",
        ),
        (
            "set_parameter_values",
            {
                "parameters": [
                    {"name": "Device.X", "value": "a"},
                    {"name": "Device.X", "value": "b"},
                ]
            },
            "given twice",
        ),
        (
            "set_parameter_values",
            {"parameters": [{"name": "Device.X", "value": [1]}]},
            "must be a string",
        ),
        ("add_object", {"object_name": "Device.NAT.PortMapping"}, "ending with '.'"),
        ("add_object", {}, "non-empty string"),
        ("delete_object", {"object_name": "Device.NAT.PortMapping."}, "one instance"),
        ("get_parameter_attributes", {"parameter_names": []}, "non-empty list"),
        ("set_parameter_attributes", {"parameters": [{"name": "Device.X"}]}, "notification"),
        (
            "set_parameter_attributes",
            {"parameters": [{"name": "Device.X", "notification": 7}]},
            "between 0 and 6",
        ),
        (
            "set_parameter_attributes",
            {"parameters": [{"name": "Device.X", "notification": True}]},
            "integer",
        ),
        ("refresh", ["Device."], "must be an object"),
    ],
)
def test_queue_rejects_bad_args_and_stores_nothing(
    engine: TaskEngine, store: Store, device: Device, kind: str, args: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        engine.queue(device.id, kind, args, actor="op")
    assert store.tasks_for_device(device.id) == []


def test_queue_unknown_device_raises_not_found(engine: TaskEngine) -> None:
    with pytest.raises(NotFound):
        engine.queue(424242, "reboot", actor="op")


def test_queue_normalizes_args(engine: TaskEngine, device: Device) -> None:
    task = engine.queue(
        device.id,
        "set_parameter_values",
        {"parameters": [{"name": "Device.X.Enable", "value": True, "type": "boolean"}]},
        actor="op",
    )
    assert task.args == {
        "parameters": [{"name": "Device.X.Enable", "value": "true", "type": "xsd:boolean"}]
    }
    assert task.actor == "op"
    assert task.state == PENDING


def test_queue_wakes_device_and_swallows_wake_failures(store: Store, device: Device) -> None:
    woken: list[int] = []

    def wake(device_id: int) -> Deferred[Any]:
        woken.append(device_id)
        return fail(RuntimeError("CPE unreachable"))

    engine = engine_for(store, wake=wake)
    engine.queue(device.id, "reboot", actor="op")
    assert woken == [device.id]

    def broken(device_id: int) -> Deferred[Any]:
        raise RuntimeError("boom")

    engine.set_wake(broken)
    task = engine.queue(device.id, "factory_reset", actor="op")
    assert task.state == PENDING


def test_queue_does_not_wake_for_future_or_when_asked_not_to(store: Store, device: Device) -> None:
    woken: list[int] = []

    def wake(device_id: int) -> Deferred[Any]:
        woken.append(device_id)
        return succeed("answered")

    engine = engine_for(store, wake=wake)
    engine.queue(device.id, "reboot", actor="op", wake=False, now=100.0)
    engine.queue(device.id, "reboot", actor="op", scheduled_at=500.0, now=100.0)
    assert woken == []
    engine.queue(device.id, "reboot", actor="op", scheduled_at=50.0, now=100.0)
    assert woken == [device.id]


def test_queue_uses_reactor_time_when_now_not_given(store: Store, device: Device) -> None:
    clock = Clock()
    clock.advance(1234.0)
    task = TaskEngine(store, cast(IReactorTime, clock)).queue(device.id, "reboot", actor="op")
    assert task.created == 1234.0


# --- each kind's RPC sequence ------------------------------------------------------------


def test_reboot_stays_in_progress_after_reboot_response(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    task = engine.queue(device.id, "reboot", actor="op", now=10.0)
    session = engine.open_session(device.id)
    request = session.next_request(now=11.0)
    assert request == rpc.Reboot(command_key=task_key(task))
    assert len(task_key(task)) <= 32
    session.on_response(rpc.RebootResponse(), now=12.0)
    assert session.next_request(now=12.0) is None
    assert store.get_task(task.id).state == IN_PROGRESS  # type: ignore[union-attr]


def test_reboot_completes_when_cpe_informs_m_reboot(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    task = engine.queue(device.id, "reboot", actor="op", now=10.0)
    session = engine.open_session(device.id)
    session.next_request(now=11.0)
    session.on_response(rpc.RebootResponse(), now=12.0)
    assert session.next_request(now=12.0) is None

    engine.on_inform(device, inform("1 BOOT", ("M Reboot", task_key(task))), now=60.0)
    done = store.get_task(task.id)
    assert done is not None and done.state == DONE
    assert done.result == {"events": ["1 BOOT", "M Reboot"]}


def test_periodic_inform_does_not_complete_a_reboot(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    task = engine.queue(device.id, "reboot", actor="op", now=10.0)
    session = engine.open_session(device.id)
    session.next_request(now=11.0)
    session.on_response(rpc.RebootResponse(), now=12.0)
    engine.on_inform(device, inform("2 PERIODIC"), now=20.0)
    assert store.get_task(task.id).state == IN_PROGRESS  # type: ignore[union-attr]


def test_m_reboot_with_foreign_key_completes_the_single_outstanding_reboot(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    task = engine.queue(device.id, "reboot", actor="op", now=10.0)
    session = engine.open_session(device.id)
    session.next_request(now=11.0)
    session.on_response(rpc.RebootResponse(), now=12.0)
    engine.on_inform(device, inform("1 BOOT", ("M Reboot", "something-else")), now=60.0)
    assert store.get_task(task.id).state == DONE  # type: ignore[union-attr]


def test_reboot_retried_after_abort_completes_when_cpe_confirms_its_key(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    # The Reboot reached the CPE but the session died before its answer: the task went back
    # to pending for a retry, yet the CPE's "M Reboot" proves it was done.
    task = engine.queue(device.id, "reboot", actor="op", now=10.0)
    session = engine.open_session(device.id)
    session.next_request(now=11.0)
    session.abort(now=12.0, reason="timeout")
    assert store.get_task(task.id).state == PENDING  # type: ignore[union-attr]
    engine.on_inform(device, inform("1 BOOT", ("M Reboot", task_key(task))), now=30.0)
    assert store.get_task(task.id).state == DONE  # type: ignore[union-attr]


def test_unconfirmed_reboot_fails_after_confirm_timeout(store: Store, device: Device) -> None:
    engine = engine_for(store, confirm_timeout=900.0)
    task = engine.queue(device.id, "reboot", actor="op", now=10.0)
    session = engine.open_session(device.id)
    session.next_request(now=11.0)
    session.on_response(rpc.RebootResponse(), now=12.0)
    engine.on_inform(device, inform("2 PERIODIC"), now=500.0)
    assert store.get_task(task.id).state == IN_PROGRESS  # type: ignore[union-attr]
    engine.on_inform(device, inform("2 PERIODIC"), now=1000.0)
    failed = store.get_task(task.id)
    assert failed is not None and failed.state == FAILED
    assert "did not confirm the reboot" in (failed.fault_string or "")


def test_factory_reset_completes_on_bootstrap_and_queues_provisioning(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    task = engine.queue(device.id, "factory_reset", actor="op", now=10.0)
    session = engine.open_session(device.id)
    assert session.next_request(now=11.0) == rpc.FactoryReset()
    session.on_response(rpc.FactoryResetResponse(), now=12.0)
    assert session.next_request(now=12.0) is None
    engine.on_inform(device, inform("1 BOOT"), now=30.0)
    assert store.get_task(task.id).state == IN_PROGRESS  # type: ignore[union-attr]

    engine.on_inform(device, inform("0 BOOTSTRAP", "1 BOOT"), now=60.0)
    assert states(store, device) == [("provision", PENDING), ("factory_reset", DONE)]


def gpn_answer(names: list[str], writable: bool = True) -> rpc.GetParameterNamesResponse:
    return rpc.GetParameterNamesResponse(tuple(rpc.ParameterInfo(n, writable) for n in names))


def gpv_answer(request: rpc.Message, value: str = "v") -> rpc.GetParameterValuesResponse:
    assert isinstance(request, rpc.GetParameterValues)
    return rpc.GetParameterValuesResponse(
        tuple(rpc.ParameterValue(n, f"{value}-{n}", "xsd:string") for n in request.names)
    )


def test_refresh_batches_get_parameter_values(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    objects = ["Device.", "Device.Things."]
    leaves = [f"Device.Things.P{i:02d}" for i in range(70)]
    task = engine.queue(device.id, "refresh", actor="op", now=10.0)
    session = engine.open_session(device.id)
    assert session.next_request(now=11.0) == rpc.GetParameterNames("Device.", next_level=False)
    session.on_response(gpn_answer(objects + leaves), now=12.0)
    sizes = []
    while (request := session.next_request(now=13.0)) is not None:
        assert isinstance(request, rpc.GetParameterValues)
        assert all(not n.endswith(".") for n in request.names)
        sizes.append(len(request.names))
        session.on_response(gpv_answer(request), now=13.0)
    assert sizes == [32, 32, 6]

    done = store.get_task(task.id)
    assert done is not None and done.state == DONE
    assert done.result == {"parameters": 70}
    cached = store.get_parameter(device.id, "Device.Things.P69")
    assert cached is not None
    assert (cached.value, cached.type, cached.writable) == (
        "v-Device.Things.P69",
        "xsd:string",
        True,
    )
    assert store.get_parameter(device.id, "Device.Things.").writable is True  # type: ignore[union-attr]


def test_refresh_uses_given_path_and_igd_root(store: Store) -> None:
    device = provisioned(store, make_device(store, root="InternetGatewayDevice."))
    engine = engine_for(store)
    engine.queue(device.id, "refresh", actor="op", now=10.0)
    engine.queue(
        device.id, "refresh", {"parameter_path": "InternetGatewayDevice.LANDevice."}, actor="op"
    )
    session = engine.open_session(device.id)
    first = session.next_request(now=11.0)
    assert first == rpc.GetParameterNames("InternetGatewayDevice.", next_level=False)
    session.on_response(gpn_answer([]), now=11.0)
    second = session.next_request(now=11.0)
    assert second == rpc.GetParameterNames("InternetGatewayDevice.LANDevice.", next_level=False)


def test_refresh_forgets_objects_the_cpe_no_longer_has(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    store.upsert_parameters(
        device.id,
        [
            ("Device.NAT.PortMapping.1.Enable", "1", "xsd:boolean", True),
            ("Device.NAT.PortMapping.2.Enable", "1", "xsd:boolean", True),
            ("Device.NAT.PortMapping.2.Port", "80", "xsd:unsignedInt", True),
            ("Device.Other", "x", "xsd:string", False),
        ],
        now=5.0,
    )
    engine.queue(device.id, "refresh", {"parameter_path": "Device.NAT."}, actor="op", now=10.0)
    session = engine.open_session(device.id)
    session.next_request(now=11.0)
    session.on_response(
        gpn_answer(["Device.NAT.", "Device.NAT.PortMapping.", "Device.NAT.PortMapping.1.Enable"]),
        now=12.0,
    )
    assert [p.path for p in store.get_parameters(device.id)] == [
        "Device.NAT.",
        "Device.NAT.PortMapping.",
        "Device.NAT.PortMapping.1.Enable",
        "Device.Other",
    ]


def test_set_parameters_uses_cached_type_and_updates_cache(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    store.upsert_parameters(
        device.id, [("Device.WiFi.Radio.1.Channel", "1", "xsd:unsignedInt", True)], now=5.0
    )
    task = engine.queue(
        device.id,
        "set_parameter_values",
        {
            "parameters": [
                {"name": "Device.WiFi.Radio.1.Channel", "value": "11"},
                {"name": "Device.WiFi.SSID.1.SSID", "value": "home"},
                {"name": "Device.WiFi.Radio.1.Enable", "value": "true", "type": "xsd:boolean"},
                # Not in the cache: the data model's type.
                {"name": "Device.ManagementServer.PeriodicInformInterval", "value": "600"},
                {"name": "Device.X_VENDOR.Knob", "value": "7"},
            ]
        },
        actor="op",
        now=10.0,
    )
    session = engine.open_session(device.id)
    request = session.next_request(now=11.0)
    assert request == rpc.SetParameterValues(
        parameters=(
            rpc.ParameterValue("Device.WiFi.Radio.1.Channel", "11", "xsd:unsignedInt"),
            rpc.ParameterValue("Device.WiFi.SSID.1.SSID", "home", "xsd:string"),
            rpc.ParameterValue("Device.WiFi.Radio.1.Enable", "true", "xsd:boolean"),
            rpc.ParameterValue(
                "Device.ManagementServer.PeriodicInformInterval", "600", "xsd:unsignedInt"
            ),
            rpc.ParameterValue("Device.X_VENDOR.Knob", "7", "xsd:string"),
        ),
        parameter_key=task_key(task),
    )
    session.on_response(rpc.SetParameterValuesResponse(status=1), now=12.0)
    assert session.next_request(now=12.0) is None
    done = store.get_task(task.id)
    assert done is not None and done.state == DONE and done.result == {"status": 1}
    channel = store.get_parameter(device.id, "Device.WiFi.Radio.1.Channel")
    assert channel is not None and channel.value == "11" and channel.writable is True
    ssid = store.get_parameter(device.id, "Device.WiFi.SSID.1.SSID")
    assert ssid is not None and (ssid.value, ssid.type) == ("home", "xsd:string")


def test_add_object_reports_instance_and_reads_it_back(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    task = engine.queue(
        device.id, "add_object", {"object_name": "Device.NAT.PortMapping."}, actor="op", now=10.0
    )
    session = engine.open_session(device.id)
    request = session.next_request(now=11.0)
    assert request == rpc.AddObject("Device.NAT.PortMapping.", parameter_key=task_key(task))
    session.on_response(rpc.AddObjectResponse(instance_number=4, status=0), now=12.0)
    request = session.next_request(now=12.0)
    assert request == rpc.GetParameterNames("Device.NAT.PortMapping.4.", next_level=False)
    session.on_response(
        gpn_answer(["Device.NAT.PortMapping.4.", "Device.NAT.PortMapping.4.Enable"]), now=13.0
    )
    request = session.next_request(now=13.0)
    assert request == rpc.GetParameterValues(("Device.NAT.PortMapping.4.Enable",))
    session.on_response(gpv_answer(request), now=14.0)
    assert session.next_request(now=14.0) is None
    done = store.get_task(task.id)
    assert done is not None and done.state == DONE
    assert done.result == {"instance_number": 4, "status": 0, "parameters": 1}
    assert store.get_parameter(device.id, "Device.NAT.PortMapping.4.Enable") is not None


def test_add_object_is_not_retried_when_read_back_fails_or_session_dies(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    first = engine.queue(
        device.id, "add_object", {"object_name": "Device.NAT.PortMapping."}, actor="op", now=10.0
    )
    second = engine.queue(
        device.id, "add_object", {"object_name": "Device.NAT.PortMapping."}, actor="op", now=10.0
    )
    session = engine.open_session(device.id)
    session.next_request(now=11.0)
    session.on_response(rpc.AddObjectResponse(instance_number=1, status=0), now=12.0)
    session.next_request(now=12.0)
    session.on_response(rpc.Fault(9002, "Internal error"), now=13.0)
    done = store.get_task(first.id)
    assert done is not None and done.state == DONE
    assert done.result is not None and done.result["refresh_fault"]["code"] == 9002

    assert isinstance(session.next_request(now=13.0), rpc.AddObject)
    session.on_response(rpc.AddObjectResponse(instance_number=2, status=0), now=14.0)
    session.next_request(now=14.0)
    session.abort(now=15.0, reason="session timeout")
    done = store.get_task(second.id)
    assert done is not None and done.state == DONE and done.result is not None
    assert done.result["instance_number"] == 2


def test_delete_object_drops_cached_subtree(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    store.upsert_parameters(
        device.id,
        [
            ("Device.NAT.PortMapping.3.Enable", "1", "xsd:boolean", True),
            ("Device.NAT.PortMapping.30.Enable", "1", "xsd:boolean", True),
        ],
        now=5.0,
    )
    task = engine.queue(
        device.id, "delete_object", {"object_name": "Device.NAT.PortMapping.3."}, actor="op"
    )
    session = engine.open_session(device.id)
    request = session.next_request(now=11.0)
    assert request == rpc.DeleteObject("Device.NAT.PortMapping.3.", parameter_key=task_key(task))
    session.on_response(rpc.DeleteObjectResponse(status=0), now=12.0)
    assert store.get_task(task.id).state == DONE  # type: ignore[union-attr]
    assert [p.path for p in store.get_parameters(device.id, "Device.NAT.")] == [
        "Device.NAT.PortMapping.30.Enable"
    ]


def test_get_parameter_attributes_result_holds_attributes(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    task = engine.queue(
        device.id,
        "get_parameter_attributes",
        {"parameter_names": ["Device.DeviceInfo."]},
        actor="op",
    )
    session = engine.open_session(device.id)
    assert session.next_request(now=11.0) == rpc.GetParameterAttributes(("Device.DeviceInfo.",))
    session.on_response(
        rpc.GetParameterAttributesResponse(
            (rpc.ParameterAttribute("Device.DeviceInfo.UpTime", 2, ("Subscriber",)),)
        ),
        now=12.0,
    )
    done = store.get_task(task.id)
    assert done is not None and done.result == {
        "attributes": [
            {"name": "Device.DeviceInfo.UpTime", "notification": 2, "access_list": ["Subscriber"]}
        ]
    }


def test_set_parameter_attributes_sends_change_flags(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    task = engine.queue(
        device.id,
        "set_parameter_attributes",
        {
            "parameters": [
                {"name": "Device.DeviceInfo.SoftwareVersion", "notification": 2},
                {"name": "Device.WiFi.", "access_list": ["Subscriber"]},
            ]
        },
        actor="op",
    )
    session = engine.open_session(device.id)
    assert session.next_request(now=11.0) == rpc.SetParameterAttributes(
        (
            rpc.SetParameterAttributesStruct("Device.DeviceInfo.SoftwareVersion", True, 2),
            rpc.SetParameterAttributesStruct("Device.WiFi.", False, 0, True, ("Subscriber",)),
        )
    )
    session.on_response(rpc.SetParameterAttributesResponse(), now=12.0)
    assert store.get_task(task.id).state == DONE  # type: ignore[union-attr]


# --- provisioning ------------------------------------------------------------------------


def run_provision(session: SessionTasks, now: float, status: int = 0) -> rpc.SetParameterValues:
    request = session.next_request(now=now)
    assert isinstance(request, rpc.SetParameterValues)
    session.on_response(rpc.SetParameterValuesResponse(status=status), now=now)
    return request


def test_provision_sets_management_server_and_stores_credentials(store: Store) -> None:
    device = make_device(store, root="InternetGatewayDevice.")
    device = store.update_device(device.id, now=1.0, actor="test", update_frequency=600)
    engine = engine_for(store)
    engine.on_inform(device, inform("0 BOOTSTRAP", "1 BOOT"), now=10.0)
    (task,) = store.tasks_for_device(device.id)
    assert task.kind == "provision"

    request = run_provision(engine.open_session(device.id), now=11.0)
    ms = "InternetGatewayDevice.ManagementServer."
    values = {p.name: (p.value, p.type) for p in request.parameters}
    password = values[f"{ms}ConnectionRequestPassword"][0]
    assert values == {
        f"{ms}PeriodicInformEnable": ("true", "xsd:boolean"),
        f"{ms}PeriodicInformInterval": ("600", "xsd:unsignedInt"),
        f"{ms}ConnectionRequestUsername": ("00AABB-Router-SN0001", "xsd:string"),
        f"{ms}ConnectionRequestPassword": (password, "xsd:string"),
    }
    assert len(password) >= 16
    assert request.parameter_key == task_key(task)

    after = store.get_device(device.id)
    assert after is not None and after.provisioned
    assert after.connection_request_username == "00AABB-Router-SN0001"
    assert after.connection_request_password == password
    assert store.get_task(task.id).state == DONE  # type: ignore[union-attr]
    interval = store.get_parameter(device.id, f"{ms}PeriodicInformInterval")
    assert interval is not None and interval.value == "600"
    assert store.get_parameter(device.id, f"{ms}ConnectionRequestPassword") is None


def test_provision_gives_the_device_its_own_acs_credentials(store: Store) -> None:
    # Provisioned before device credentials existed (or its username cleared by an
    # operator): the next Inform provisions it again, with credentials this time.
    device = provisioned(store, make_device(store))
    engine = engine_for(store, device_credentials=True)
    engine.on_inform(device, inform("2 PERIODIC"), now=10.0)
    (task,) = store.tasks_for_device(device.id)
    assert task.kind == "provision"
    request = run_provision(engine.open_session(device.id), now=11.0)
    values = {p.name: p.value for p in request.parameters}
    password = values["Device.ManagementServer.Password"]
    assert values["Device.ManagementServer.Username"] == "00AABB-Router-SN0001"
    assert len(password) >= 32
    assert password != values["Device.ManagementServer.ConnectionRequestPassword"]
    after = store.get_device(device.id)
    assert after is not None
    assert (after.username, after.password) == ("00AABB-Router-SN0001", password)
    assert store.get_task(task.id).result == {  # type: ignore[union-attr]
        "status": 0,
        "credentials_assigned": True,
    }
    # The password is stored for Digest, never in the parameter cache.
    assert store.get_parameter(device.id, "Device.ManagementServer.Password") is None
    # Once it has them, a periodic Inform queues nothing; one an operator set stay as set.
    engine.on_inform(after, inform("2 PERIODIC"), now=20.0)
    assert len(store.tasks_for_device(device.id)) == 1
    own = store.update_device(device.id, now=21.0, actor="t", username="op", password="pw")
    engine.on_inform(own, inform("0 BOOTSTRAP"), now=30.0)
    request = run_provision(engine.open_session(device.id), now=31.0)
    assert not any(p.name.endswith(".Username") for p in request.parameters)
    assert store.get_device(device.id).username == "op"  # type: ignore[union-attr]


def test_provision_turns_stun_on_with_credentials_of_its_own(store: Store) -> None:
    device = make_device(store)
    offer = StunOffer("", 3478, 30)
    engine = engine_for(store, stun=lambda: offer)
    engine.on_inform(device, inform("0 BOOTSTRAP"), now=10.0)
    session = engine.open_session(device.id)
    run_provision(session, now=11.0)
    request = session.next_request(now=11.0)  # the STUN part, in its own request
    assert isinstance(request, rpc.SetParameterValues)
    ms = "Device.ManagementServer."
    values = {p.name: (p.value, p.type) for p in request.parameters}
    username, password = values[f"{ms}STUNUsername"][0], values[f"{ms}STUNPassword"][0]
    assert values == {
        f"{ms}STUNEnable": ("true", "xsd:boolean"),
        f"{ms}STUNServerAddress": ("", "xsd:string"),
        f"{ms}STUNServerPort": ("3478", "xsd:unsignedInt"),
        f"{ms}STUNUsername": (username, "xsd:string"),
        f"{ms}STUNPassword": (password, "xsd:string"),
        f"{ms}STUNMinimumKeepAlivePeriod": ("30", "xsd:unsignedInt"),
        f"{ms}STUNMaximumKeepAlivePeriod": ("30", "xsd:int"),
    }
    assert len(password) >= 16
    session.on_response(rpc.SetParameterValuesResponse(status=0), now=11.0)
    binding = store.stun_credentials(username)
    assert binding is not None and (binding.device_id, binding.password) == (device.id, password)
    [task] = store.tasks_for_device(device.id)
    assert task.result is not None and task.result["stun"] == "enabled"
    assert store.get_parameter(device.id, f"{ms}STUNPassword") is None  # never cached
    # Provisioned again: the same username (its binding stays its own), a new password.
    engine.on_inform(store.get_device(device.id), inform("0 BOOTSTRAP"), now=20.0)  # type: ignore[arg-type]
    session = engine.open_session(device.id)
    run_provision(session, now=21.0)
    again = session.next_request(now=21.0)
    assert isinstance(again, rpc.SetParameterValues)
    renewed = {p.name: p.value for p in again.parameters}
    assert renewed[f"{ms}STUNUsername"] == username
    assert renewed[f"{ms}STUNPassword"] != password


@pytest.mark.parametrize("feature", ["stun", "xmpp"])
def test_provision_of_a_cpe_without_the_feature_stands(store: Store, feature: str) -> None:
    device = make_device(store)
    offers: dict[str, Any] = {
        "stun": {"stun": lambda: StunOffer("stun.example.net", 3478, 60)},
        "xmpp": {"xmpp": XmppOffer("acs@xmpp.example.net")},
    }
    engine = engine_for(store, **offers[feature])
    engine.on_inform(device, inform("0 BOOTSTRAP"), now=10.0)
    session = engine.open_session(device.id)
    run_provision(session, now=11.0)
    assert isinstance(session.next_request(now=11.0), rpc.SetParameterValues)
    session.on_response(rpc.Fault(9005, "Invalid parameter name"), now=11.0)
    [task] = store.tasks_for_device(device.id)
    assert task.state == DONE and task.result is not None and task.result[feature] == "unsupported"
    after = store.get_device(device.id)
    assert after is not None and after.provisioned and after.connection_request_password
    assert store.stun_binding(device.id) is None


def test_provision_without_a_stun_listener_leaves_stun_alone(store: Store) -> None:
    device = make_device(store)
    engine = engine_for(store, stun=lambda: None)  # configured, not listening (yet)
    engine.on_inform(device, inform("0 BOOTSTRAP"), now=10.0)
    session = engine.open_session(device.id)
    run_provision(session, now=11.0)
    assert session.next_request(now=11.0) is None
    [task] = store.tasks_for_device(device.id)
    assert task.result is not None and "stun" not in task.result


def test_provision_generates_a_new_password_per_attempt(store: Store) -> None:
    device = make_device(store)
    engine = engine_for(store, retry_base=10.0)
    engine.on_inform(device, inform("0 BOOTSTRAP"), now=10.0)
    session = engine.open_session(device.id)
    first = session.next_request(now=11.0)
    session.on_response(rpc.Fault(9002, "busy"), now=11.0)
    second = engine.open_session(device.id).next_request(now=30.0)
    assert isinstance(first, rpc.SetParameterValues)
    assert isinstance(second, rpc.SetParameterValues)
    assert first.parameters[3] != second.parameters[3]
    assert store.get_device(device.id).provisioned is False  # type: ignore[union-attr]


def test_provisioning_queued_on_bootstrap_and_first_contact_but_not_twice(store: Store) -> None:
    device = make_device(store)  # first contact: not provisioned yet
    engine = engine_for(store)
    engine.on_inform(device, inform("1 BOOT"), now=10.0)
    engine.on_inform(device, inform("2 PERIODIC"), now=20.0)
    engine.on_inform(device, inform("0 BOOTSTRAP"), now=30.0)
    assert states(store, device) == [("provision", PENDING)]

    run_provision(engine.open_session(device.id), now=40.0)
    device = store.get_device(device.id)  # type: ignore[assignment]
    engine.on_inform(device, inform("2 PERIODIC"), now=50.0)
    assert states(store, device) == [("provision", DONE)]

    engine.on_inform(device, inform("0 BOOTSTRAP", "1 BOOT"), now=60.0)
    assert states(store, device) == [("provision", DONE), ("provision", PENDING)]


def test_provisioning_failed_for_good_is_not_requeued_every_inform(store: Store) -> None:
    device = make_device(store)
    engine = engine_for(store)
    engine.on_inform(device, inform("1 BOOT"), now=10.0)
    session = engine.open_session(device.id)
    session.next_request(now=11.0)
    session.on_response(rpc.Fault(9008, "read-only"), now=11.0)
    engine.on_inform(device, inform("2 PERIODIC"), now=20.0)
    assert states(store, device) == [("provision", FAILED)]
    engine.on_inform(device, inform("2 PERIODIC"), now=20.0 + 3601.0)
    assert states(store, device) == [("provision", FAILED), ("provision", PENDING)]


def test_provision_runs_before_tasks_queued_earlier(store: Store) -> None:
    device = make_device(store)
    engine = engine_for(store)
    engine.queue(device.id, "reboot", actor="op", now=5.0)
    engine.on_inform(device, inform("0 BOOTSTRAP"), now=10.0)
    session = engine.open_session(device.id)
    run_provision(session, now=11.0)
    assert isinstance(session.next_request(now=11.0), rpc.Reboot)


# --- faults, retries, aborts -------------------------------------------------------------


def test_spv_fault_fails_at_once_and_records_parameter_faults(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    task = engine.queue(
        device.id,
        "set_parameter_values",
        {"parameters": [{"name": "Device.X.Port", "value": "99999", "type": "xsd:string"}]},
        actor="op",
        now=10.0,
    )
    session = engine.open_session(device.id)
    session.next_request(now=11.0)
    session.on_response(
        rpc.Fault(
            9003,
            "Invalid arguments",
            faultcode="Client",
            set_parameter_values_faults=(
                rpc.SetParameterValuesFault("Device.X.Port", 9007, "Invalid parameter value"),
            ),
        ),
        now=12.0,
    )
    assert session.next_request(now=12.0) is None
    failed = store.get_task(task.id)
    assert failed is not None and failed.state == FAILED
    assert failed.fault_code == 9003
    assert "Device.X.Port: 9007 Invalid parameter value" in (failed.fault_string or "")
    detail = next(h for h in store.history(device.id) if h.action == "task_fault_detail").detail
    assert detail["parameter_faults"] == [
        {"name": "Device.X.Port", "code": 9007, "string": "Invalid parameter value"}
    ]
    assert store.get_parameter(device.id, "Device.X.Port") is None


@pytest.mark.parametrize("code", [9000, 9003, 9005, 9006, 9007, 9008])
def test_permanent_faults_fail_without_retry(
    engine: TaskEngine, store: Store, device: Device, code: int
) -> None:
    task = engine.queue(device.id, "reboot", actor="op", now=10.0)
    session = engine.open_session(device.id)
    session.next_request(now=11.0)
    session.on_response(rpc.Fault(code, "no"), now=12.0)
    failed = store.get_task(task.id)
    assert failed is not None and (failed.state, failed.attempts) == (FAILED, 1)


def test_transient_fault_retries_with_backoff_until_max_attempts(
    store: Store, device: Device
) -> None:
    engine = engine_for(store, max_attempts=3, retry_base=60.0)
    task = engine.queue(device.id, "reboot", actor="op", now=0.0)

    def attempt(now: float) -> None:
        session = engine.open_session(device.id)
        assert isinstance(session.next_request(now=now), rpc.Reboot)
        session.on_response(rpc.Fault(9002, "Internal error"), now=now)
        assert session.next_request(now=now) is None

    attempt(100.0)
    retry = store.get_task(task.id)
    assert retry is not None
    assert (retry.state, retry.next_attempt_at, retry.fault_code) == (PENDING, 160.0, 9002)
    # Not runnable before its retry time.
    assert engine.open_session(device.id).next_request(now=159.0) is None
    attempt(160.0)
    assert store.get_task(task.id).next_attempt_at == 280.0  # type: ignore[union-attr]
    attempt(280.0)
    failed = store.get_task(task.id)
    assert failed is not None and (failed.state, failed.attempts) == (FAILED, 3)


def test_abort_retries_in_flight_task_and_ends_after_max_attempts(
    store: Store, device: Device
) -> None:
    engine = engine_for(store, max_attempts=2, retry_base=30.0)
    task = engine.queue(device.id, "refresh", actor="op", now=0.0)
    session = engine.open_session(device.id)
    session.next_request(now=10.0)
    session.abort(now=11.0, reason="session timeout")
    retry = store.get_task(task.id)
    assert retry is not None and retry.state == PENDING and retry.next_attempt_at == 41.0
    assert retry.fault_string == "session aborted: session timeout"

    session = engine.open_session(device.id)
    session.next_request(now=50.0)
    session.abort(now=51.0, reason="too many RPCs")
    assert store.get_task(task.id).state == FAILED  # type: ignore[union-attr]


def test_abort_after_acknowledged_reboot_keeps_it_waiting(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    reboot = engine.queue(device.id, "reboot", actor="op", now=0.0)
    refresh = engine.queue(device.id, "refresh", actor="op", now=0.0)
    session = engine.open_session(device.id)
    session.next_request(now=10.0)
    session.on_response(rpc.RebootResponse(), now=10.0)
    assert isinstance(session.next_request(now=10.0), rpc.GetParameterNames)
    session.abort(now=11.0, reason="connection lost")
    assert store.get_task(reboot.id).state == IN_PROGRESS  # type: ignore[union-attr]
    assert store.get_task(refresh.id).state == PENDING  # type: ignore[union-attr]


def test_unexpected_response_type_is_a_retryable_failure(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    task = engine.queue(device.id, "reboot", actor="op", now=0.0)
    session = engine.open_session(device.id)
    session.next_request(now=10.0)
    session.on_response(rpc.GetParameterValuesResponse(()), now=10.0)
    retry = store.get_task(task.id)
    assert retry is not None and retry.state == PENDING
    assert "answered Reboot with GetParameterValuesResponse" in (retry.fault_string or "")


def test_unknown_status_fails_the_task(engine: TaskEngine, store: Store, device: Device) -> None:
    task = engine.queue(
        device.id, "delete_object", {"object_name": "Device.NAT.PortMapping.1."}, actor="op"
    )
    session = engine.open_session(device.id)
    session.next_request(now=10.0)
    session.on_response(rpc.DeleteObjectResponse(status=7), now=10.0)
    assert store.get_task(task.id).state == FAILED  # type: ignore[union-attr]


def test_task_that_cannot_run_fails_instead_of_looping(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    # Bypasses validation as a corrupted or future row would.
    bogus = store.queue_task(device.id, "teleport", {}, now=0.0, actor="op")
    broken = store.queue_task(device.id, "set_parameter_values", {}, now=0.0, actor="op")
    reboot = engine.queue(device.id, "reboot", actor="op", now=0.0)
    session = engine.open_session(device.id)
    assert isinstance(session.next_request(now=10.0), rpc.Reboot)
    assert store.get_task(bogus.id).state == FAILED  # type: ignore[union-attr]
    assert store.get_task(broken.id).state == FAILED  # type: ignore[union-attr]
    assert store.get_task(reboot.id).state == IN_PROGRESS  # type: ignore[union-attr]


def test_zero_retry_delay_does_not_loop_within_a_session(store: Store, device: Device) -> None:
    engine = engine_for(store, retry_base=0.0)
    engine.queue(device.id, "reboot", actor="op", now=0.0)
    session = engine.open_session(device.id)
    session.next_request(now=10.0)
    session.on_response(rpc.Fault(9002, "busy"), now=10.0)
    assert session.next_request(now=10.0) is None


# --- queue order and scheduling ----------------------------------------------------------


def test_tasks_run_fifo_across_kinds_one_at_a_time(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    engine.queue(
        device.id, "get_parameter_attributes", {"parameter_names": ["Device."]}, actor="op"
    )
    engine.queue(device.id, "delete_object", {"object_name": "Device.A.1."}, actor="op")
    engine.queue(device.id, "factory_reset", actor="op")
    session = engine.open_session(device.id)
    answers: dict[type, rpc.Message] = {
        rpc.GetParameterAttributes: rpc.GetParameterAttributesResponse(()),
        rpc.DeleteObject: rpc.DeleteObjectResponse(0),
        rpc.FactoryReset: rpc.FactoryResetResponse(),
    }
    sent = []
    while (request := session.next_request(now=10.0)) is not None:
        sent.append(type(request))
        session.on_response(answers[type(request)], now=10.0)
    assert sent == [rpc.GetParameterAttributes, rpc.DeleteObject, rpc.FactoryReset]


def test_scheduled_task_does_not_run_early(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    later = engine.queue(device.id, "reboot", actor="op", scheduled_at=1000.0, now=0.0)
    now_task = engine.queue(device.id, "factory_reset", actor="op", now=0.0)
    session = engine.open_session(device.id)
    assert session.next_request(now=999.0) == rpc.FactoryReset()
    session.on_response(rpc.FactoryResetResponse(), now=999.0)
    assert session.next_request(now=999.0) is None
    assert store.get_task(now_task.id).state == IN_PROGRESS  # type: ignore[union-attr]
    assert store.get_task(later.id).state == PENDING  # type: ignore[union-attr]
    assert isinstance(engine.open_session(device.id).next_request(now=1000.0), rpc.Reboot)


def test_on_response_without_a_request_is_ignored(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    session = engine.open_session(device.id)
    session.on_response(rpc.RebootResponse(), now=1.0)
    assert session.next_request(now=1.0) is None


# --- Inform-driven recovery and restart safety --------------------------------------------


def test_inform_requeues_stranded_task_but_not_acknowledged_reboot(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    reboot = engine.queue(device.id, "reboot", actor="op", now=0.0)
    refresh = engine.queue(device.id, "refresh", actor="op", now=0.0)
    session = engine.open_session(device.id)
    session.next_request(now=10.0)
    session.on_response(rpc.RebootResponse(), now=10.0)
    session.next_request(now=10.0)  # the refresh is in flight when the process dies
    del session

    fresh = TaskEngine(store, new_clock())
    fresh.on_inform(device, inform("2 PERIODIC"), now=20.0)
    assert store.get_task(refresh.id).state == PENDING  # type: ignore[union-attr]
    assert store.get_task(reboot.id).state == IN_PROGRESS  # type: ignore[union-attr]
    request = fresh.open_session(device.id).next_request(now=20.0)
    assert request == rpc.GetParameterNames("Device.", next_level=False)


@pytest.mark.parametrize("kind", ["reboot", "factory_reset"])
def test_a_reboot_sent_by_a_session_that_died_unanswered_runs_again(
    engine: TaskEngine, store: Store, device: Device, kind: str
) -> None:
    task = engine.queue(device.id, kind, actor="op", now=0.0)
    sent = engine.open_session(device.id).next_request(now=10.0)
    assert isinstance(sent, rpc.Reboot if kind == "reboot" else rpc.FactoryReset)
    # The process dies before the CPE's answer; the CPE informs with no sign of a reboot.
    fresh = TaskEngine(store, new_clock())
    fresh.on_inform(device, inform("6 CONNECTION REQUEST"), now=20.0)
    again = store.get_task(task.id)
    assert again is not None and again.state == PENDING
    assert again.fault_string == f"the session ended before the CPE acknowledged the {kind}"
    assert fresh.open_session(device.id).next_request(now=20.0) == sent


def test_an_acknowledged_reboot_is_not_sent_again_by_an_inform_without_its_events(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    task = engine.queue(device.id, "reboot", actor="op", now=0.0)
    session = engine.open_session(device.id)
    session.next_request(now=10.0)
    session.on_response(rpc.RebootResponse(), now=10.0)
    TaskEngine(store, new_clock()).on_inform(device, inform("2 PERIODIC"), now=20.0)
    after = store.get_task(task.id)
    assert after is not None and after.state == IN_PROGRESS
    assert after.result == {"acknowledged": True}


def test_fresh_engine_on_reopened_database_runs_pending_task(tmp_path: Path) -> None:
    path = tmp_path / "acs.db"
    store = Store.open(path)
    device = provisioned(store, make_device(store))
    task = TaskEngine(store, new_clock()).queue(device.id, "reboot", actor="op", now=0.0)
    store.close()

    store = Store.open(path)
    try:
        engine = TaskEngine(store, new_clock())
        device = store.get_device(device.id)  # type: ignore[assignment]
        engine.on_inform(device, inform("6 CONNECTION REQUEST"), now=5.0)
        session = engine.open_session(device.id)
        assert session.next_request(now=5.0) == rpc.Reboot(task_key(task))
        session.on_response(rpc.RebootResponse(), now=6.0)
        assert session.next_request(now=6.0) is None
        engine.on_inform(device, inform("1 BOOT", ("M Reboot", task_key(task))), now=60.0)
        assert store.get_task(task.id).state == DONE  # type: ignore[union-attr]
    finally:
        store.close()


# --- CPE-initiated requests ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "response", "action"),
    [
        (
            rpc.TransferComplete("k1", rpc.FaultStruct(9010, "failed")),
            rpc.TransferCompleteResponse(),
            "transfer_complete",
        ),
        (
            rpc.AutonomousTransferComplete("", "http://127.0.0.1/f", True, "1 Firmware", 10),
            rpc.AutonomousTransferCompleteResponse(),
            "autonomous_transfer_complete",
        ),
        (
            rpc.RequestDownload("3 Vendor Configuration File", (("Version", "2"),)),
            # Nothing stored to send (tests/test_tasks_file_transfers.py: when there is).
            rpc.Fault(
                8001, "Request denied: no '3 Vendor Configuration File' file for this CPE", "Server"
            ),
            "request_download",
        ),
        (
            rpc.Kicked("cmd", "http://127.0.0.1/r", "a", "http://127.0.0.1/next"),
            rpc.KickedResponse(next_url="http://127.0.0.1/next"),
            "kicked",
        ),
        (
            rpc.GetRPCMethods(),
            # A 1.0 session: no AutonomousTransferComplete (1.1) nor DU reports (1.2).
            rpc.GetRPCMethodsResponse(
                ("Inform", "GetRPCMethods", "TransferComplete", "RequestDownload", "Kicked")
            ),
            "get_rpc_methods",
        ),
    ],
)
def test_cpe_requests_are_answered_and_recorded(
    engine: TaskEngine,
    store: Store,
    device: Device,
    message: rpc.Message,
    response: rpc.Message,
    action: str,
) -> None:
    session = engine.open_session(device.id)
    assert session.on_cpe_request(message, now=5.0) == response
    assert store.history(device.id, limit=1)[0].action == action


@pytest.mark.parametrize(
    ("version", "extra"),
    [
        ("1.1", ("AutonomousTransferComplete",)),
        (
            "1.2",
            (
                "AutonomousTransferComplete",
                "DUStateChangeComplete",
                "AutonomousDUStateChangeComplete",
            ),
        ),
    ],
)
def test_the_acs_lists_the_methods_of_the_session_version(
    engine: TaskEngine, device: Device, version: str, extra: tuple[str, ...]
) -> None:
    answer = engine.open_session(device.id, version).on_cpe_request(rpc.GetRPCMethods(), now=5.0)
    assert isinstance(answer, rpc.GetRPCMethodsResponse)
    assert set(answer.methods) == {
        "Inform", "GetRPCMethods", "TransferComplete", "RequestDownload", "Kicked", *extra
    }  # fmt: skip


def test_transfer_complete_history_holds_the_fault(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    engine.open_session(device.id).on_cpe_request(
        rpc.TransferComplete("k1", rpc.FaultStruct(9010, "download failed")), now=5.0
    )
    detail = store.history(device.id, limit=1)[0].detail
    assert (detail["command_key"], detail["fault_code"]) == ("k1", 9010)


def test_unsupported_cpe_request_gets_method_not_supported(
    engine: TaskEngine, device: Device
) -> None:
    answer = engine.open_session(device.id).on_cpe_request(rpc.RebootResponse(), now=5.0)
    assert isinstance(answer, rpc.Fault) and answer.code == 8000


# --- Inform with little or nothing to do ---------------------------------------------------


def test_inform_of_an_idle_provisioned_device_changes_no_task(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    done = store.queue_task(device.id, "refresh", {}, now=1.0, actor="t")
    store.complete_task(done.id, now=2.0)
    engine.on_inform(device, inform("2 PERIODIC"), now=10.0)
    assert states(store, device) == [("refresh", DONE)]
    assert engine.open_session(device.id).next_request(now=10.0) is None


def test_inform_checks_a_pending_firmware_version_with_no_task_under_way(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    fw = store.queue_task(device.id, "firmware_update", {"firmware_image": 1}, now=1.0, actor="t")
    store.complete_task(
        fw.id, now=2.0, result={"version_check": "pending", "expected_version": "2.0"}
    )
    engine.on_inform(device, factories.inform(SERIAL, "2 PERIODIC", version="2.0"), now=10.0)
    result = store.get_task(fw.id).result  # type: ignore[union-attr]
    assert result is not None
    assert result["version_check"] == "ok" and result["reported_version"] == "2.0"


def test_inform_pushes_device_type_defaults_the_cache_disagrees_with(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    kind = store.create_device_type(
        now=1.0,
        actor="t",
        name="t",
        default_settings={"Device.ManagementServer.PeriodicInformInterval": 300},
    )
    device = store.update_device(device.id, now=3.0, actor="t", type_id=kind.id)
    engine.on_inform(device, inform("2 PERIODIC"), now=10.0)
    assert states(store, device) == [("configuration_update", PENDING)]


def test_value_changes_and_boot_informs_reach_the_stored_tree(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    def carrying(*events: str, value: str) -> rpc.Inform:
        base = inform(*events)
        params = (
            rpc.ParameterValue("Device.WiFi.SSID.1.SSID", value, "xsd:string"),
            rpc.ParameterValue("Device.Bad Name", "x", "xsd:string"),  # not a parameter name
            rpc.ParameterValue("Other.Root.X", "x", "xsd:string"),  # not a data model root
        )
        return dataclasses.replace(base, parameters=params)

    def stored() -> dict[str, str | None]:
        return {p.path: p.value for p in store.get_parameters(device.id, "")}

    engine.on_inform(device, carrying("2 PERIODIC", value="periodic"), now=10.0)
    assert stored() == {}  # periodic Informs carry the device's identity, already stored
    engine.on_inform(device, carrying("4 VALUE CHANGE", value="changed"), now=20.0)
    assert stored() == {"Device.WiFi.SSID.1.SSID": "changed"}
    engine.on_inform(device, carrying("1 BOOT", value="booted"), now=30.0)
    assert stored() == {"Device.WiFi.SSID.1.SSID": "booted"}
    engine.on_inform(device, carrying("10 AUTONOMOUS TRANSFER COMPLETE", value="new"), now=40.0)
    assert stored() == {"Device.WiFi.SSID.1.SSID": "new"}


def autonomous(file_type: str, code: int = 0, *, download: bool = True) -> rpc.Message:
    return rpc.AutonomousTransferComplete(
        "", "http://127.0.0.1/f", download, file_type, 10, fault=rpc.FaultStruct(code)
    )


def test_a_configuration_the_cpe_downloaded_itself_makes_a_sync_read_the_tree(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    session = engine.open_session(device.id, "1.1")
    config = autonomous("3 Vendor Configuration File")
    assert session.on_cpe_request(config, now=5.0) == rpc.AutonomousTransferCompleteResponse()
    [sync] = [t for t in store.tasks_for_device(device.id) if t.kind == "sync"]
    assert (sync.state, sync.actor) == (PENDING, "cpe")
    assert store.history(device.id, limit=1)[0].detail["task_id"] == sync.id
    session.on_cpe_request(config, now=6.0)  # the same sync covers a second one
    for other in (
        autonomous("3 Vendor Configuration File", 9010),
        autonomous("1 Vendor Configuration File", download=False),
        autonomous("2 Web Content"),
    ):
        session.on_cpe_request(other, now=7.0)
        assert "task_id" not in store.history(device.id, limit=1)[0].detail
    assert [t.kind for t in store.tasks_for_device(device.id)] == ["sync"]


def test_a_firmware_the_cpe_installed_itself_is_recorded_with_the_informed_version(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    device = store.update_device(device.id, now=3.0, actor="cpe", software_version="2.0")
    engine.open_session(device.id, "1.1").on_cpe_request(
        autonomous("1 Firmware Upgrade Image"), now=5.0
    )
    entry = store.history(device.id, limit=1)[0]
    assert (entry.action, entry.detail["software_version"]) == (
        "autonomous_transfer_complete", "2.0"
    )  # fmt: skip
    assert store.tasks_for_device(device.id) == []


@pytest.mark.parametrize(("permanent", "state"), [((9000,), PENDING), ((9000, 9002), FAILED)])
def test_which_faults_fail_a_task_at_once_is_configured(
    store: Store, device: Device, permanent: tuple[int, ...], state: str
) -> None:
    engine = engine_for(store, permanent_faults=permanent)
    task = engine.queue(device.id, "get_rpc_methods", actor="op", now=10.0)
    session = engine.open_session(device.id)
    assert session.next_request(now=11.0) == rpc.GetRPCMethods()
    session.on_response(rpc.Fault(9002, "Internal error"), now=12.0)
    assert store.get_task(task.id).state == state  # type: ignore[union-attr]


def test_provision_allows_the_acs_jid_and_reads_the_cpes(store: Store) -> None:
    device = make_device(store)
    engine = engine_for(store, xmpp=XmppOffer("acs@xmpp.example.net"))
    engine.on_inform(device, inform("0 BOOTSTRAP"), now=10.0)
    session = engine.open_session(device.id)
    run_provision(session, now=11.0)
    ms = "Device.ManagementServer."
    allow = session.next_request(now=11.0)
    assert isinstance(allow, rpc.SetParameterValues)
    assert [(p.name, p.value) for p in allow.parameters] == [
        (f"{ms}ConnReqAllowedJabberIDs", "acs@xmpp.example.net")
    ]
    session.on_response(rpc.SetParameterValuesResponse(status=0), now=11.0)
    read = session.next_request(now=11.0)
    assert read == rpc.GetParameterValues(names=(f"{ms}ConnReqJabberID",))
    session.on_response(
        rpc.GetParameterValuesResponse(
            parameters=(
                rpc.ParameterValue(f"{ms}ConnReqJabberID", "cpe-1@xmpp.example.net/cwmp"),
                # Not asked for: not taken.
                rpc.ParameterValue(f"{ms}URL", "http://elsewhere.example/"),
            )
        ),
        now=11.0,
    )
    [task] = store.tasks_for_device(device.id)
    assert task.state == DONE and task.result is not None and task.result["xmpp"] == "enabled"
    jid = store.get_parameter(device.id, f"{ms}ConnReqJabberID")
    assert jid is not None and jid.value == "cpe-1@xmpp.example.net/cwmp"
    assert store.get_parameter(device.id, f"{ms}URL") is None


def accounts_offer(made: list[tuple[str, str]]) -> XmppOffer:
    return XmppOffer(
        "acs@xmpp.example.net",
        accounts=lambda identity: (f"cpe-{identity.lower()}", f"pw-{identity}"),
        ensure=lambda username, password: made.append((username, password)),
        domain="xmpp.example.net",
        server=("xmpp.example.net", 5222),
    )


def test_provision_gives_a_tr181_cpe_an_xmpp_account_of_its_own(store: Store) -> None:
    device = make_device(store)
    made: list[tuple[str, str]] = []
    engine = engine_for(store, xmpp=accounts_offer(made))
    engine.on_inform(device, inform("0 BOOTSTRAP"), now=10.0)
    session = engine.open_session(device.id)
    run_provision(session, now=11.0)
    assert isinstance(session.next_request(now=11.0), rpc.SetParameterValues)  # allow-list
    session.on_response(rpc.SetParameterValuesResponse(status=0), now=11.0)
    account = session.next_request(now=11.0)
    assert isinstance(account, rpc.SetParameterValues)
    c = "Device.XMPP.Connection.1."
    username, password = "cpe-00aabb-router-sn0001", "pw-00AABB-Router-SN0001"
    assert {p.name: p.value for p in account.parameters} == {
        f"{c}Enable": "true",
        f"{c}Username": username,
        f"{c}Password": password,
        f"{c}Domain": "xmpp.example.net",
        f"{c}Resource": "cwmp",
        f"{c}Server.1.Enable": "true",
        f"{c}Server.1.ServerAddress": "xmpp.example.net",
        f"{c}Server.1.Port": "5222",
        "Device.ManagementServer.ConnReqXMPPConnection": "Device.XMPP.Connection.1",
    }
    assert made == [(username, password)]  # the account is made on the server
    session.on_response(rpc.SetParameterValuesResponse(status=0), now=11.0)
    assert isinstance(session.next_request(now=11.0), rpc.GetParameterValues)
    session.on_response(rpc.GetParameterValuesResponse(parameters=()), now=11.0)
    [task] = store.tasks_for_device(device.id)
    assert task.state == DONE and task.result is not None
    assert task.result["xmpp_account"] == f"{username}@xmpp.example.net"
    cached = store.get_parameter(device.id, f"{c}Username")
    assert cached is not None and cached.value == username
    assert store.get_parameter(device.id, f"{c}Password") is None  # never cached


def test_a_cpe_without_an_xmpp_connection_keeps_the_rest(store: Store) -> None:
    device = make_device(store)
    engine = engine_for(store, xmpp=accounts_offer([]))
    engine.on_inform(device, inform("0 BOOTSTRAP"), now=10.0)
    session = engine.open_session(device.id)
    run_provision(session, now=11.0)
    session.next_request(now=11.0)
    session.on_response(rpc.SetParameterValuesResponse(status=0), now=11.0)
    assert isinstance(session.next_request(now=11.0), rpc.SetParameterValues)  # the account
    session.on_response(rpc.Fault(9005, "Invalid parameter name"), now=11.0)
    assert isinstance(session.next_request(now=11.0), rpc.GetParameterValues)
    session.on_response(rpc.Fault(9005, "Invalid parameter name"), now=11.0)
    [task] = store.tasks_for_device(device.id)
    assert task.state == DONE and task.result is not None
    assert (task.result["xmpp"], task.result["xmpp_account"]) == ("enabled", "unsupported")
    allowed = store.get_parameter(device.id, "Device.ManagementServer.ConnReqAllowedJabberIDs")
    assert allowed is not None and allowed.value == "acs@xmpp.example.net"


def test_a_tr098_cpe_gets_no_xmpp_account(store: Store) -> None:
    device = make_device(store, root="InternetGatewayDevice.")
    made: list[tuple[str, str]] = []
    engine = engine_for(store, xmpp=accounts_offer(made))
    engine.on_inform(device, inform("0 BOOTSTRAP"), now=10.0)
    session = engine.open_session(device.id)
    run_provision(session, now=11.0)
    session.next_request(now=11.0)
    session.on_response(rpc.SetParameterValuesResponse(status=0), now=11.0)
    assert isinstance(session.next_request(now=11.0), rpc.GetParameterValues)
    assert made == []
