"""Builders shared by the store and task-engine tests: a device that has informed once, and
Inform messages from it."""

from __future__ import annotations

from acs.cwmp import rpc
from acs.store import Store
from acs.store.models import Device, InformRecord


def inform_record(serial: str, *, root: str = "Device.", version: str = "1.0") -> InformRecord:
    return InformRecord(
        manufacturer="Acme",
        oui="00AABB",
        product_class="Router",
        serial_number=serial,
        software_version=version,
        hardware_version="A",
        connection_request_url="http://127.0.0.1:7999/cr",
        data_model_root=root,
        address="127.0.0.1",
        event_codes=("1 BOOT",),
    )


def informed_device(
    store: Store,
    serial: str,
    *,
    root: str = "Device.",
    version: str = "1.0",
    provisioned: bool = False,
) -> Device:
    """A device of the Default organization that has informed once (at t=1)."""
    org = store.ensure_organization("Default")
    device = store.create_device(
        serial_number=serial, name=serial, organization_id=org.id, now=0.0, actor="test"
    )
    device = store.record_inform(
        device.id, inform_record(serial, root=root, version=version), now=1.0
    )
    if provisioned:
        device = store.update_device(device.id, now=1.0, actor="test", provisioned=True)
    return device


def wakeable_device(store: Store, *, now: float) -> int:
    """The id of a TR-181 device SN1 that informed from 127.0.0.1 and has the
    connection-request credentials cr / crpw (no ConnectionRequestURL)."""
    org = store.ensure_organization("Default").id
    device = store.create_device(
        serial_number="SN1", name="cpe", organization_id=org, now=now, actor="t"
    ).id
    store.update_device(
        device, now=now, actor="t", address="127.0.0.1", data_model_root="Device.",
        connection_request_username="cr", connection_request_password="crpw",
    )  # fmt: skip
    return device


def give_type(store: Store, device: int, *order: str, now: float) -> None:
    """Give ``device`` a device type of its own whose connection_request_order is ``order``."""
    kind = store.create_device_type(name="t", connection_request_order=order, now=now, actor="t")
    store.update_device(device, now=now, actor="t", type_id=kind.id)


def inform(serial: str, *events: str | tuple[str, str], version: str | None = None) -> rpc.Inform:
    """An Inform from `serial` carrying `events` (code, or (code, command key))."""
    structs = tuple(
        rpc.EventStruct(e) if isinstance(e, str) else rpc.EventStruct(e[0], e[1]) for e in events
    )
    params = (
        (rpc.ParameterValue("Device.DeviceInfo.SoftwareVersion", version),)
        if version is not None
        else ()
    )
    return rpc.Inform(
        device_id=rpc.DeviceId("Acme", "00AABB", "Router", serial),
        events=structs,
        current_time="2024-01-01T00:00:00Z",
        parameters=params,
    )
