"""The scheduler (acs/scheduler.py), driven by a task.Clock: a scheduled task is held until its
time, its device is woken at that time (once per device per due batch), and the next session
runs it.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from apiharness import ApiHarness
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock

from acs.cwmp import rpc
from acs.scheduler import Scheduler
from acs.store import Device, Store
from acs.tasks import SessionTasks, TaskEngine

T = 1000.0


class Wakes:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, int]] = []

    def __call__(self, device_id: int) -> Deferred[str]:
        self.sent.append((self.clock.seconds(), device_id))
        return succeed("answered")


@pytest.fixture
def clock() -> Clock:
    c = Clock()
    c.advance(T)
    return c


@pytest.fixture
def wakes(clock: Clock) -> Wakes:
    return Wakes(clock)


@pytest.fixture
def scheduler(store: Store, clock: Clock, wakes: Wakes) -> Any:
    service = Scheduler(store, clock, wake=wakes, interval=5.0)
    service.startService()
    yield service
    service.stopService()
    assert clock.getDelayedCalls() == []  # the loop is gone with the service


def make_device(store: Store, serial: str) -> Device:
    org = store.ensure_organization("Default")
    return store.create_device(
        serial_number=serial, name=serial, organization_id=org.id, now=0.0, actor="test"
    )


def test_scheduled_reboot_does_not_run_before_its_time_and_runs_after_it(
    store: Store, clock: Clock, wakes: Wakes, scheduler: Scheduler
) -> None:
    device = make_device(store, "SN-SCHED-1")
    engine = TaskEngine(store, cast(IReactorTime, clock), wake=wakes)
    reboot = engine.queue(device.id, "reboot", actor="op", scheduled_at=T + 100)
    assert wakes.sent == []  # a future task wakes nobody now

    clock.advance(50)
    early = SessionTasks(engine, device.id)
    assert early.next_request(now=clock.seconds()) is None  # a session before gets no Reboot
    assert wakes.sent == []

    clock.advance(45)
    assert wakes.sent == []
    clock.advance(5)  # T + 100: the time has come
    assert wakes.sent == [(T + 100, device.id)]
    clock.advance(60)
    assert wakes.sent == [(T + 100, device.id)]  # woken once

    session = SessionTasks(engine, device.id)
    request = session.next_request(now=clock.seconds())
    assert isinstance(request, rpc.Reboot)
    assert request.command_key == f"acs-task-{reboot.id}"
    wake = next(h for h in store.history(device.id) if h.action == "scheduled_wake")
    assert (wake.time, wake.detail) == (T + 100, {"task_ids": [reboot.id]})


def test_one_wake_per_device_per_due_batch(
    store: Store, clock: Clock, wakes: Wakes, scheduler: Scheduler
) -> None:
    a, b = make_device(store, "SN-A"), make_device(store, "SN-B")
    for kind in ("reboot", "sync"):
        store.queue_task(a.id, kind, {}, now=T, actor="op", scheduled_at=T + 7)
    store.queue_task(b.id, "reboot", {}, now=T, actor="op", scheduled_at=T + 9)
    store.queue_task(b.id, "sync", {}, now=T, actor="op", scheduled_at=T + 12)
    clock.advance(10)
    assert wakes.sent == [(T + 10, a.id), (T + 10, b.id)]
    clock.advance(5)
    assert wakes.sent[2:] == [(T + 15, b.id)]  # b's second task came due in a later batch
    assert scheduler.recent[0][1:] == (a.id, (1, 2))


def test_tasks_that_came_due_while_stopped_are_woken_at_start(
    store: Store, clock: Clock, wakes: Wakes
) -> None:
    device = make_device(store, "SN-LATE")
    store.queue_task(device.id, "reboot", {}, now=T - 500, actor="op", scheduled_at=T - 100)
    gone = make_device(store, "SN-GONE")
    store.queue_task(gone.id, "reboot", {}, now=T - 500, actor="op", scheduled_at=T - 50)
    store.delete_device(gone.id, now=T - 10, actor="op")
    service = Scheduler(store, clock, wake=wakes, interval=5.0)
    service.startService()
    try:
        assert wakes.sent == [(T, device.id)]
        clock.advance(30)
        assert wakes.sent == [(T, device.id)]
    finally:
        service.stopService()


def test_cancelled_and_immediate_tasks_are_not_woken(
    store: Store, clock: Clock, wakes: Wakes, scheduler: Scheduler
) -> None:
    device = make_device(store, "SN-CANCEL")
    task = store.queue_task(device.id, "reboot", {}, now=T, actor="op", scheduled_at=T + 5)
    store.queue_task(device.id, "sync", {}, now=T, actor="op")  # not scheduled
    store.cancel_task(task.id, now=T + 1, actor="op")
    clock.advance(20)
    assert wakes.sent == []


def test_a_failing_query_is_retried_with_the_same_window(
    store: Store, clock: Clock, wakes: Wakes, scheduler: Scheduler
) -> None:
    device = make_device(store, "SN-RETRY")
    store.queue_task(device.id, "reboot", {}, now=T, actor="op", scheduled_at=T + 3)
    real = store.tasks_coming_due
    calls: list[int] = []

    def broken(**kwargs: Any) -> Any:
        calls.append(1)
        raise RuntimeError("database is locked")

    store.tasks_coming_due = broken  # type: ignore[method-assign]
    clock.advance(5)
    assert calls and wakes.sent == []
    store.tasks_coming_due = real  # type: ignore[method-assign]
    clock.advance(5)
    assert wakes.sent == [(T + 10, device.id)]


def test_interval_must_be_positive(store: Store, clock: Clock, wakes: Wakes) -> None:
    with pytest.raises(ValueError):
        Scheduler(store, clock, wake=wakes, interval=0)


def test_the_appliance_runs_the_scheduler(harness: ApiHarness) -> None:
    scheduler = harness.appliance.scheduler
    assert isinstance(scheduler, Scheduler)
    assert harness.appliance.service.getServiceNamed("scheduler") is scheduler


def test_work_stranded_by_a_restart_is_woken_at_start(
    store: Store, clock: Clock, wakes: Wakes
) -> None:
    # Queued while the previous process ran; its connection request died with it.
    queued = make_device(store, "SN-QUEUED")
    store.queue_task(queued.id, "reboot", {}, now=T - 50, actor="op")
    running = make_device(store, "SN-RUNNING")
    task = store.queue_task(running.id, "sync", {}, now=T - 50, actor="op")
    store.start_task(task.id, now=T - 40)
    waiting = make_device(store, "SN-LATER")  # a retry not due yet: woken when it is
    later = store.queue_task(waiting.id, "sync", {}, now=T - 50, actor="op")
    store.start_task(later.id, now=T - 40)
    store.fail_task(later.id, now=T - 30, fault_code=None, fault_string="x", retry_at=T + 12)
    service = Scheduler(store, clock, wake=wakes, interval=5.0)
    service.startService()
    try:
        assert sorted(d for _, d in wakes.sent) == sorted([queued.id, running.id])
        clock.advance(10)
        assert [d for _, d in wakes.sent[2:]] == []
        clock.advance(5)
        assert wakes.sent[2:] == [(T + 15, waiting.id)]
    finally:
        service.stopService()


def test_the_first_look_leaves_devices_whose_session_runs_now_alone(
    store: Store, clock: Clock, wakes: Wakes
) -> None:
    # Another worker (or this one, before the first look) runs these sessions: their tasks
    # are theirs, and a connection request now would only disturb the CPE.
    node = store.register_node("other-worker", None, now=T)
    in_session, lease_over, free = (make_device(store, f"SN-{n}") for n in ("IN", "OVER", "FREE"))
    for device, until in ((in_session, T + 60), (lease_over, T - 1)):
        assert store.take_device_session(device.id, node, now=T - 5, until=until) is None
    for device in (in_session, lease_over, free):
        task = store.queue_task(device.id, "sync", {}, now=T - 5, actor="op")
        store.start_task(task.id, now=T - 5)
        store.queue_task(device.id, "reboot", {}, now=T - 5, actor="op")
    service = Scheduler(store, clock, wake=wakes, interval=5.0)
    service.startService()
    try:
        assert sorted(d for _, d in wakes.sent) == sorted([lease_over.id, free.id])
    finally:
        service.stopService()


def test_a_retry_coming_due_wakes_its_device_once(
    store: Store, clock: Clock, wakes: Wakes, scheduler: Scheduler
) -> None:
    device = make_device(store, "SN-RETRY")
    task = store.queue_task(device.id, "sync", {}, now=T, actor="op")
    store.start_task(task.id, now=T)
    store.fail_task(task.id, now=T, fault_code=9002, fault_string="x", retry_at=T + 60)
    clock.advance(55)
    assert wakes.sent == []
    clock.advance(5)
    assert wakes.sent == [(T + 60, device.id)]
    clock.advance(60)
    assert wakes.sent == [(T + 60, device.id)]


def test_wakes_are_paced_at_max_wakes_per_tick_in_due_order(
    store: Store, clock: Clock, wakes: Wakes
) -> None:
    devices = [make_device(store, f"SN-MANY-{i}") for i in range(5)]
    for i, device in enumerate(devices):
        store.queue_task(device.id, "reboot", {}, now=T - 100 + i, actor="op")
    service = Scheduler(store, clock, wake=wakes, interval=5.0, max_wakes=2)
    service.startService()
    try:
        assert [d for _, d in wakes.sent] == [devices[0].id, devices[1].id]
        clock.advance(5)
        clock.advance(5)
        assert [d for _, d in wakes.sent] == [d.id for d in devices]
        assert [t for t, _ in wakes.sent] == [T, T, T + 5, T + 5, T + 10]
    finally:
        service.stopService()
