"""Tests of the schedule_inform task kind (TR-069 ScheduleInform, declared in
acs.tasks.kinds) and of its API operation (PATCH /inventory_device/<id>/ with
{"schedule_inform": {"delay_seconds": N}}).

The session driver is fed rpc dataclasses against a real in-memory Store, as in test_tasks.py;
the engine runs on a task.Clock and every time is passed explicitly. The API tests use the
in-memory API harness (Clock time at T0).
"""

from __future__ import annotations

from typing import Any, cast

import factories
import pytest
from apiharness import ApiHarness
from factories import informed_device
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock

from acs.cwmp import rpc
from acs.store import DONE, FAILED, IN_PROGRESS, PENDING, Device, Store
from acs.tasks import TaskEngine, task_key, validate_args
from api.device_ops import Operations, take_operations
from api.openapi import SCHEMAS

SERIAL = "SN-SI-1"


@pytest.fixture
def device(store: Store) -> Device:
    return informed_device(store, SERIAL, provisioned=True)


@pytest.fixture
def engine(store: Store) -> TaskEngine:
    return TaskEngine(store, cast(IReactorTime, Clock()), confirm_timeout=900.0)


def inform(*events: str | tuple[str, str]) -> rpc.Inform:
    return factories.inform(SERIAL, *events)


def scheduled(engine: TaskEngine, device: Device, delay: int = 60) -> int:
    """Queue a schedule_inform at t=10, send it at t=11, the CPE accepts it at t=12."""
    task = engine.queue(device.id, "schedule_inform", {"delay_seconds": delay}, actor="op", now=10)
    session = engine.open_session(device.id)
    assert session.next_request(now=11.0) == rpc.ScheduleInform(delay, task_key(task))
    session.on_response(rpc.ScheduleInformResponse(), now=12.0)
    assert session.next_request(now=12.0) is None
    return task.id


def state(store: Store, task_id: int) -> str:
    task = store.get_task(task_id)
    assert task is not None
    return task.state


# --- arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize("delay", [1, 60, 86400, 159.0])
def test_delay_seconds_within_bounds_is_accepted(delay: float) -> None:
    # 159.0 is an integer to JSON Schema (found by make fuzz): stored as 159.
    checked = validate_args("schedule_inform", {"delay_seconds": delay})
    assert checked == {"delay_seconds": int(delay)}
    assert type(checked["delay_seconds"]) is int


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (None, "delay_seconds must be an integer from 1 to 86400"),
        ({"delay_seconds": 0}, "from 1 to 86400"),
        ({"delay_seconds": -5}, "from 1 to 86400"),
        ({"delay_seconds": 86401}, "from 1 to 86400"),
        ({"delay_seconds": True}, "must be an integer"),
        ({"delay_seconds": "60"}, "must be an integer"),
        ({"delay_seconds": 1.5}, "must be an integer"),
        ({"delay_seconds": 60, "when": 1}, "unknown argument\\(s\\) for schedule_inform: when"),
        ({"delay_seconds": 60, "command_key": "k" * 33}, "command_key must be printable ASCII"),
        ({"delay_seconds": 60, "command_key": "k\n"}, "command_key must be printable ASCII"),
    ],
)
def test_bad_arguments_are_refused(args: dict[str, Any] | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_args("schedule_inform", args)


# --- the RPC and its confirmation ---------------------------------------------------------


def test_accepted_schedule_waits_in_progress_for_its_inform(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    task_id = scheduled(engine, device)
    task = store.get_task(task_id)
    assert task is not None and task.state == IN_PROGRESS
    assert task.result == {"acknowledged": True}


def test_scheduled_inform_with_the_task_key_completes_it(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    task_id = scheduled(engine, device)
    key = f"acs-task-{task_id}"
    engine.on_inform(device, inform("3 SCHEDULED", ("M ScheduleInform", key)), now=72.0)
    done = store.get_task(task_id)
    assert done is not None and done.state == DONE
    assert done.result == {"events": ["3 SCHEDULED", "M ScheduleInform"]}


def test_a_chosen_command_key_is_sent_and_confirms_the_task(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    args = {"delay_seconds": 30, "command_key": "maintenance-7"}
    task = engine.queue(device.id, "schedule_inform", args, actor="op", now=10)
    session = engine.open_session(device.id)
    assert session.next_request(now=11.0) == rpc.ScheduleInform(30, "maintenance-7")
    session.on_response(rpc.ScheduleInformResponse(), now=12.0)
    own_key = ("M ScheduleInform", task_key(task))
    engine.on_inform(device, inform("3 SCHEDULED", own_key), now=40.0)
    assert state(store, task.id) == IN_PROGRESS  # the key sent was the caller's
    engine.on_inform(device, inform("3 SCHEDULED", ("M ScheduleInform", "maintenance-7")), now=41.0)
    assert state(store, task.id) == DONE


@pytest.mark.parametrize(
    "events",
    [
        ("2 PERIODIC",),
        ("3 SCHEDULED",),  # somebody else's schedule (no M ScheduleInform of ours)
        ("3 SCHEDULED", ("M ScheduleInform", "another-key")),
        (("M ScheduleInform", "KEY"),),  # without 3 SCHEDULED: not a scheduled Inform
        ("1 BOOT", ("M Reboot", "KEY")),
    ],
)
def test_other_informs_do_not_complete_it(
    engine: TaskEngine, store: Store, device: Device, events: tuple[Any, ...]
) -> None:
    task_id = scheduled(engine, device)
    key = f"acs-task-{task_id}"
    events = tuple((e[0], key) if isinstance(e, tuple) and e[1] == "KEY" else e for e in events)
    engine.on_inform(device, inform(*events), now=72.0)
    assert state(store, task_id) == IN_PROGRESS


def test_unconfirmed_schedule_fails_after_its_delay_plus_the_confirm_timeout(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    # Started at t=11 with delay 3600: a reboot would time out at 911, this one at 4511.
    task_id = scheduled(engine, device, delay=3600)
    engine.on_inform(device, inform("2 PERIODIC"), now=4500.0)
    assert state(store, task_id) == IN_PROGRESS
    engine.on_inform(device, inform("2 PERIODIC"), now=4512.0)
    failed = store.get_task(task_id)
    assert failed is not None and failed.state == FAILED
    assert failed.fault_string == (
        "the CPE did not confirm the schedule_inform within 4500s (Inform events: 2 PERIODIC)"
    )
    assert failed.next_attempt_at is None  # not retried: the CPE may yet inform late


def test_cpe_fault_fails_it_for_good(engine: TaskEngine, store: Store, device: Device) -> None:
    task = engine.queue(device.id, "schedule_inform", {"delay_seconds": 5}, actor="op", now=10)
    session = engine.open_session(device.id)
    session.next_request(now=11.0)
    session.on_response(rpc.Fault(9003, "Invalid arguments", "Client"), now=12.0)
    failed = store.get_task(task.id)
    assert failed is not None and failed.state == FAILED
    assert failed.fault_code == 9003 and failed.next_attempt_at is None


def test_schedule_sent_but_never_answered_runs_again(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    # The session died (crash) after sending it: the next Inform shows no schedule of ours.
    task = engine.queue(device.id, "schedule_inform", {"delay_seconds": 5}, actor="op", now=10)
    engine.open_session(device.id).next_request(now=11.0)
    engine.on_inform(device, inform("2 PERIODIC"), now=30.0)
    again = store.get_task(task.id)
    assert again is not None and again.state == PENDING
    assert "before the CPE acknowledged the schedule_inform" in (again.fault_string or "")


def test_retried_schedule_is_confirmed_by_its_key(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    # The RPC reached the CPE but the session was aborted before the answer: pending again,
    # yet the CPE's scheduled Inform with the task's key proves it was done.
    task = engine.queue(device.id, "schedule_inform", {"delay_seconds": 5}, actor="op", now=10)
    session = engine.open_session(device.id)
    session.next_request(now=11.0)
    session.abort(now=12.0, reason="timeout")
    assert state(store, task.id) == PENDING
    engine.on_inform(device, inform("3 SCHEDULED", ("M ScheduleInform", task_key(task))), now=20)
    assert state(store, task.id) == DONE


# --- the API operation ----------------------------------------------------------------------


def make_device(harness: ApiHarness) -> Device:
    org = harness.store.ensure_organization("Default")
    return harness.store.create_device(
        serial_number="SN-API-SI", name="d", organization_id=org.id, now=0.0, actor="test"
    )


def test_take_operations_reads_its_arguments(harness: ApiHarness) -> None:
    body = {"name": "kept", "schedule_inform": {"delay_seconds": 30}}
    ops = take_operations(harness.store, body)
    assert body == {"name": "kept"}
    assert ops == Operations(schedule_inform={"delay_seconds": 30})
    assert ops.any()
    assert not take_operations(harness.store, {"schedule_inform": False}).any()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"delay_seconds": 0}, "delay_seconds must be an integer from 1 to 86400"),
        ({}, "delay_seconds must be an integer from 1 to 86400"),
        (True, "delay_seconds must be an integer from 1 to 86400"),
        ({"delay": 5}, "unknown argument(s) for schedule_inform: delay"),
        ("soon", "Must be an object of arguments or a boolean."),
        (None, "Must be an object of arguments or a boolean."),
        ([30], "Must be an object of arguments or a boolean."),
    ],
)
def test_patch_with_bad_schedule_inform_is_a_field_error(
    harness: ApiHarness, value: Any, message: str
) -> None:
    device = make_device(harness)
    reply = harness.call(
        "PATCH",
        f"/api/v1/inventory_device/{device.id}/",
        token=harness.token("operator"),
        json_body={"schedule_inform": value},
    )
    assert reply.status == 400
    assert reply.json == {"schedule_inform": [message]}
    assert harness.store.tasks_for_device(device.id) == []


def test_patch_queues_it_with_its_arguments_and_lists_it_pending(harness: ApiHarness) -> None:
    device = make_device(harness)
    token = harness.token("operator", name="alice-ops")
    reply = harness.call(
        "PATCH",
        f"/api/v1/inventory_device/{device.id}/?pending=true",
        token=token,
        json_body={"schedule_inform": {"delay_seconds": 120}, "reboot": True},
    )
    assert reply.status == 200, reply.json
    tasks = harness.store.tasks_for_device(device.id)
    assert [(t.kind, t.args, t.actor) for t in tasks] == [
        ("schedule_inform", {"delay_seconds": 120}, "alice-ops"),
        ("reboot", {}, "alice-ops"),
    ]
    assert reply.json["pending_settings"] == "schedule_inform:pending,reboot:pending"


def test_openapi_documents_the_operation_and_its_bounds() -> None:
    flag = SCHEMAS["DevicePatch"]["properties"]["schedule_inform"]
    [schema] = [option for option in flag["anyOf"] if option.get("type") == "object"]
    assert schema["required"] == ["delay_seconds"]
    bounds = schema["properties"]["delay_seconds"]
    assert (bounds["minimum"], bounds["maximum"]) == (1, 86400)
