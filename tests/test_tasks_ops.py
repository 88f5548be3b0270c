"""Tests of the operation task kinds: sync (whole tree into the cache), device_factory_reset
(confirmed by 0 BOOTSTRAP, settings re-applied), and firmware_update's argument validation
(its transfer is tested in test_transfers.py).

The session driver is fed rpc dataclasses against a real in-memory Store, as in test_tasks.py.
"""

from __future__ import annotations

from typing import cast

import factories
import pytest
from factories import informed_device
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock

from acs.cwmp import rpc
from acs.store import (
    DONE,
    IN_PROGRESS,
    PENDING,
    Device,
    Store,
)
from acs.tasks import TASK_KINDS, TaskEngine, validate_args

SERIAL = "SN-OPS-1"


@pytest.fixture
def device(store: Store) -> Device:
    return informed_device(store, SERIAL, provisioned=True)


@pytest.fixture
def engine(store: Store) -> TaskEngine:
    return TaskEngine(store, cast(IReactorTime, Clock()))


def inform(*events: str) -> rpc.Inform:
    return factories.inform(SERIAL, *events)


def kinds_states(store: Store, device: Device) -> list[tuple[str, str]]:
    return [(t.kind, t.state) for t in store.tasks_for_device(device.id)]


def test_ops_kinds_are_published_and_take_no_stray_args() -> None:
    for kind in ("sync", "device_factory_reset", "firmware_update"):
        assert kind in TASK_KINDS
    assert validate_args("sync", None) == {}
    with pytest.raises(ValueError, match="unknown argument"):
        validate_args("device_factory_reset", {"path": "Device."})
    assert validate_args("firmware_update", {"firmware_image": 3}) == {"firmware_image": 3}
    for bad in ({}, {"firmware_image": "3"}, {"firmware_image": True}, {"firmware_image": 0}):
        with pytest.raises(ValueError, match="firmware_image"):
            validate_args("firmware_update", bad)


def test_sync_reads_whole_tree_into_cache_and_sets_last_configuration(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    task = engine.queue(device.id, "sync", actor="op", now=10.0)
    session = engine.open_session(device.id)
    assert session.next_request(now=11.0) == rpc.GetParameterNames("Device.", next_level=False)
    names = ["Device.", "Device.X.", "Device.X.A", "Device.X.B"]
    session.on_response(
        rpc.GetParameterNamesResponse(tuple(rpc.ParameterInfo(n, True) for n in names)), now=12.0
    )
    request = session.next_request(now=12.0)
    assert request == rpc.GetParameterValues(names=("Device.X.A", "Device.X.B"))
    session.on_response(
        rpc.GetParameterValuesResponse(
            (
                rpc.ParameterValue("Device.X.A", "1", "xsd:int"),
                rpc.ParameterValue("Device.X.B", "b", "xsd:string"),
            )
        ),
        now=13.0,
    )
    assert session.next_request(now=13.0) is None
    done = store.get_task(task.id)
    assert done is not None and done.state == DONE and done.result == {"parameters": 2}
    cached = store.get_parameter(device.id, "Device.X.A")
    assert cached is not None and (cached.value, cached.type) == ("1", "xsd:int")
    synced = store.get_device(device.id)
    assert synced is not None and synced.last_configuration == 13.0


def test_device_factory_reset_waits_for_bootstrap_then_completes(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    store.set_desired_settings(device.id, {"Device.X.A": "7"}, now=5.0, actor="op")
    store.confirm_settings(device.id, ["Device.X.A"], now=6.0)
    task = engine.queue(device.id, "device_factory_reset", actor="op", now=10.0)
    session = engine.open_session(device.id)
    assert session.next_request(now=11.0) == rpc.FactoryReset()
    session.on_response(rpc.FactoryResetResponse(), now=12.0)
    assert session.next_request(now=12.0) is None
    engine.on_inform(device, inform("1 BOOT"), now=30.0)
    waiting = store.get_task(task.id)
    assert waiting is not None and waiting.state == IN_PROGRESS  # not requeued as stranded

    engine.on_inform(device, inform("0 BOOTSTRAP", "1 BOOT"), now=60.0)
    states = dict(kinds_states(store, device))
    assert states["device_factory_reset"] == DONE
    assert states["provision"] == PENDING
    # Stored settings are kept and pushed again after the reset.
    assert [s.value for s in store.desired_settings(device.id)] == ["7"]
    assert store.unconfirmed_settings_count(device.id) == 1
    assert states["configuration_update"] == PENDING


def test_device_factory_reset_without_settings_queues_no_push(
    engine: TaskEngine, store: Store, device: Device
) -> None:
    engine.queue(device.id, "device_factory_reset", actor="op", now=10.0)
    session = engine.open_session(device.id)
    session.next_request(now=11.0)
    session.on_response(rpc.FactoryResetResponse(), now=12.0)
    engine.on_inform(device, inform("0 BOOTSTRAP", "1 BOOT"), now=60.0)
    assert "configuration_update" not in dict(kinds_states(store, device))


def test_queueing_a_factory_reset_forgets_the_devices_own_settings(
    store: Store, engine: TaskEngine, device: Device
) -> None:
    """The rule lives in the task kind (wipes_settings), whoever queues the reset."""
    store.set_desired_settings(device.id, {"Device.X.Y": "1"}, now=1.0, actor="t")
    engine.queue(device.id, "device_factory_reset", actor="t", wake=False, now=2.0)
    assert [s.path for s in store.desired_settings(device.id)] == ["Device.X.Y"]
    engine.queue(device.id, "factory_reset", actor="t", wake=False, now=3.0)
    assert store.desired_settings(device.id) == []


def pending_flag(store: Store, device: Device) -> bool:
    fresh = store.get_device(device.id)
    assert fresh is not None
    return fresh.firmware_image_is_pending


def test_firmware_request_replace_withdraw_and_cancel(
    store: Store, engine: TaskEngine, device: Device
) -> None:
    image = store.create_firmware_image(
        name="fw", version="2.0", size=1, sha256="0" * 64, filename="fw.bin", now=1.0
    ).id
    assert engine.set_firmware(device, image, True, actor="ops", now=2.0)
    assert engine.set_firmware(device, image, True, actor="ops", now=3.0)
    # The newer request replaced the older one, and the flag is set.
    assert kinds_states(store, device) == [
        ("firmware_update", "cancelled"),
        ("firmware_update", PENDING),
    ]
    assert pending_flag(store, device) is True
    # Changing only the target queues nothing and withdraws nothing.
    assert not engine.set_firmware(device, image, None, actor="ops", now=4.0)
    assert kinds_states(store, device)[-1] == ("firmware_update", PENDING)
    # Cancelling the last waiting upgrade withdraws it.
    waiting = store.tasks_for_device(device.id, states=(PENDING,))[0]
    engine.cancel(waiting, now=5.0, actor="ops")
    assert pending_flag(store, device) is False
    assert engine.set_firmware(device, image, True, actor="ops", now=6.0)
    assert not engine.set_firmware(device, None, None, actor="ops", now=7.0)
    assert kinds_states(store, device)[-1] == ("firmware_update", "cancelled")
    assert pending_flag(store, device) is False
