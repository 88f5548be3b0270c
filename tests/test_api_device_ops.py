"""Tests of api.device_ops: the operation flags of a device write (validation, queued tasks with
the token's name as actor, schedule_at, firmware, factory wiping settings, waking the device),
pending_settings / pending_details (spec section 6) and refresh_status (update_status=true).

The functions are called directly on a real Appliance (the `harness` fixture: temp DB, Clock
time at T0); connection requests go to a fake requester whose answers the test controls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest
from apiharness import T0, ApiHarness
from twisted.internet.defer import Deferred, ensureDeferred

from acs.clock import iso
from acs.store import CANCELLED, DOWN, PENDING, UP, Device
from api.base import Api, ApiError, ApiRequest, Principal
from api.device_ops import (
    UNSET,
    Operations,
    apply_operations,
    pending_details,
    pending_settings,
    refresh_status,
    take_operations,
)


class FakeConnreq:
    """Stands in for ConnectionRequester: records wakes, answers when the test says so."""

    def __init__(self) -> None:
        self.woken: list[int] = []
        self.waiting: dict[int, Deferred[str]] = {}
        self.answer: Callable[[int], str | None] = lambda _id: None  # None = keep waiting

    def wake(self, device_id: int) -> Deferred[str]:
        self.woken.append(device_id)
        d: Deferred[str] = Deferred(lambda _d: None)
        outcome = self.answer(device_id)
        if outcome is not None:
            d.callback(outcome)
        else:
            self.waiting[device_id] = d
        return d


@pytest.fixture
def connreq(harness: ApiHarness) -> FakeConnreq:
    fake = FakeConnreq()
    harness.appliance.connreq = cast(Any, fake)
    return fake


def api_of(harness: ApiHarness) -> Api:
    return Api(harness.appliance)


def request_as(harness: ApiHarness, name: str = "alice-ops", role: str = "operator") -> ApiRequest:
    row, _ = harness.store.create_token(name, role, [], now=harness.clock.seconds())
    return ApiRequest(cast(Any, None), Principal.of_token(row))


def make_device(harness: ApiHarness, serial: str = "SN-1") -> Device:
    org = harness.store.ensure_organization("Default")
    return harness.store.create_device(
        serial_number=serial, name=serial, organization_id=org.id, now=T0, actor="test"
    )


def make_image(harness: ApiHarness) -> int:
    image = harness.store.create_firmware_image(
        name="fw", version="2.0", size=3, sha256="00", filename="fw.bin", now=T0
    )
    return image.id


def operate(harness: ApiHarness, device: Device, body: dict[str, Any], **kw: Any) -> Operations:
    ops = take_operations(harness.store, body)
    fresh = harness.store.get_device(device.id)
    assert fresh is not None
    apply_operations(api_of(harness), request_as(harness, **kw), fresh, ops)
    return ops


def queued(harness: ApiHarness, device: Device) -> list[tuple[str, str, str]]:
    return [(t.kind, t.state, t.actor) for t in harness.store.tasks_for_device(device.id)]


# --- take_operations ----------------------------------------------------------------------


def test_take_operations_pops_only_operation_keys(harness: ApiHarness) -> None:
    image = make_image(harness)
    body = {
        "name": "kept",
        "reboot": True,
        "sync": False,
        "firmware_image": image,
        "firmware_image_is_pending": True,
        "schedule_at": "2024-01-16T02:00:00Z",
        "debug": True,
    }
    ops = take_operations(harness.store, body)
    assert body == {"name": "kept", "debug": True}
    assert ops == Operations(
        reboot=True,
        firmware_image=image,
        firmware_image_is_pending=True,
        schedule_at=1705370400.0,
    )
    assert ops.any()


def test_take_operations_absent_and_false_flags_are_no_operation(harness: ApiHarness) -> None:
    ops = take_operations(harness.store, {"reboot": False, "factory": "false", "sync": 0})
    assert ops.firmware_image is UNSET and ops.firmware_image_is_pending is None
    assert not ops.any()
    assert not take_operations(harness.store, {}).any()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reboot": "yes"}, "reboot"),
        ({"factory": None}, "factory"),
        ({"sync": 2}, "sync"),
        ({"reconf": [True]}, "reconf"),
        ({"firmware_image": 999}, "firmware_image"),
        ({"firmware_image": "abc"}, "firmware_image"),
        ({"firmware_image": True}, "firmware_image"),
        ({"firmware_image_is_pending": "maybe"}, "firmware_image_is_pending"),
        ({"schedule_at": "tomorrow"}, "schedule_at"),
        ({"schedule_at": 1705370400}, "schedule_at"),
    ],
)
def test_take_operations_rejects_bad_values_with_field_errors(
    harness: ApiHarness, body: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApiError) as caught:
        take_operations(harness.store, dict(body))
    assert caught.value.status == 400
    assert list(caught.value.body) == [field]
    assert isinstance(caught.value.body[field][0], str)


def test_take_operations_reports_every_bad_field_at_once(harness: ApiHarness) -> None:
    body: dict[str, Any] = {"reboot": "x", "firmware_image": 42, "name": "n"}
    with pytest.raises(ApiError) as caught:
        take_operations(harness.store, body)
    assert set(caught.value.body) == {"reboot", "firmware_image"}
    assert "does not exist" in caught.value.body["firmware_image"][0]
    assert body == {"name": "n"}  # popped even on error: no "unknown field" for them


# --- apply_operations ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "kind"),
    [
        ("reboot", "reboot"),
        ("factory", "factory_reset"),
        ("device_factory", "device_factory_reset"),
        ("sync", "sync"),
        ("reconf", "reconf"),
    ],
)
def test_each_flag_queues_its_task_with_token_name_and_wakes(
    harness: ApiHarness, connreq: FakeConnreq, flag: str, kind: str
) -> None:
    device = make_device(harness)
    operate(harness, device, {flag: True}, name="alice-ops")
    assert queued(harness, device) == [(kind, PENDING, "alice-ops")]
    assert connreq.woken == [device.id]
    history = harness.store.history(device.id)
    assert any(
        h.action == "task_queued" and h.detail["kind"] == kind and h.actor == "alice-ops"
        for h in history
    )


def test_false_flags_queue_nothing_and_do_not_wake(
    harness: ApiHarness, connreq: FakeConnreq
) -> None:
    device = make_device(harness)
    operate(harness, device, {"reboot": False, "factory": False, "sync": False})
    assert queued(harness, device) == []
    assert connreq.woken == []


def test_several_flags_queue_in_order_and_wake_once(
    harness: ApiHarness, connreq: FakeConnreq
) -> None:
    device = make_device(harness)
    operate(harness, device, {"reboot": True, "factory": True, "sync": True})
    assert [k for k, _, _ in queued(harness, device)] == ["factory_reset", "sync", "reboot"]
    assert connreq.woken == [device.id]
    assert pending_settings(harness.store, device.id, detailed=False) == (
        "factory_reset,sync,reboot"
    )


def test_schedule_at_delays_tasks_and_does_not_wake(
    harness: ApiHarness, connreq: FakeConnreq
) -> None:
    device = make_device(harness)
    operate(harness, device, {"reboot": True, "schedule_at": "2024-01-16T02:00:00Z"})
    (task,) = harness.store.tasks_for_device(device.id)
    assert task.scheduled_at == 1705370400.0
    assert connreq.woken == []
    assert pending_settings(harness.store, device.id, detailed=False) == "reboot_scheduled"
    assert pending_settings(harness.store, device.id, detailed=True) == (
        "reboot_scheduled:2024-01-16T02:00:00Z"
    )
    assert harness.store.next_task(device.id, now=T0) is None  # not before its time


def test_firmware_update_queued_held_and_cancelled_by_pending_false(
    harness: ApiHarness, connreq: FakeConnreq
) -> None:
    device = make_device(harness)
    image = make_image(harness)
    operate(harness, device, {"firmware_image": image, "firmware_image_is_pending": True})
    fresh = harness.store.get_device(device.id)
    assert fresh is not None
    assert (fresh.firmware_image_id, fresh.firmware_image_is_pending) == (image, True)
    (task,) = harness.store.tasks_for_device(device.id)
    assert (task.kind, task.args, task.state) == (
        "firmware_update",
        {"firmware_image": image},
        PENDING,
    )
    assert connreq.woken == [device.id]
    assert pending_settings(harness.store, device.id, detailed=True) == "firmware_update:pending"

    operate(harness, device, {"firmware_image_is_pending": False})
    cancelled = harness.store.get_task(task.id)
    assert cancelled is not None and cancelled.state == CANCELLED
    fresh = harness.store.get_device(device.id)
    assert fresh is not None and fresh.firmware_image_is_pending is False
    assert fresh.firmware_image_id == image  # the target stays; only the upgrade is withdrawn
    assert pending_settings(harness.store, device.id, detailed=False) is None


def test_firmware_request_replaces_an_older_waiting_one(
    harness: ApiHarness, connreq: FakeConnreq
) -> None:
    device = make_device(harness)
    first, second = make_image(harness), make_image(harness)
    operate(harness, device, {"firmware_image": first, "firmware_image_is_pending": True})
    operate(harness, device, {"firmware_image": second, "firmware_image_is_pending": True})
    tasks = harness.store.tasks_for_device(device.id)
    assert [(t.state, t.args["firmware_image"]) for t in tasks] == [
        (CANCELLED, first),
        (PENDING, second),
    ]


def test_firmware_image_null_clears_target_and_withdraws_upgrade(
    harness: ApiHarness, connreq: FakeConnreq
) -> None:
    device = make_device(harness)
    image = make_image(harness)
    operate(harness, device, {"firmware_image": image, "firmware_image_is_pending": True})
    operate(harness, device, {"firmware_image": None})
    fresh = harness.store.get_device(device.id)
    assert fresh is not None
    assert (fresh.firmware_image_id, fresh.firmware_image_is_pending) == (None, False)
    assert [t.state for t in harness.store.tasks_for_device(device.id)] == [CANCELLED]
    assert pending_details(harness.store, device.id)["firmware_update"] is False


def test_firmware_pending_without_any_image_is_refused_before_writing(
    harness: ApiHarness, connreq: FakeConnreq
) -> None:
    device = make_device(harness)
    with pytest.raises(ApiError) as caught:
        operate(harness, device, {"firmware_image_is_pending": True, "reboot": True})
    assert caught.value.status == 400 and "firmware_image_is_pending" in caught.value.body
    assert queued(harness, device) == []
    with pytest.raises(ApiError):
        operate(harness, device, {"firmware_image": None, "firmware_image_is_pending": True})


def test_firmware_image_alone_sets_target_without_upgrade(
    harness: ApiHarness, connreq: FakeConnreq
) -> None:
    device = make_device(harness)
    image = make_image(harness)
    operate(harness, device, {"firmware_image": image})
    fresh = harness.store.get_device(device.id)
    assert fresh is not None and fresh.firmware_image_id == image
    assert not fresh.firmware_image_is_pending
    assert queued(harness, device) == []
    # ... and the pending flag later upgrades to that stored target.
    operate(harness, device, {"firmware_image_is_pending": True})
    assert [t.args for t in harness.store.tasks_for_device(device.id)] == [
        {"firmware_image": image}
    ]


def test_factory_wipes_stored_settings(harness: ApiHarness, connreq: FakeConnreq) -> None:
    store = harness.store
    device = make_device(harness)
    store.set_desired_settings(device.id, {"Device.WiFi.SSID.1.SSID": "home"}, now=T0, actor="test")
    assert store.desired_settings(device.id)
    operate(harness, device, {"factory": True})
    assert store.desired_settings(device.id) == []


# --- pending_settings / pending_details ---------------------------------------------------


def test_pending_settings_lists_items_in_queue_order_with_states(harness: ApiHarness) -> None:
    store = harness.store
    device = make_device(harness)
    assert pending_settings(store, device.id, detailed=False) is None
    store.queue_task(device.id, "firmware_update", {"firmware_image": 1}, now=T0, actor="t")
    store.queue_task(device.id, "refresh", {}, now=T0, actor="t")  # internal: not listed
    sync = store.queue_task(device.id, "sync", {}, now=T0, actor="t")
    store.queue_task(device.id, "reboot", {}, now=T0, actor="t", scheduled_at=T0 + 3600)
    store.queue_task(device.id, "provision", {}, now=T0, actor="acs", front=True)
    store.start_task(sync.id, now=T0 + 1)
    assert pending_settings(store, device.id, detailed=False) == (
        "firmware_update,sync,reboot_scheduled"
    )
    assert pending_settings(store, device.id, detailed=True) == (
        f"firmware_update:pending,sync:in_progress,reboot_scheduled:{iso(T0 + 3600)}"
    )


def test_pending_settings_shows_failed_firmware_while_still_pending(
    harness: ApiHarness,
) -> None:
    store = harness.store
    device = make_device(harness)
    image = make_image(harness)
    store.update_device(
        device.id, now=T0, actor="t", firmware_image_id=image, firmware_image_is_pending=True
    )
    task = store.queue_task(
        device.id, "firmware_update", {"firmware_image": image}, now=T0, actor="t"
    )
    store.start_task(task.id, now=T0)
    store.fail_task(task.id, now=T0 + 5, fault_code=9010, fault_string="dl", retry_at=None)
    assert pending_settings(store, device.id, detailed=True) == "firmware_update:failed"
    assert pending_details(store, device.id)["firmware_update"] is True
    store.update_device(device.id, now=T0, actor="t", firmware_image_is_pending=False)
    assert pending_settings(store, device.id, detailed=True) is None


def test_finished_tasks_leave_pending_settings(harness: ApiHarness) -> None:
    store = harness.store
    device = make_device(harness)
    task = store.queue_task(device.id, "reboot", {}, now=T0, actor="t")
    assert pending_settings(store, device.id, detailed=True) == "reboot:pending"
    store.start_task(task.id, now=T0)
    assert pending_settings(store, device.id, detailed=True) == "reboot:in_progress"
    store.complete_task(task.id, now=T0 + 60)
    assert pending_settings(store, device.id, detailed=True) is None


def test_pending_details_counts_and_last_change(harness: ApiHarness) -> None:
    store = harness.store
    device = make_device(harness)
    assert pending_details(store, device.id) == {
        "configuration_updates": 0,
        "firmware_update": False,
        "last_pending_change": None,
    }
    store.queue_task(device.id, "reboot", {}, now=T0 + 10, actor="t")
    store.queue_task(device.id, "firmware_update", {"firmware_image": 1}, now=T0 + 20, actor="t")
    details = pending_details(store, device.id)
    assert details["firmware_update"] is True
    assert details["last_pending_change"] == iso(T0 + 20)


def test_unconfirmed_settings_show_as_configuration_update(harness: ApiHarness) -> None:
    store = harness.store
    device = make_device(harness)
    store.set_desired_settings(
        device.id, {"Device.A.B": "1", "Device.A.C": "2"}, now=T0 + 5, actor="t"
    )
    assert pending_settings(store, device.id, detailed=True) == "configuration_update:pending"
    details = pending_details(store, device.id)
    assert details["configuration_updates"] == 2
    assert details["last_pending_change"] == iso(T0 + 5)


# --- refresh_status ------------------------------------------------------------------------


def run_refresh(harness: ApiHarness, ids: list[int]) -> Deferred[None]:
    return ensureDeferred(refresh_status(api_of(harness), ids))


def test_refresh_status_returns_when_all_answered(
    harness: ApiHarness, connreq: FakeConnreq
) -> None:
    a, b = make_device(harness, "A"), make_device(harness, "B")
    connreq.answer = lambda _id: "answered"
    done = run_refresh(harness, [a.id, b.id, a.id])
    assert done.called
    assert connreq.woken == [a.id, b.id]  # each device once


def test_refresh_status_marks_silent_devices_down_at_the_deadline(
    harness: ApiHarness, connreq: FakeConnreq
) -> None:
    live, silent = make_device(harness, "LIVE"), make_device(harness, "SILENT")
    harness.store.set_status(silent.id, UP, now=T0)
    done = run_refresh(harness, [live.id, silent.id])
    assert not done.called  # waits without blocking
    connreq.waiting.pop(live.id).callback("answered")
    harness.clock.advance(4.9)
    assert not done.called
    harness.clock.advance(0.2)  # update_status_timeout defaults to 5 s
    assert done.called
    assert harness.store.get_device(silent.id).status == DOWN
    # The waiter was detached (cancelled), as ConnectionRequester.wake allows.
    assert connreq.waiting.pop(silent.id).called
    assert not harness.clock.getDelayedCalls()


def test_refresh_status_with_no_devices_is_immediate(harness: ApiHarness) -> None:
    assert run_refresh(harness, []).called


# --- through the HTTP API (the device routes call this module) -----------------------------


def device_url(device: Device) -> str:
    return f"/api/v1/inventory_device/{device.id}/"


def test_patch_reboot_over_http_queues_and_shows_pending(
    harness: ApiHarness, connreq: FakeConnreq
) -> None:
    device = make_device(harness)
    token = harness.token("operator", name="night-shift")
    reply = harness.call("PATCH", device_url(device), token=token, json_body={"reboot": True})
    assert reply.status == 200, reply.json
    assert reply.json["pending_settings"] == "reboot"
    assert queued(harness, device) == [("reboot", PENDING, "night-shift")]
    assert connreq.woken == [device.id]
    detailed = harness.call("GET", device_url(device) + "?pending=true", token=token)
    assert detailed.json["pending_settings"] == "reboot:pending"


def test_patch_with_bad_operation_values_is_400_and_changes_nothing(
    harness: ApiHarness, connreq: FakeConnreq
) -> None:
    device = make_device(harness)
    token = harness.token("operator")
    for body, field in (
        ({"firmware_image": 77, "firmware_image_is_pending": True}, "firmware_image"),
        ({"reboot": True, "schedule_at": "not a date"}, "schedule_at"),
        ({"name": "renamed", "sync": "sometimes"}, "sync"),
    ):
        reply = harness.call("PATCH", device_url(device), token=token, json_body=body)
        assert reply.status == 400, (body, reply.json)
        assert field in reply.json
    assert queued(harness, device) == []
    assert harness.store.get_device(device.id).name == device.name  # type: ignore[union-attr]
    assert connreq.woken == []


def test_viewer_cannot_trigger_operations(harness: ApiHarness, connreq: FakeConnreq) -> None:
    device = make_device(harness)
    reply = harness.call(
        "PATCH", device_url(device), token=harness.token("viewer"), json_body={"reboot": True}
    )
    assert reply.status == 403
    assert queued(harness, device) == []


def test_patch_schedule_at_over_http_shows_scheduled_time(
    harness: ApiHarness, connreq: FakeConnreq
) -> None:
    device = make_device(harness)
    image = make_image(harness)
    token = harness.token("operator")
    harness.call(
        "PATCH",
        device_url(device),
        token=token,
        json_body={"firmware_image": image, "firmware_image_is_pending": True},
    )
    reply = harness.call(
        "PATCH",
        device_url(device),
        token=token,
        json_body={"reboot": True, "schedule_at": "2024-01-16 02:00:00"},
    )
    assert reply.status == 200, reply.json
    assert reply.json["firmware_image"] == image
    assert reply.json["firmware_image_is_pending"] is True
    detailed = harness.call("GET", device_url(device) + "?pending=true", token=token)
    assert detailed.json["pending_settings"] == (
        "firmware_update:pending,reboot_scheduled:2024-01-16T02:00:00Z"
    )
    assert connreq.woken == [device.id]  # the firmware request woke it; the scheduled one not


def test_operations_are_in_device_history_with_token_name(
    harness: ApiHarness, connreq: FakeConnreq
) -> None:
    device = make_device(harness)
    token = harness.token("operator", name="audit-me")
    harness.call("PATCH", device_url(device), token=token, json_body={"sync": True})
    reply = harness.call("GET", device_url(device) + "history/", token=token)
    if reply.status == 404:
        entries = [(h.action, h.actor, h.detail) for h in harness.store.history(device.id)]
    else:
        entries = [(e["action"], e["actor"], e["detail"]) for e in reply.json["results"]]
    assert any(
        action == "task_queued" and actor == "audit-me" and detail["kind"] == "sync"
        for action, actor, detail in entries
    )


def test_update_status_over_http_reports_up_and_down(
    harness: ApiHarness, connreq: FakeConnreq
) -> None:
    make_device(harness, "LIVE")
    dead = make_device(harness, "DEAD")
    harness.store.set_status(dead.id, UP, now=T0)

    def answered_marks_up(device_id: int) -> str | None:
        if device_id == dead.id:
            return None
        harness.store.set_status(device_id, UP, now=harness.clock.seconds())
        return "answered"

    connreq.answer = answered_marks_up
    token = harness.token("operator")
    outcome: list[Any] = []
    stub: Any = harness.stub  # StubTreq builds its methods at runtime
    d = stub.request(
        "GET",
        "http://testserver/api/v1/inventory_device/?update_status=true",
        headers={"Authorization": [f"Bearer {token}"]},
    )
    d.addCallback(stub.json_content).addCallback(outcome.append)
    harness.stub.flush()
    assert outcome == []  # still waiting for the silent device, reactor free
    harness.clock.advance(5)
    harness.stub.flush()
    (body,) = outcome
    statuses = {r["serial_number"]: r["status"] for r in body["results"]}
    assert statuses == {"LIVE": "Up", "DEAD": "Down"}
