"""Device representations of the REST API: the flat view by id (spec section 3) and the
nested view by serial number (section 4), over the one `Device` row.

Owns which fields each view shows and how they are formatted: times through
:func:`api.base.iso` (UTC, ``Z``, second precision), coordinates as decimal strings. Secrets
never appear: the CPE's password, the connection-request credentials and anything the store
keeps for the ACS's own use are simply not read here.
"""

from __future__ import annotations

from typing import Any

from acs.store import Store
from acs.store.models import UP, Device
from api import device_ops
from api.base import iso

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


def device_flat(store: Store, device: Device, *, detailed_pending: bool) -> dict[str, Any]:
    """The section 3 representation (the seed's detail example's key order)."""
    device_type = None if device.type_id is None else store.get_device_type(device.type_id)
    location = None if device.location_id is None else store.get_location(device.location_id)
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
        "pending_settings": device_ops.pending_settings(
            store, device.id, detailed=detailed_pending
        ),
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
    store: Store, device: Device, *, detail: bool, with_pending_details: bool = False
) -> dict[str, Any]:
    """The section 4 representation; ``detail`` adds the type's manufacturer, the
    organization's code, mac_address, description, firmware_version and pending_details
    (``with_pending_details`` adds only the latter, for ``?pending=true`` lists)."""
    device_type = None if device.type_id is None else store.get_device_type(device.type_id)
    type_body: dict[str, Any] | None = None
    if device_type is not None:
        type_body = {"id": device_type.id, "name": device_type.name, "model": device_type.model}
        if detail:
            type_body["manufacturer"] = device_type.manufacturer
    organization = store.get_organization(device.organization_id)
    org_body: dict[str, Any] = {
        "id": device.organization_id,
        "name": None if organization is None else organization.name,
    }
    if detail:
        org_body["code"] = None if organization is None else organization.code
    location = None if device.location_id is None else store.get_location(device.location_id)

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
    body["pending_changes"] = (
        device_ops.pending_settings(store, device.id, detailed=False) is not None
    )
    if detail or with_pending_details:
        body["pending_details"] = device_ops.pending_details(store, device.id)
    body["created_at"] = iso(device.created)
    body["updated_at"] = iso(device.last_change)
    return body
