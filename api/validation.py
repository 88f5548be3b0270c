"""Validation of device write bodies, for both device views (spec sections 1, 3 and 4).

Owns turning a JSON object from ``POST``/``PUT``/``PATCH`` on ``/inventory_device/`` (flat) or
``/inventory_device_serial/`` (nested) into a :class:`DeviceWrite`: store column values plus
the location to find or create by name. Every field error of a body is collected into one
DRF-style ``400 {"field": ["message", ...]}``; an organization outside the token's scope is a
``403`` before anything else is looked at (so the answer never reveals whether it exists).
Nothing here writes: the route modules apply a validated write.

Operation keys (``reboot``, ``firmware_image``, ...) are not validated here: the flat view pops
them with :func:`api.device_ops.take_operations` first. Read-only fields of a representation
are accepted and ignored, as Django REST Framework does, so a client can ``GET``, edit and
``PUT`` a device back; keys that are neither writable nor read-only are ``400`` naming them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from acs.store import Store
from acs.store.models import DOWN, UP, Device
from api.base import ApiError, Principal
from api.device_ops import OPERATION_PROPERTIES
from api.fields import (
    MAX_DESCRIPTION,
    MAX_UPDATE_FREQUENCY,
    MIN_UPDATE_FREQUENCY,
    UNSET,
    Boolean,
    Coordinate,
    Errors,
    Form,
    Integer,
    Invalid,
    IpAddress,
    Mode,
    Pk,
    RawText,
    Serial,
    Text,
    Unset,
    does_not_exist,
)
from api.schema import FREQUENCY_TEXT_PATTERN, LATITUDE_PATTERN, LONGITUDE_PATTERN

_ORGANIZATION = "Organization id; required unless the token is scoped to exactly one organization."
_OPERATIONS_NOTE = (
    " Device operations may come along: each flag set to true queues a task and sends a "
    "connection request (false does nothing); firmware_image + firmware_image_is_pending=true "
    "queues a firmware Download."
)
_DESCRIPTION = Text(max_length=MAX_DESCRIPTION, multiline=True, blank_null=True)

FLAT_READ_ONLY = frozenset(
    {
        "tags",
        "id",
        "uuid",
        "is_active",
        "status",
        "status_change",
        "type_short_name",
        "software_version",
        "hardware_version",
        "manufacturer",
        "product_class",
        "unique_identifier",
        "location_short_name",
        "address",
        "last_connection",
        "last_configuration",
        "last_change",
        "created",
        "pending_settings",
    }
)

# Flat view (section 3). What PUT does with an omitted key: `password` is kept unless given,
# and `organization_id` too (a device always belongs to one); `update_frequency` resets to
# none (the device takes its type's); every other key resets to its default.
FLAT_FORM = Form(
    "Device",
    {
        "name": Text(required=True),
        "customer_id": Text(blank_null=True),
        "type": Pk(source="type_id", description="Device type id."),
        "serial_number": Serial(required=True),
        "serial_number_alt": Serial(),
        "description": _DESCRIPTION,
        "organization_id": Pk(
            required="create", nullable=False, reset=False, description=_ORGANIZATION
        ),
        "location": Pk(
            source="location_id", description="Location id, in the device's organization or shared."
        ),
        "location_name": Text(
            blank_null=True,
            reset=False,
            description="Finds or creates a location of this name in the device's organization.",
        ),
        "latitude": Coordinate(
            limit=90, pattern=LATITUDE_PATTERN, example="40.7128", max_length=32
        ),
        "longitude": Coordinate(
            limit=180, pattern=LONGITUDE_PATTERN, example="-74.006", max_length=32
        ),
        "username": Text(
            blank_null=True, description="CWMP username the CPE uses towards the ACS."
        ),
        "password": RawText(
            write_only=True,
            reset=False,
            description="CWMP password; stored for Digest, never returned.",
        ),
        "update_frequency": Integer(
            minimum=MIN_UPDATE_FREQUENCY,
            maximum=MAX_UPDATE_FREQUENCY,
            text_pattern=FREQUENCY_TEXT_PATTERN,
            nullable=False,
            description="Periodic inform interval (s), set on the CPE as PeriodicInformInterval. "
            "Without a value of its own (omitted at creation, or on PUT) the device takes its "
            "type's, and follows it when the type's changes; else 300.",
        ),
        "debug": Boolean(default=False),
    },
    read_only=FLAT_READ_ONLY,
    notes={
        "create": "Unknown fields are refused with 400. organization_id may be left out with a "
        "token scoped to exactly one organization." + _OPERATIONS_NOTE,
        "replace": "Full replacement: omitted writable fields reset to their defaults, except "
        "password, which is kept unless given." + _OPERATIONS_NOTE,
        "update": "Partial update." + _OPERATIONS_NOTE,
    },
    extra=OPERATION_PROPERTIES,
)

NESTED_READ_ONLY = frozenset(
    {
        "tags",
        "last_status_change",
        "mac_address",
        "firmware_version",
        "pending_changes",
        "pending_details",
        "pending_settings",
        "created_at",
        "updated_at",
    }
)

# Nested view (section 4). PUT resets `type`, `location` and `description` when omitted;
# `status` and `ip_address` describe the device's live state and are kept unless given, like
# `organization`; the serial defaults to the path's.
NESTED_FORM = Form(
    "DeviceNested",
    {
        "serial_number": Serial(required="create", nullable=False, reset=False),
        "name": Text(required=True),
        "type": Pk(source="type_id", description="Device type id."),
        "organization": Pk(
            source="organization_id",
            required="create",
            nullable=False,
            reset=False,
            description=_ORGANIZATION,
        ),
        "status": Boolean(
            reset=False, description="Mark the device Up/Down (e.g. down for maintenance)."
        ),
        "ip_address": IpAddress(source="address", reset=False),
        "location": Text(
            blank_null=True,
            unwrap="name",
            source="location_name",
            description="Location name (found or created in the device's organization).",
        ),
        "description": _DESCRIPTION,
    },
    read_only=NESTED_READ_ONLY,
    notes={
        "create": "type and organization are ids; organization may be left out with a token "
        "scoped to exactly one organization.",
        "replace": "A serial_number different from the path renames the device (409 if taken).",
    },
)


@dataclass
class DeviceWrite:
    """A validated device write.

    ``fields`` are store columns for ``Store.create_device`` / ``Store.update_device``.
    ``location_name`` (when set) is a location to find or create in the device's organization
    (None = no location); it wins over ``fields["location_id"]``.
    """

    fields: dict[str, Any] = field(default_factory=dict)
    location_name: str | Unset | None = UNSET

    def organization_id(self, current: Device | None) -> int | None:
        """The organization the device ends up in."""
        if "organization_id" in self.fields:
            return int(self.fields["organization_id"])
        return None if current is None else current.organization_id

    def save(self, store: Store, current: Device | None, *, now: float, actor: str) -> Device:
        """Create (``current`` None) or update the device, in the caller's transaction: the
        location found or created by name, the device row and its history. Conflict when a
        serial is taken."""
        fields = dict(self.fields)
        name = self.location_name
        if isinstance(name, str):
            organization = self.organization_id(current)
            assert organization is not None  # validation guarantees an organization
            fields["location_id"] = store.location_named(organization, name, now=now, actor=actor)
        elif name is None:
            fields["location_id"] = None
        if current is not None:
            return store.update_device(current.id, now=now, actor=actor, **fields)
        status = fields.pop("status", None)
        device = store.create_device(
            serial_number=fields.pop("serial_number"),
            name=fields.pop("name"),
            organization_id=fields.pop("organization_id"),
            now=now,
            actor=actor,
            **fields,
        )
        if status == UP:  # created Down; an operator may register it as Up
            device = store.update_device(device.id, now=now, actor=actor, status=UP)
        return device


# --- references -------------------------------------------------------------------------


def _default_organization(principal: Principal) -> int | None:
    scope = principal.scope
    return scope[0] if scope is not None and len(scope) == 1 else None


def _check_location(store: Store, location_id: int | None, org_id: int | None) -> int | None:
    if location_id is None:
        return None
    location = store.get_location(location_id)
    if location is None:
        raise Invalid(does_not_exist(location_id))
    if location.organization_id is not None and location.organization_id != org_id:
        # Another tenant's location would leak its name through the device's representation.
        raise Invalid("This location belongs to another organization.")
    return location_id


# --- bodies -----------------------------------------------------------------------------


def device_write(
    view: Literal["flat", "nested"],
    store: Store,
    principal: Principal,
    body: Mapping[str, Any],
    *,
    mode: Mode,
    current: Device | None = None,
) -> DeviceWrite:
    """Validate a body of the flat view (:data:`FLAT_FORM`, operation keys already popped)
    or the nested one (:data:`NESTED_FORM`): every field, then the organization and device
    type it names. An organization outside the token's scope is a 403 before anything else
    is looked at, so the answer never reveals whether it exists; a creation without one
    takes the token's only organization."""
    form, organization_key, finish = _VIEWS[view]
    if organization_key in body:
        try:
            org_id = form.fields[organization_key].clean(body[organization_key])
        except Invalid:
            pass  # reported with the other field errors
        else:
            principal.check_organization(org_id)
    elif mode == "create":
        default = _default_organization(principal)
        if default is not None:
            body = {**body, organization_key: default}
    values, errors = form.check(body, mode=mode)
    rows = {"organization_id": store.get_organization, "type_id": store.get_device_type}
    for column, key in (("organization_id", organization_key), ("type_id", "type")):
        row_id = values.get(column)
        if key not in errors and row_id is not None and rows[column](row_id) is None:
            errors.setdefault(key, []).append(does_not_exist(row_id))
    write = finish(store, values, errors, current)
    if errors:
        raise ApiError(400, errors)
    return write


def _flat(
    store: Store, values: dict[str, Any], errors: Errors, current: Device | None
) -> DeviceWrite:
    """``location_name`` wins over ``location`` unless null (a malformed id is still an
    error); moving a device to another organization drops a location that may not come
    along."""
    write = DeviceWrite(values)
    location_name = values.pop("location_name", UNSET)
    write.location_name = location_name
    final_org = write.organization_id(current)
    if "location_id" in values and "location" not in errors:
        if location_name is UNSET or location_name is None:
            try:
                _check_location(store, values["location_id"], final_org)
            except Invalid as exc:
                errors.setdefault("location", []).extend(exc.messages)
            if values["location_id"] is not None:
                write.location_name = UNSET  # an explicit id wins over a null name
        else:
            del values["location_id"]
    if (
        current is not None
        and values.get("organization_id", current.organization_id) != current.organization_id
        and "location_id" not in values
        and isinstance(write.location_name, Unset)
        and current.location_id is not None
    ):
        # Moving to another organization: keep the location only if it may come along.
        try:
            _check_location(store, current.location_id, final_org)
        except Invalid:
            values["location_id"] = None
    return write


def _nested(
    store: Store, values: dict[str, Any], errors: Errors, current: Device | None
) -> DeviceWrite:
    """``status`` true is Up; the location is a name found or created in the device's
    organization. A ``serial_number`` differing from the current one renames the device."""
    if "status" in values:
        values["status"] = UP if values["status"] else DOWN
    return DeviceWrite(values, values.pop("location_name", UNSET))


_VIEWS = {
    "flat": (FLAT_FORM, "organization_id", _flat),
    "nested": (NESTED_FORM, "organization", _nested),
}
