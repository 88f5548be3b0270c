"""Validation of device write bodies, for both device views (spec sections 1, 3 and 4).

Owns turning a JSON object from ``POST``/``PUT``/``PATCH`` on ``/inventory_device/`` (flat) or
``/inventory_device_serial/`` (nested) into a :class:`DeviceWrite`: store column values plus
the location to find or create by name. Every field error of a body is collected into one
DRF-style ``400 {"field": ["message", ...]}``; an organization outside the token's scope is a
``403`` before anything else is looked at (so the answer never reveals whether it exists).
Nothing here writes: the route modules apply a validated write (:func:`resolve_location` is
the one helper that creates a row, and they call it inside the write's transaction).

Operation keys (``reboot``, ``firmware_image``, ...) are not validated here: the flat view pops
them with :func:`api.device_ops.take_operations` first. Read-only fields of a representation
are accepted and ignored, as Django REST Framework does, so a client can ``GET``, edit and
``PUT`` a device back; keys that are neither writable nor read-only are ``400`` naming them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from acs.cwmp.identity import printable, serial_problem
from acs.store import Store
from acs.store.models import DOWN, UP, Device
from api.base import (
    SQL_INT_MAX,
    ApiError,
    Principal,
    json_int,
    parse_bool,
    parse_coordinate,
    parse_decimal,
)
from api.fields import (
    MAX_NAME,
    MAX_UPDATE_FREQUENCY,
    MIN_UPDATE_FREQUENCY,
    NOT_NULL,
    REQUIRED,
    UNKNOWN,
    UNSET,
    Invalid,
    Unset,
    does_not_exist,
)

Mode = Literal["create", "replace", "update"]

MAX_TEXT = 255
MAX_DESCRIPTION = 4096

# Flat view (section 3): body key -> store column, and what PUT resets an omitted key to.
# `password` is absent on purpose: PUT keeps it unless given. `organization_id` too: a device
# always belongs to an organization, so PUT without it keeps the current one.
FLAT_DEFAULTS: dict[str, Any] = {
    "customer_id": None,
    "type": None,
    "serial_number_alt": None,
    "description": None,
    "location": None,
    "latitude": None,
    "longitude": None,
    "username": None,
    "debug": False,
}
FLAT_WRITABLE = frozenset(
    {
        "name",
        "serial_number",
        "organization_id",
        "location_name",
        "password",
        # PUT without it: the device has no frequency of its own, it takes its type's.
        "update_frequency",
        *FLAT_DEFAULTS,
    }
)
FLAT_READ_ONLY = frozenset(
    {
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

# Nested view (section 4). PUT resets these when omitted; `status` and `ip_address` describe
# the device's live state and are kept unless given, like `organization`.
NESTED_DEFAULTS: dict[str, Any] = {"type": None, "location": None, "description": None}
NESTED_WRITABLE = frozenset(
    {"serial_number", "name", "organization", "status", "ip_address", *NESTED_DEFAULTS}
)
NESTED_READ_ONLY = frozenset(
    {
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

_LINE_BREAKS = str.maketrans("", "", "\n\r\t")


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


class _Errors:
    """Collects DRF-style field errors; raising them all at once is kinder to clients."""

    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def raise_any(self) -> None:
        if self.errors:
            raise ApiError(400, self.errors)


# --- single-value checks (raise Invalid) -----------------------------------------------


def _text(
    value: Any,
    *,
    max_length: int,
    allow_null: bool = True,
    blank: bool = True,
    multiline: bool = False,
) -> Any:
    if value is None:
        if allow_null:
            return None
        raise Invalid(NOT_NULL)
    if not isinstance(value, str):
        raise Invalid(f"Not a valid string (got {type(value).__name__}).")
    if not value.strip():
        if not blank:
            raise Invalid("This field may not be blank.")
        return None if allow_null else value
    if len(value) > max_length:
        raise Invalid(f"Ensure this field has no more than {max_length} characters.")
    # Free text may span lines; nothing may carry other control characters.
    checked = value.translate(_LINE_BREAKS) if multiline else value
    if not printable(checked):
        raise Invalid("Control characters are not allowed.")
    return value


def _description(value: Any) -> str | None:
    text: str | None = _text(value, max_length=MAX_DESCRIPTION, multiline=True)
    return text


def _name(value: Any) -> str:
    return str(_text(value, max_length=MAX_NAME, allow_null=False, blank=False))


def check_serial(value: Any, *, allow_null: bool = False) -> str | None:
    """A serial number: 1-64 characters, no ``/``, no whitespace, case kept."""
    if value is None or (allow_null and value == ""):
        if allow_null:
            return None
        raise Invalid(NOT_NULL)
    if not isinstance(value, str):
        raise Invalid(f"Not a valid string (got {type(value).__name__}).")
    problem = serial_problem(value)
    if problem is not None:
        raise Invalid(problem)
    return value


def _pk(value: Any) -> int | None:
    """A primary key: an int (or a digit string), or None. Objects ``{"id": n}`` (what the
    nested view returns) are accepted too, so a representation can be written back."""
    if isinstance(value, Mapping) and "id" in value:
        value = value["id"]
    if value is None:
        return None
    if isinstance(value, str):
        value = parse_decimal(value)
        if value is None:
            raise Invalid("Incorrect type. Expected pk value, received str.")
    number = json_int(value)
    if number is not None:
        if not 0 < number <= SQL_INT_MAX:
            raise Invalid(does_not_exist(number))
        return number
    raise Invalid(f"Incorrect type. Expected pk value, received {type(value).__name__}.")


def _bool(value: Any) -> bool:
    if isinstance(value, bool | str) or (type(value) is int and value in (0, 1)):
        parsed = parse_bool(value)
        if parsed is not None:
            return parsed
    raise Invalid("Must be a valid boolean.")


def _int_in(value: Any, low: int, high: int) -> int:
    if isinstance(value, str):
        value = parse_decimal(value)  # None (not ASCII decimal): refused just below
    value = json_int(value)
    if value is None:
        raise Invalid("A valid integer is required.")
    if value < low:
        raise Invalid(f"Ensure this value is greater than or equal to {low}.")
    if value > high:
        raise Invalid(f"Ensure this value is less than or equal to {high}.")
    return value


def _coordinate(value: Any, limit: int) -> str | None:
    """A decimal within ±limit (number or plain decimal text), returned as text."""
    try:
        return parse_coordinate(value, limit, 32)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def _ip_address(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise Invalid("Enter a valid IPv4 or IPv6 address.")
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise Invalid("Enter a valid IPv4 or IPv6 address.") from None


# --- references -------------------------------------------------------------------------


def _check_type(store: Store, type_id: int | None) -> int | None:
    if type_id is not None and store.get_device_type(type_id) is None:
        raise Invalid(does_not_exist(type_id))
    return type_id


def _organization(store: Store, principal: Principal, value: Any) -> int:
    org_id = _pk(value)
    if org_id is None:
        raise Invalid(NOT_NULL)
    # Scope before existence: a scoped token learns nothing about other organizations.
    principal.check_organization(org_id)
    if store.get_organization(org_id) is None:
        raise Invalid(does_not_exist(org_id))
    return org_id


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


def _location_id(store: Store, value: Any, org_id: int | None) -> int | None:
    return _check_location(store, _pk(value), org_id)


def _location_text(value: Any) -> str | None:
    text: str | None = _text(value, max_length=MAX_TEXT)
    return text


def resolve_location(store: Store, organization_id: int, name: str) -> int:
    """The id of the location called ``name`` in the organization, created if absent."""
    found = store.find_location(organization_id, name)
    if found is not None:
        return found.id
    return store.create_location(name=name, organization_id=organization_id).id


# --- bodies -----------------------------------------------------------------------------


def _reject_unknown(
    body: Mapping[str, Any], writable: frozenset[str], read_only: frozenset[str], errors: _Errors
) -> None:
    for key in body:
        if key not in writable and key not in read_only:
            errors.add(key, UNKNOWN)


def _run(errors: _Errors, name: str, check: Callable[..., Any], *args: Any) -> Any:
    """``check(*args)``, or UNSET with the error recorded under ``name``."""
    try:
        return check(*args)
    except Invalid as exc:
        for message in exc.messages:
            errors.add(name, message)
        return UNSET


def flat_write(
    store: Store,
    principal: Principal,
    body: Mapping[str, Any],
    *,
    mode: Mode,
    current: Device | None = None,
) -> DeviceWrite:
    """Validate a flat-view body (operation keys already popped).

    ``create``: ``name`` and ``serial_number`` required, ``organization_id`` too unless the
    token is scoped to exactly one organization; ``replace`` (PUT): ``name`` and
    ``serial_number`` required, omitted writable fields reset to their defaults (password and
    organization kept); ``update`` (PATCH): only the keys given.
    """
    errors = _Errors()
    _reject_unknown(body, FLAT_WRITABLE, FLAT_READ_ONLY, errors)
    values: dict[str, Any] = {k: body[k] for k in FLAT_WRITABLE if k in body}
    if mode == "replace":
        for key, default in FLAT_DEFAULTS.items():
            values.setdefault(key, default)
    # A device without a frequency of its own takes its type's (acs.store: None = inherit).
    inherit_frequency = mode == "replace" and "update_frequency" not in body
    if mode != "update":
        for key in ("name", "serial_number"):
            if key not in values:
                errors.add(key, REQUIRED)
    write = DeviceWrite()
    out = write.fields

    if "organization_id" in values:
        org = _run(
            errors, "organization_id", _organization, store, principal, values["organization_id"]
        )
        if org is not UNSET:
            out["organization_id"] = org
    elif mode == "create":
        default = _default_organization(principal)
        if default is None:
            errors.add("organization_id", REQUIRED)
        else:
            out["organization_id"] = default

    simple: dict[str, tuple[str, Callable[[Any], Any]]] = {
        "name": ("name", _name),
        "serial_number": ("serial_number", check_serial),
        "serial_number_alt": (
            "serial_number_alt",
            lambda v: check_serial(v, allow_null=True),
        ),
        "customer_id": ("customer_id", lambda v: _text(v, max_length=MAX_TEXT)),
        "description": ("description", _description),
        "username": ("username", lambda v: _text(v, max_length=MAX_TEXT)),
        "password": ("password", _password),
        "latitude": ("latitude", lambda v: _coordinate(v, 90)),
        "longitude": ("longitude", lambda v: _coordinate(v, 180)),
        "update_frequency": (
            "update_frequency",
            lambda v: _int_in(v, MIN_UPDATE_FREQUENCY, MAX_UPDATE_FREQUENCY),
        ),
        "debug": ("debug", _bool),
        "type": ("type_id", lambda v: _check_type(store, _pk(v))),
    }
    for key, (column, check) in simple.items():
        if key in values:
            value = _run(errors, key, check, values[key])
            if value is not UNSET:
                out[column] = value
    if inherit_frequency:
        out["update_frequency"] = None

    final_org = write.organization_id(current)
    if "location_name" in values:
        name = _run(errors, "location_name", _location_text, values["location_name"])
        if name is not UNSET:
            write.location_name = name
    if "location" in values and ("location_name" not in values or values["location_name"] is None):
        location = _run(errors, "location", _location_id, store, values["location"], final_org)
        if location is not UNSET:
            out["location_id"] = location
            if location is not None:
                write.location_name = UNSET  # an explicit id wins over a null name
    elif "location" in values:
        # The name wins, but a malformed id is still an error, not silently dropped.
        _run(errors, "location", _pk, values["location"])
    if (
        mode != "create"
        and current is not None
        and "organization_id" in out
        and out["organization_id"] != current.organization_id
        and "location_id" not in out
        and isinstance(write.location_name, Unset)
        and current.location_id is not None
    ):
        # Moving to another organization: keep the location only if it may come along.
        try:
            _check_location(store, current.location_id, final_org)
        except Invalid:
            out["location_id"] = None
    errors.raise_any()
    return write


def _password(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Invalid(f"Not a valid string (got {type(value).__name__}).")
    if len(value) > MAX_TEXT:
        raise Invalid(f"Ensure this field has no more than {MAX_TEXT} characters.")
    return value


def nested_write(
    store: Store,
    principal: Principal,
    body: Mapping[str, Any],
    *,
    mode: Mode,
    current: Device | None = None,
) -> DeviceWrite:
    """Validate a nested-view body: ``type`` and ``organization`` as ids (or ``{"id": n}``),
    ``status`` as a bool (true = Up), ``ip_address`` (the device's address), ``location`` as
    a name found or created in the device's organization.

    ``create``: ``serial_number`` and ``name`` required, ``organization`` too unless the token
    is scoped to exactly one organization; ``replace``: ``name`` required (the serial defaults
    to the path's), omitted ``type``/``location``/``description`` reset; ``update``: only the
    keys given. A ``serial_number`` differing from the current one renames the device.
    """
    errors = _Errors()
    _reject_unknown(body, NESTED_WRITABLE, NESTED_READ_ONLY, errors)
    values: dict[str, Any] = {k: body[k] for k in NESTED_WRITABLE if k in body}
    if mode == "replace":
        for key, default in NESTED_DEFAULTS.items():
            values.setdefault(key, default)
    required = ("serial_number", "name") if mode == "create" else ("name",)
    if mode != "update":
        for key in required:
            if key not in values:
                errors.add(key, REQUIRED)
    write = DeviceWrite()
    out = write.fields

    if "organization" in values:
        org = _run(errors, "organization", _organization, store, principal, values["organization"])
        if org is not UNSET:
            out["organization_id"] = org
    elif mode == "create":
        default = _default_organization(principal)
        if default is None:
            errors.add("organization", REQUIRED)
        else:
            out["organization_id"] = default

    simple: dict[str, tuple[str, Callable[[Any], Any]]] = {
        "serial_number": ("serial_number", check_serial),
        "name": ("name", _name),
        "description": ("description", _description),
        "ip_address": ("address", _ip_address),
        "status": ("status", lambda v: UP if _bool(v) else DOWN),
        "type": ("type_id", lambda v: _check_type(store, _pk(v))),
    }
    for key, (column, check) in simple.items():
        if key in values:
            value = _run(errors, key, check, values[key])
            if value is not UNSET:
                out[column] = value

    if "location" in values:
        raw = values["location"]
        if isinstance(raw, Mapping) and "name" in raw:
            raw = raw["name"]
        name = _run(errors, "location", _location_text, raw)
        if name is not UNSET:
            write.location_name = name
    errors.raise_any()
    return write
