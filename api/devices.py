"""``/inventory_device/``: devices by id, flat representation (spec sections 1-3).

Owns the flat routes and the pieces both device views share (the serial view in
:mod:`api.serial` reuses them): list filters and paging (:func:`list_devices_page`), the
``update_status`` refresh (:func:`respond_with`), saving a validated write
(:func:`save_device`) and deletion (:func:`delete_device`). Body validation lives in
:mod:`api.validation`, representations in :mod:`api.serializers`, device operations in
:mod:`api.device_ops`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from acs.store.models import IN_PROGRESS, Device, DeviceFilter, DeviceOrder
from api import device_ops, search, validation
from api.base import (
    Api,
    ApiError,
    ApiRequest,
    Result,
    conflict,
    field_error,
    forbidden,
    not_found,
    route,
    store_errors,
)
from api.device_csv import CsvExport
from api.docs import CREATE, DETAIL, DEVICE_FILTERS, READ, WRITE, Doc, list_responses
from api.serializers import device_flat, devices_flat

# What the device lists take besides their filters (api.search).
LIST_OPTIONS = ("limit", "offset", "pending", "update_status", "format", "ordering")

Serialize = Callable[[Device], dict[str, Any]]
# (page of devices, pending flag) -> their representations, related rows read in one go.
SerializePage = Callable[[list[Device], bool], list[dict[str, Any]]]
Reply = Result | Coroutine[Any, Any, Result]


# --- shared by both device views ------------------------------------------------------------


def device_filter(req: ApiRequest) -> DeviceFilter:
    """The list filters of the query string (:mod:`api.search`), confined to the token's
    organizations; anything else in the query is a 400."""
    return search.parse_filters(req.query_lists(), req.principal, allowed=LIST_OPTIONS)


def _wants_csv(req: ApiRequest) -> bool:
    kind = req.query().get("format") or "json"  # ?format= is no format (allowEmptyValue)
    if kind not in ("json", "csv"):
        raise field_error("format", "Use json (the default) or csv.")
    return kind == "csv"


def device_order(req: ApiRequest) -> DeviceOrder:
    """``ordering=<field>`` (ascending) or ``-<field>``; absent or empty: by id."""
    raw = req.query().get("ordering") or "id"
    column = search.ORDERINGS.get(raw.removeprefix("-"))
    if column is None:
        raise field_error(
            "ordering", f"Sort by one of {', '.join(search.ORDERINGS)}; - for descending."
        )
    return DeviceOrder(column, descending=raw.startswith("-"))


def wants_update_status(req: ApiRequest) -> bool:
    """``update_status=true``: an operator's privilege (it makes the ACS contact CPEs)."""
    wanted = req.query_bool("update_status")
    if wanted and not req.principal.has_role("operator"):
        raise forbidden("update_status needs the operator role.")
    return wanted


def list_devices_page(api: Api, req: ApiRequest, serialize: SerializePage) -> Reply:
    """One page of the devices the token may see; ``serialize(devices, pending)``. With
    ``format=csv``, every device selected instead, as CSV (:mod:`api.device_csv`)."""
    filters = device_filter(req)
    if _wants_csv(req):
        return 200, CsvExport(api.store, filters)
    limit, offset = req.page_params()
    order = device_order(req)
    pending = req.query_bool("pending")
    refresh = wants_update_status(req)
    total, devices = api.store.devices_page(filters, limit=limit, offset=offset, order=order)
    if not refresh or not devices:
        return 200, req.page(total, serialize(devices, pending), limit, offset)

    async def refreshed() -> Result:
        await device_ops.refresh_status(api, [d.id for d in devices])
        # Statuses changed under us: serialise fresh rows (dropping any deleted meanwhile).
        fresh = [api.store.get_device(d.id) for d in devices]
        results = serialize([d for d in fresh if d is not None], pending)
        return 200, req.page(total, results, limit, offset)

    return refreshed()


def respond_with(api: Api, req: ApiRequest, device: Device, serialize: Serialize) -> Reply:
    """200 with one device, after an ``update_status`` refresh when asked for."""
    if not wants_update_status(req):
        return 200, serialize(device)

    async def refreshed() -> Result:
        await device_ops.refresh_status(api, [device.id])
        fresh = api.store.get_device(device.id)
        if fresh is None:
            raise not_found("No device with this id.")
        return 200, serialize(fresh)

    return refreshed()


_NO_DEVICE = "No device with this id."


def save_device(
    api: Api,
    req: ApiRequest,
    write: validation.DeviceWrite,
    current: Device | None,
    *,
    check: Callable[[Device], None] | None = None,
) -> Device:
    """Create (``current`` None) or update a device from a validated write, atomically:
    the location found or created by name, the device row, its history (actor = the token's
    name). ``check(device)`` runs last inside the transaction; raising rolls it all back.
    Conflicts are 409."""
    store = api.store
    now = api.now()
    actor = req.principal.name
    conflict_detail = (
        "A device with this serial number (or alternative serial number) already exists."
    )
    with (
        store_errors(conflict_detail=conflict_detail, not_found_detail=_NO_DEVICE),
        store.transaction(),
    ):
        device = write.save(store, current, now=now, actor=actor)
        if check is not None:
            check(device)
    return device


def delete_device(api: Api, req: ApiRequest, device: Device) -> Result:
    """204; 409 while a CWMP session or a firmware transfer is under way, unless forced."""
    force = req.query_bool("force")
    if not force:
        if api.appliance.cwmp.in_session(device.id):
            raise conflict(
                "A CWMP session with this device is in progress; retry later or use ?force=true."
            )
        running = api.store.tasks_for_device(device.id, states=(IN_PROGRESS,))
        if any(task.kind == "firmware_update" for task in running):
            raise conflict(
                "A firmware transfer to this device is in flight; retry later or use ?force=true."
            )
    with store_errors(not_found_detail=_NO_DEVICE):
        api.appliance.storage.delete_device(device.id, now=api.now(), actor=req.principal.name)
    return 204, None


# --- the flat view ----------------------------------------------------------------------


def _flat(api: Api, req: ApiRequest) -> Serialize:
    detailed = req.query_bool("pending")
    return lambda device: device_flat(api.store, device, detailed_pending=detailed)


@route(
    "/inventory_device/",
    methods=("GET",),
    role="viewer",
    doc=Doc(
        "list_devices",
        "List devices (flat view)",
        "inventory_device",
        "DevicePage",
        params=DEVICE_FILTERS,
        errors=READ,
        responses=list_responses("DevicePage"),
    ),
)
def list_devices(api: Api, req: ApiRequest) -> Reply:
    """Devices by id: the list filters (api.search); limit/offset; ordering; pending;
    update_status; format=csv."""
    return list_devices_page(
        api, req, lambda page, pending: devices_flat(api.store, page, detailed_pending=pending)
    )


@route(
    "/inventory_device/",
    methods=("POST",),
    role="admin",
    doc=Doc(
        "create_device",
        "Create a device",
        "inventory_device",
        "Device",
        201,
        body="DeviceCreate",
        errors=CREATE,
        description="Duplicate serial_number (or a serial_number_alt equal to another device's "
        "serial) -> 409.",
    ),
)
def create_device(api: Api, req: ApiRequest) -> Result:
    """Create a device (201); operation keys in the body are applied after creation."""
    body = req.json_object()
    ops = device_ops.take_operations(api.store, body)
    write = validation.device_write("flat", api.store, req.principal, body, mode="create")
    device = save_device(api, req, write, None, check=lambda d: device_ops.check_operations(d, ops))
    device_ops.apply_operations(api, req, device, ops)
    return 201, _flat(api, req)(_fresh(api, device))


@route(
    "/inventory_device/<int:device_id>/",
    methods=("GET",),
    role="viewer",
    doc=Doc(
        "get_device",
        "One device (flat view)",
        "inventory_device",
        "Device",
        params=("pending", "update_status"),
        errors=DETAIL,
    ),
)
def get_device(api: Api, req: ApiRequest, device_id: int) -> Reply:
    return respond_with(api, req, api.device(req, device_id), _flat(api, req))


def _write(api: Api, req: ApiRequest, device_id: int, mode: validation.Mode) -> Result:
    device = api.device(req, device_id)
    body = req.json_object()
    # Operations first: they are popped from the body before the fields are validated.
    ops = device_ops.take_operations(api.store, body)
    write = validation.device_write(
        "flat", api.store, req.principal, body, mode=mode, current=device
    )
    device_ops.check_operations(device, ops)
    updated = save_device(api, req, write, device)
    device_ops.apply_operations(api, req, updated, ops)
    return 200, _flat(api, req)(_fresh(api, updated))


@route(
    "/inventory_device/<int:device_id>/",
    methods=("PUT",),
    role="operator",
    doc=Doc(
        "replace_device",
        "Replace a device",
        "inventory_device",
        "Device",
        body="DeviceReplace",
        errors=(*WRITE, "Conflict"),
    ),
)
def replace_device(api: Api, req: ApiRequest, device_id: int) -> Result:
    """Full replacement: omitted writable fields reset (password kept unless given)."""
    return _write(api, req, device_id, "replace")


@route(
    "/inventory_device/<int:device_id>/",
    methods=("PATCH",),
    role="operator",
    doc=Doc(
        "patch_device",
        "Update a device and/or run device operations",
        "inventory_device",
        "Device",
        body="DevicePatch",
        errors=(*WRITE, "Conflict"),
    ),
)
def update_device(api: Api, req: ApiRequest, device_id: int) -> Result:
    """Partial update plus device operations (reboot, factory, sync, firmware...)."""
    return _write(api, req, device_id, "update")


@route(
    "/inventory_device/<int:device_id>/",
    methods=("DELETE",),
    role="admin",
    doc=Doc(
        "delete_device",
        "Delete a device",
        "inventory_device",
        None,
        204,
        params=("force",),
        errors=("BadRequest", "NotFound", "Conflict"),
        description="Removes the device, its tasks, cached parameters and history; the global "
        "audit log keeps a deletion entry. 409 while a CWMP session or a firmware "
        "transfer is in progress, unless force=true.",
    ),
)
def remove_device(api: Api, req: ApiRequest, device_id: int) -> Result:
    return delete_device(api, req, api.device(req, device_id))


def _fresh(api: Api, device: Device) -> Device:
    fresh = api.store.get_device(device.id)
    if fresh is None:
        raise ApiError(404, {"detail": "No device with this id."})
    return fresh
