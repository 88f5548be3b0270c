"""``/inventory_device_serial/``: devices by serial number, nested representation (spec
section 4; the newer text of seed 002).

Owns the serial routes. The device is addressed by its exact, case-sensitive
``serial_number`` (which may contain ``.``, ``-``, ``_`` and ``:``); a write whose body names
another ``serial_number`` renames it (409 if taken). Filters, paging, ``update_status``,
saving and deletion are the flat view's (:mod:`api.devices`); validation is
:func:`api.validation.device_write`.
"""

from __future__ import annotations

from api import validation
from api.base import Api, ApiRequest, Result, route
from api.devices import (
    Reply,
    Serialize,
    delete_device,
    list_devices_page,
    respond_with,
    save_device,
)
from api.docs import CREATE, DETAIL, DEVICE_FILTERS, READ, WRITE, Doc, list_responses
from api.serializers import device_nested, devices_nested

PATH = "/inventory_device_serial/<string:serial>/"


def _detail(api: Api) -> Serialize:
    return lambda device: device_nested(api.store, device, detail=True)


@route(
    "/inventory_device_serial/",
    methods=("GET",),
    role="viewer",
    doc=Doc(
        "list_devices_nested",
        "List devices (nested view)",
        "inventory_device_serial",
        "DeviceNestedPage",
        params=DEVICE_FILTERS,
        errors=READ,
        responses=list_responses("DeviceNestedPage"),
    ),
)
def list_devices_by_serial(api: Api, req: ApiRequest) -> Reply:
    """Same filters as ``/inventory_device/``; ``pending=true`` adds ``pending_details``."""
    return list_devices_page(
        api,
        req,
        lambda page, pending: devices_nested(api.store, page, with_pending_details=pending),
    )


@route(
    "/inventory_device_serial/",
    methods=("POST",),
    role="admin",
    doc=Doc(
        "create_device_nested",
        "Create a device (nested view)",
        "inventory_device_serial",
        "DeviceNestedDetail",
        201,
        body="DeviceNestedCreate",
        errors=CREATE,
    ),
)
def create_device_by_serial(api: Api, req: ApiRequest) -> Result:
    body = req.json_object()
    write = validation.device_write("nested", api.store, req.principal, body, mode="create")
    device = save_device(api, req, write, None)
    return 201, _detail(api)(device)


@route(
    PATH,
    methods=("GET",),
    role="viewer",
    doc=Doc(
        "get_device_nested",
        "One device by serial number (nested view)",
        "inventory_device_serial",
        "DeviceNestedDetail",
        params=("update_status",),
        errors=DETAIL,
    ),
)
def get_device_by_serial(api: Api, req: ApiRequest, serial: str) -> Reply:
    return respond_with(api, req, api.device_by_serial(req, serial), _detail(api))


def _write(api: Api, req: ApiRequest, serial: str, mode: validation.Mode) -> Result:
    device = api.device_by_serial(req, serial)
    body = req.json_object()
    write = validation.device_write(
        "nested", api.store, req.principal, body, mode=mode, current=device
    )
    updated = save_device(api, req, write, device)
    return 200, _detail(api)(updated)


@route(
    PATH,
    methods=("PUT",),
    role="operator",
    doc=Doc(
        "replace_device_nested",
        "Replace a device by serial number",
        "inventory_device_serial",
        "DeviceNestedDetail",
        body="DeviceNestedReplace",
        errors=(*WRITE, "Conflict"),
    ),
)
def replace_device_by_serial(api: Api, req: ApiRequest, serial: str) -> Result:
    """Full replacement: omitted type/location/description reset; status, ip_address and
    organization kept unless given; a different serial_number renames."""
    return _write(api, req, serial, "replace")


@route(
    PATH,
    methods=("PATCH",),
    role="operator",
    doc=Doc(
        "patch_device_nested",
        "Update a device by serial number",
        "inventory_device_serial",
        "DeviceNestedDetail",
        body="DeviceNestedPatch",
        errors=(*WRITE, "Conflict"),
    ),
)
def update_device_by_serial(api: Api, req: ApiRequest, serial: str) -> Result:
    return _write(api, req, serial, "update")


@route(
    PATH,
    methods=("DELETE",),
    role="admin",
    doc=Doc(
        "delete_device_nested",
        "Delete a device by serial number",
        "inventory_device_serial",
        None,
        204,
        params=("force",),
        errors=("BadRequest", "NotFound", "Conflict"),
    ),
)
def remove_device_by_serial(api: Api, req: ApiRequest, serial: str) -> Result:
    return delete_device(api, req, api.device_by_serial(req, serial))
