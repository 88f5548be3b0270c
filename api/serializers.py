"""Device representations of the REST API: the flat view by id (spec section 3) and the
nested view by serial number (section 4), over the one `Device` row.

Owns which fields each view shows and how they are formatted: times through
:func:`api.base.iso` (UTC, ``Z``, second precision), coordinates as decimal strings. Secrets
never appear: the CPE's password, the connection-request credentials and anything the store
keeps for the ACS's own use are simply not read here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from acs.clock import iso
from acs.store import Store
from acs.store.models import UP, Device, DeviceType, Location, Organization
from api import device_ops

# Where a CPE reports its WAN/LAN MAC address, most telling first (TR-098, then TR-181).
MAC_PARAMETERS = (
    "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1.MACAddress",
    "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANPPPConnection.1.MACAddress",
    "InternetGatewayDevice.WANDevice.1.WANEthernetInterfaceConfig.MACAddress",
    "InternetGatewayDevice.LANDevice.1.LANHostConfigManagement.MACAddress",
    "InternetGatewayDevice.LANDevice.1.LANEthernetInterfaceConfig.1.MACAddress",
    "Device.Ethernet.Link.1.MACAddress",
    "Device.Ethernet.Interface.1.MACAddress",
)
_NO_MAC = frozenset({"", "00:00:00:00:00:00"})


class Related:
    """What the representations show of rows other than the device (its type, location,
    organization and pending work), read for a whole list page in a handful of queries
    rather than several per device."""

    def __init__(self, store: Store, devices: Sequence[Device]) -> None:
        self.types: dict[int, DeviceType] = store.device_types_by_id(
            d.type_id for d in devices if d.type_id is not None
        )
        self.locations: dict[int, Location] = store.locations_by_id(
            d.location_id for d in devices if d.location_id is not None
        )
        self.organizations: dict[int, Organization] = store.organizations_by_id(
            d.organization_id for d in devices
        )
        self.pending = device_ops.PendingWork(store, devices)
        self.tags: dict[int, list[str]] = store.tags_by_device(d.id for d in devices)

    def device_type(self, device: Device) -> DeviceType | None:
        return None if device.type_id is None else self.types.get(device.type_id)

    def location(self, device: Device) -> Location | None:
        return None if device.location_id is None else self.locations.get(device.location_id)


def devices_flat(
    store: Store, devices: Sequence[Device], *, detailed_pending: bool
) -> list[dict[str, Any]]:
    """A list page of :func:`device_flat` representations."""
    related = Related(store, devices)
    return [
        device_flat(store, d, detailed_pending=detailed_pending, related=related) for d in devices
    ]


def devices_nested(
    store: Store, devices: Sequence[Device], *, with_pending_details: bool
) -> list[dict[str, Any]]:
    """A list page of :func:`device_nested` list representations (``detail=False``)."""
    related = Related(store, devices)
    return [
        device_nested(
            store, d, detail=False, with_pending_details=with_pending_details, related=related
        )
        for d in devices
    ]


def device_flat(
    store: Store, device: Device, *, detailed_pending: bool, related: Related | None = None
) -> dict[str, Any]:
    """The section 3 representation (the seed's detail example's key order); ``related``
    holds the page's prefetched rows (else they are read for this device alone)."""
    if related is None:
        related = Related(store, [device])
    device_type = related.device_type(device)
    location = related.location(device)
    return {
        "id": device.id,
        "uuid": device.uuid,
        "name": device.name,
        "customer_id": device.customer_id,
        "is_active": device.is_active,
        "status": device.status,
        "status_change": iso(device.status_change),
        "type": device.type_id,
        "type_short_name": None if device_type is None else device_type.short_name,
        "software_version": device.software_version,
        "hardware_version": device.hardware_version,
        "manufacturer": device.manufacturer,
        "unique_identifier": device.unique_identifier,
        "product_class": device.product_class,
        "serial_number": device.serial_number,
        "serial_number_alt": device.serial_number_alt,
        "description": device.description,
        "organization_id": device.organization_id,
        "firmware_image": device.firmware_image_id,
        "firmware_image_is_pending": device.firmware_image_is_pending,
        "location_name": None if location is None else location.name,
        "location": device.location_id,
        "location_short_name": None if location is None else location.short_name,
        "latitude": device.latitude,
        "longitude": device.longitude,
        "username": device.username,
        "update_frequency": device.update_frequency,
        "address": device.address,
        "last_connection": iso(device.last_connection),
        "last_configuration": iso(device.last_configuration),
        "last_change": iso(device.last_change),
        "created": iso(device.created),
        "debug": device.debug,
        "pending_settings": related.pending.settings(device, detailed=detailed_pending),
        "tags": related.tags.get(device.id, []),
    }


def mac_address(store: Store, device: Device) -> str | None:
    """The CPE's WAN (else LAN) MAC from the cached parameter tree; None if unknown."""
    for path in MAC_PARAMETERS:
        if device.data_model_root is not None and not path.startswith(device.data_model_root):
            continue
        parameter = store.get_parameter(device.id, path)
        if parameter is not None and parameter.value is not None:
            value = parameter.value.strip()
            if value.upper() not in _NO_MAC:
                return value
    return None


def device_nested(
    store: Store,
    device: Device,
    *,
    detail: bool,
    with_pending_details: bool = False,
    related: Related | None = None,
) -> dict[str, Any]:
    """The section 4 representation; ``detail`` adds the type's manufacturer, the
    organization's code, mac_address, description, firmware_version and pending_details
    (``with_pending_details`` adds only the latter, for ``?pending=true`` lists).
    ``related`` holds the page's prefetched rows (else they are read for this device)."""
    if related is None:
        related = Related(store, [device])
    device_type = related.device_type(device)
    type_body: dict[str, Any] | None = None
    if device_type is not None:
        type_body = {"id": device_type.id, "name": device_type.name, "model": device_type.model}
        if detail:
            type_body["manufacturer"] = device_type.manufacturer
    organization = related.organizations.get(device.organization_id)
    org_body: dict[str, Any] = {
        "id": device.organization_id,
        "name": None if organization is None else organization.name,
    }
    if detail:
        org_body["code"] = None if organization is None else organization.code
    location = related.location(device)

    body: dict[str, Any] = {
        "serial_number": device.serial_number,
        "name": device.name,
        "type": type_body,
        "organization": org_body,
        "status": device.status == UP,
        "last_status_change": iso(device.status_change),
        "ip_address": device.address,
    }
    if detail:
        body["mac_address"] = mac_address(store, device)
    body["location"] = None if location is None else location.name
    if detail:
        body["description"] = device.description
        body["firmware_version"] = device.software_version
    body["pending_changes"] = related.pending.settings(device, detailed=False) is not None
    if detail or with_pending_details:
        body["pending_details"] = related.pending.details(device)
    body["created_at"] = iso(device.created)
    body["updated_at"] = iso(device.last_change)
    body["tags"] = related.tags.get(device.id, [])
    return body
