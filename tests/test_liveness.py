"""The liveness sweep, driven by task.Clock against a real (in-memory) store."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock

from acs.liveness import DOWN_REASON, LivenessSweep
from acs.store import Store
from acs.store.models import DOWN, UP

T0 = 1_700_000_000.0
FREQ = 300
WINDOW = 2 * FREQ + 60  # 660 s


@pytest.fixture
def clock() -> Clock:
    c = Clock()
    c.advance(T0)
    return c


def _device(store: Store, serial: str, *, up_at: float | None) -> int:
    org = store.ensure_organization("Default")
    device = store.create_device(
        serial_number=serial,
        name=serial,
        organization_id=org.id,
        now=T0,
        actor="test",
        update_frequency=FREQ,
    )
    if up_at is not None:
        store.set_status(device.id, UP, now=up_at, reason="test contact")
    return device.id


def _status(store: Store, device_id: int) -> str:
    device = store.get_device(device_id)
    assert device is not None
    return device.status


def _status_entries(store: Store, device_id: int) -> list[dict[str, Any]]:
    return [e.detail for e in store.history(device_id) if e.action == "status"]


def test_device_goes_down_within_one_interval_after_its_window(store: Store, clock: Clock) -> None:
    device_id = _device(store, "SN1", up_at=T0)
    sweep = LivenessSweep(store, clock, interval=5.0)
    sweep.startService()
    try:
        clock.pump([5.0] * (WINDOW // 5))  # exactly at the window edge: still Up
        assert clock.seconds() == T0 + WINDOW
        assert _status(store, device_id) == UP
        clock.advance(5.0)  # first sweep past the edge
        assert _status(store, device_id) == DOWN
        down_time = store.get_device(device_id).status_change  # type: ignore[union-attr]
        assert T0 + WINDOW < down_time <= T0 + WINDOW + 10
    finally:
        sweep.stopService()


def test_transition_is_recorded_once_with_the_reason(store: Store, clock: Clock) -> None:
    device_id = _device(store, "SN1", up_at=T0)
    sweep = LivenessSweep(store, clock, interval=5.0)
    sweep.startService()
    try:
        clock.pump([5.0] * (WINDOW // 5 + 20))
    finally:
        sweep.stopService()
    downs = [d for d in _status_entries(store, device_id) if d["to"] == DOWN]
    assert downs == [{"from": UP, "to": DOWN, "reason": DOWN_REASON}]


def test_contact_inside_the_window_keeps_device_up(store: Store, clock: Clock) -> None:
    device_id = _device(store, "SN1", up_at=T0)
    sweep = LivenessSweep(store, clock, interval=5.0)
    sweep.startService()
    try:
        clock.pump([5.0] * 100)  # 500 s
        store.set_status(device_id, UP, now=clock.seconds())  # a new session
        clock.pump([5.0] * 100)  # 1000 s after T0, 500 s after contact
        assert _status(store, device_id) == UP
    finally:
        sweep.stopService()


def test_sweep_returns_only_devices_it_marked_down(store: Store, clock: Clock) -> None:
    stale = _device(store, "SN-stale", up_at=T0)
    fresh = _device(store, "SN-fresh", up_at=T0 + 600)
    never = _device(store, "SN-never", up_at=None)  # Down from creation
    clock.advance(WINDOW + 1)
    sweep = LivenessSweep(store, clock)
    assert sweep.sweep() == [stale]
    assert sweep.sweep() == []
    assert _status(store, fresh) == UP
    assert _status(store, never) == DOWN


def test_stopping_cancels_the_loop(store: Store, clock: Clock) -> None:
    sweep = LivenessSweep(store, clock, interval=5.0)
    sweep.startService()
    assert clock.getDelayedCalls()
    sweep.stopService()
    assert not clock.getDelayedCalls()
    assert not sweep.running


def test_a_store_error_does_not_stop_future_sweeps(store: Store, clock: Clock) -> None:
    device_id = _device(store, "SN1", up_at=T0)
    calls = {"n": 0}
    real = store.devices_due_down

    def flaky(now: float) -> list[int]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("database is locked")
        return real(now)

    store.devices_due_down = flaky  # type: ignore[method-assign]
    clock.advance(WINDOW + 1)
    sweep = LivenessSweep(store, clock, interval=5.0)
    sweep.startService()  # first sweep fails (logged)
    try:
        assert _status(store, device_id) == UP
        clock.advance(5.0)
        assert _status(store, device_id) == DOWN
    finally:
        sweep.stopService()


def test_interval_must_be_positive(store: Store, clock: Clock) -> None:
    with pytest.raises(ValueError):
        LivenessSweep(store, clock, interval=0)


def test_a_backlog_larger_than_one_chunk_is_marked_down_in_one_sweep(
    store: Store, clock: Clock
) -> None:
    org = store.ensure_organization("Default")
    ids = []
    with store.transaction():
        for n in range(520):
            device = store.create_device(
                serial_number=f"SN{n:04d}",
                name=f"cpe {n}",
                organization_id=org.id,
                now=T0,
                actor="test",
                update_frequency=FREQ,
            )
            store.set_status(device.id, UP, now=T0)
            ids.append(device.id)
    clock.advance(WINDOW + 1)
    assert sorted(LivenessSweep(store, clock).sweep()) == ids
    assert {_status(store, i) for i in ids} == {DOWN}
