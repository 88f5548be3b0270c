"""Supporting REST resources (spec section 7): ``/organization/``, ``/device_type/`` and
``/location/``, plus the write-body validation those routes and ``api.device_children`` share.

Rules beyond the spec, decided here:

- Everyone may read; writes need the admin role. Organizations: a scoped token lists and
  reads only its organizations (403 for others) and may update/delete those; creating an
  organization needs an unscoped admin token (a scoped one could never see it).
- Device types are global: readable by every token, writable only by unscoped admins.
- Locations belong to one organization (tenancy like devices) or to none ("shared": readable
  by every token, writable only by unscoped admins). ``organization_id`` defaults to the
  token's only organization, else to none for an unscoped token; PUT keeps it unless given.
- Deletes are blocked with 409 while something uses the row: an organization with devices, a
  device type with devices, a location with devices or child locations.
- Write bodies reject unknown keys with 400 naming them (``id`` is read-only and ignored).
- Every write lands in the global audit log (history with no device) with actor and time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from acs.cwmp.identity import printable
from acs.store import Conflict, NotFound
from acs.store.models import DeviceType, Location, Organization
from api.base import (
    SQL_INT_MAX,
    Api,
    ApiError,
    ApiRequest,
    Result,
    bad_request,
    conflict,
    forbidden,
    json_int,
    not_found,
    parse_coordinate,
    route,
)

MAX_NAME = 255
MIN_UPDATE_FREQUENCY = 30
MAX_UPDATE_FREQUENCY = 86400
MAX_PATH_LENGTH = 256
# A full TR-069 parameter path: a data model root, dot-separated names, no trailing dot.
PARAMETER_PATH = re.compile(r"(?:Device|InternetGatewayDevice)(?:\.[A-Za-z0-9_-]+)+")
READ_ONLY = frozenset({"id"})


# --- body validation ------------------------------------------------------------------------


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class BodyReader:
    """Validates a JSON write body field by field, collecting DRF-style errors.

    ``partial`` (PATCH): absent fields are left out of :attr:`values`. Otherwise (POST, PUT)
    an absent required field is an error and an absent optional one takes its default.
    """

    def __init__(self, body: dict[str, Any], allowed: Iterable[str], *, partial: bool) -> None:
        self.body = body
        self.partial = partial
        self.values: dict[str, Any] = {}
        self.errors: dict[str, list[str]] = {}
        known = set(allowed) | READ_ONLY
        for key in body:
            if key not in known:
                self.errors[key] = ["Unknown field."]

    def error(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def _raw(self, name: str, required: bool, default: Any) -> Any:
        """The body's value, or MISSING when there is nothing to validate."""
        if name in self.body:
            return self.body[name]
        if self.partial:
            return MISSING
        if required:
            self.error(name, "This field is required.")
            return MISSING
        self.values[name] = default
        return MISSING

    def text(
        self,
        name: str,
        *,
        required: bool = False,
        max_length: int = MAX_NAME,
        default: str | None = None,
    ) -> None:
        """A string; required fields may be neither null nor blank."""
        value = self._raw(name, required, default)
        if value is MISSING:
            return
        if value is None:
            if required:
                self.error(name, "This field may not be null.")
            else:
                self.values[name] = None
            return
        if not isinstance(value, str):
            self.error(name, "Not a valid string.")
        elif required and not value.strip():
            self.error(name, "This field may not be blank.")
        elif len(value) > max_length:
            self.error(name, f"Ensure this field has no more than {max_length} characters.")
        elif not printable(value):
            # As for device names: no control, bidirectional or zero-width characters.
            self.error(name, "Control characters are not allowed.")
        else:
            self.values[name] = value

    def integer(
        self,
        name: str,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
        nullable: bool = True,
        default: int | None = None,
        key: str | None = None,
    ) -> None:
        """An int (a JSON integer, not a float or bool); stored under ``key`` if given.
        Without ``maximum``, SQLite's largest integer is the bound."""
        target = key or name
        maximum = SQL_INT_MAX if maximum is None else maximum
        value = self._raw(name, False, default)
        if value is MISSING:
            if name in self.values and key:
                self.values[target] = self.values.pop(name)
            return
        if value is None:
            if nullable:
                self.values[target] = None
            else:
                self.error(name, "This field may not be null.")
            return
        value = json_int(value)
        if value is None:
            self.error(name, "A valid integer is required.")
        elif minimum is not None and value < minimum:
            self.error(name, f"Ensure this value is greater than or equal to {minimum}.")
        elif maximum is not None and value > maximum:
            self.error(name, f"Ensure this value is less than or equal to {maximum}.")
        else:
            self.values[target] = value

    def coordinate(self, name: str, limit: int) -> None:
        """A decimal number (JSON number or plain decimal text) in -limit..limit, stored as
        decimal text so no float rounding creeps in."""
        value = self._raw(name, False, None)
        if value is MISSING:
            return
        try:
            self.values[name] = parse_coordinate(value, limit, 64)
        except ValueError as exc:
            self.error(name, str(exc))

    def finish(self) -> dict[str, Any]:
        if self.errors:
            raise ApiError(400, self.errors)
        return self.values


def parameter_settings(value: Any) -> tuple[dict[str, str] | None, list[str]]:
    """Validate an object of TR-069 path -> value. Values may be strings, numbers or booleans
    and are stored as the strings SetParameterValues sends (booleans as ``true``/``false``).
    Returns (settings or None, error messages)."""
    if not isinstance(value, dict):
        return None, ["Expected an object of TR-069 parameter path -> value."]
    settings: dict[str, str] = {}
    errors: list[str] = []
    for path, item in value.items():
        if len(path) > MAX_PATH_LENGTH or not PARAMETER_PATH.fullmatch(path):
            errors.append(
                f"{path!r} is not a full TR-069 parameter path (Device.… or "
                "InternetGatewayDevice.…, not ending in '.')."
            )
        elif isinstance(item, bool):
            settings[path] = "true" if item else "false"
        elif isinstance(item, str):
            settings[path] = item
        elif isinstance(item, int | float) and math.isfinite(item):
            settings[path] = str(item)
        else:
            errors.append(f"The value of {path!r} must be a string, number or boolean.")
    return (None, errors) if errors else (settings, [])


# --- shared helpers ---------------------------------------------------------------------------


@contextmanager
def store_errors() -> Iterator[None]:
    """Store exceptions -> API errors: Conflict 409, NotFound 404, ValueError 400."""
    try:
        yield
    except Conflict as exc:
        raise conflict(str(exc)) from None
    except NotFound as exc:
        raise not_found(str(exc)) from None
    except ValueError as exc:
        raise bad_request(str(exc)) from None


def require_unscoped(req: ApiRequest, what: str) -> None:
    if req.principal.scope is not None:
        raise forbidden(f"{what} needs a token without organization scope.")


def paged(
    req: ApiRequest, fetch: Callable[[int, int], tuple[int, list[Any]]], render: Callable[..., Any]
) -> Result:
    limit, offset = req.page_params()
    with store_errors():
        total, items = fetch(limit, offset)
    return 200, req.page(total, [render(item) for item in items], limit, offset)


def does_not_exist(value: Any) -> str:
    return f'Invalid pk "{value}" - object does not exist.'


# --- organizations ----------------------------------------------------------------------------


def organization_json(org: Organization) -> dict[str, Any]:
    return {"id": org.id, "name": org.name, "code": org.code}


def _organization(api: Api, req: ApiRequest, org_id: int) -> Organization:
    org = api.store.get_organization(org_id)
    if org is None:
        raise not_found("No organization with this id.")
    req.principal.check_organization(org.id)
    return org


def _organization_body(req: ApiRequest, *, partial: bool) -> dict[str, Any]:
    reader = BodyReader(req.json_object(), ("name", "code"), partial=partial)
    reader.text("name", required=True)
    reader.text("code")
    return reader.finish()


@route("/organization/", methods=("GET",), role="viewer")
def list_organizations(api: Api, req: ApiRequest) -> Result:
    scope = req.principal.scope
    return paged(
        req,
        lambda limit, offset: api.store.organizations_page(scope, limit=limit, offset=offset),
        organization_json,
    )


@route("/organization/", methods=("POST",), role="admin")
def create_organization(api: Api, req: ApiRequest) -> Result:
    require_unscoped(req, "Creating an organization")
    values = _organization_body(req, partial=False)
    with store_errors():
        org = api.store.create_organization(
            name=values["name"], code=values["code"], now=api.now(), actor=req.principal.name
        )
    return 201, organization_json(org)


@route("/organization/<int:org_id>/", methods=("GET",), role="viewer")
def get_organization(api: Api, req: ApiRequest, org_id: int) -> Result:
    return 200, organization_json(_organization(api, req, org_id))


@route("/organization/<int:org_id>/", methods=("PUT", "PATCH"), role="admin")
def update_organization(api: Api, req: ApiRequest, org_id: int) -> Result:
    _organization(api, req, org_id)
    values = _organization_body(req, partial=req.method == "PATCH")
    with store_errors():
        org = api.store.update_organization(
            org_id, now=api.now(), actor=req.principal.name, **values
        )
    return 200, organization_json(org)


@route("/organization/<int:org_id>/", methods=("DELETE",), role="admin")
def delete_organization(api: Api, req: ApiRequest, org_id: int) -> Result:
    _organization(api, req, org_id)
    with store_errors():
        api.store.delete_organization(org_id, now=api.now(), actor=req.principal.name)
    return 204, None


# --- device types -----------------------------------------------------------------------------

_TYPE_TEXT = ("short_name", "model", "manufacturer", "product_class")


def device_type_json(dt: DeviceType) -> dict[str, Any]:
    return {
        "id": dt.id,
        "name": dt.name,
        "short_name": dt.short_name,
        "model": dt.model,
        "manufacturer": dt.manufacturer,
        "product_class": dt.product_class,
        "default_settings": dt.default_settings,
        "update_frequency": dt.update_frequency,
    }


def _device_type(api: Api, type_id: int) -> DeviceType:
    dt = api.store.get_device_type(type_id)
    if dt is None:
        raise not_found("No device type with this id.")
    return dt


def _device_type_body(req: ApiRequest, *, partial: bool) -> dict[str, Any]:
    reader = BodyReader(
        req.json_object(),
        ("name", *_TYPE_TEXT, "default_settings", "update_frequency"),
        partial=partial,
    )
    reader.text("name", required=True)
    for name in _TYPE_TEXT:
        reader.text(name)
    reader.integer("update_frequency", minimum=MIN_UPDATE_FREQUENCY, maximum=MAX_UPDATE_FREQUENCY)
    if "default_settings" in reader.body:
        settings, errors = parameter_settings(reader.body["default_settings"])
        for message in errors:
            reader.error("default_settings", message)
        if settings is not None:
            reader.values["default_settings"] = settings
    elif not partial:
        reader.values["default_settings"] = {}
    return reader.finish()


def _check_type_match(api: Api, values: dict[str, Any], current: DeviceType | None) -> None:
    """409 when another type already claims this manufacturer/product class: auto-registration
    could not tell which one a device informing with them belongs to."""
    manufacturer = values.get("manufacturer", current.manufacturer if current else None)
    product_class = values.get("product_class", current.product_class if current else None)
    if manufacturer is None or product_class is None:
        return
    other = api.store.device_type_matching(
        manufacturer, product_class, exclude_id=current.id if current else None
    )
    if other is not None:
        raise conflict(
            f"Device type {other.id} already matches manufacturer {manufacturer!r} and "
            f"product class {product_class!r}."
        )


@route("/device_type/", methods=("GET",), role="viewer")
def list_device_types(api: Api, req: ApiRequest) -> Result:
    return paged(
        req,
        lambda limit, offset: api.store.device_types_page(limit=limit, offset=offset),
        device_type_json,
    )


@route("/device_type/", methods=("POST",), role="admin")
def create_device_type(api: Api, req: ApiRequest) -> Result:
    require_unscoped(req, "Changing device types")
    values = _device_type_body(req, partial=False)
    with store_errors(), api.store.transaction():
        _check_type_match(api, values, None)
        dt = api.store.create_device_type(**values)
        api.store.add_history(
            None,
            "device_type_created",
            {"device_type_id": dt.id, "name": dt.name},
            now=api.now(),
            actor=req.principal.name,
        )
    return 201, device_type_json(dt)


@route("/device_type/<int:type_id>/", methods=("GET",), role="viewer")
def get_device_type(api: Api, req: ApiRequest, type_id: int) -> Result:
    return 200, device_type_json(_device_type(api, type_id))


@route("/device_type/<int:type_id>/", methods=("PUT", "PATCH"), role="admin")
def update_device_type(api: Api, req: ApiRequest, type_id: int) -> Result:
    current = _device_type(api, type_id)
    require_unscoped(req, "Changing device types")
    values = _device_type_body(req, partial=req.method == "PATCH")
    _check_type_match(api, values, current)
    with store_errors():
        dt = api.store.update_device_type(
            type_id, now=api.now(), actor=req.principal.name, **values
        )
    return 200, device_type_json(dt)


@route("/device_type/<int:type_id>/", methods=("DELETE",), role="admin")
def delete_device_type(api: Api, req: ApiRequest, type_id: int) -> Result:
    _device_type(api, type_id)
    require_unscoped(req, "Changing device types")
    with store_errors():
        api.store.delete_device_type(type_id, now=api.now(), actor=req.principal.name)
    return 204, None


# --- locations --------------------------------------------------------------------------------


def location_json(loc: Location) -> dict[str, Any]:
    return {
        "id": loc.id,
        "name": loc.name,
        "short_name": loc.short_name,
        "latitude": loc.latitude,
        "longitude": loc.longitude,
        "parent": loc.parent_id,
        "organization_id": loc.organization_id,
    }


def _location(api: Api, req: ApiRequest, location_id: int) -> Location:
    """A location the caller may read: 404 unknown, 403 in another organization."""
    loc = api.store.get_location(location_id)
    if loc is None:
        raise not_found("No location with this id.")
    if loc.organization_id is not None:
        req.principal.check_organization(loc.organization_id)
    return loc


def _check_writable_organization(api: Api, req: ApiRequest, org_id: int | None) -> None:
    """The caller may put a location in organization ``org_id`` (None = shared)."""
    if org_id is None:
        require_unscoped(req, "Writing a location shared by every organization")
        return
    if api.store.get_organization(org_id) is None:
        raise ApiError(400, {"organization_id": [does_not_exist(org_id)]})
    req.principal.check_organization(org_id)


def _location_values(
    api: Api, req: ApiRequest, current: Location | None, *, partial: bool
) -> dict[str, Any]:
    body = req.json_object()
    reader = BodyReader(
        body,
        ("name", "short_name", "latitude", "longitude", "parent", "organization_id"),
        partial=partial,
    )
    reader.text("name", required=True)
    reader.text("short_name")
    reader.coordinate("latitude", 90)
    reader.coordinate("longitude", 180)
    reader.integer("parent", minimum=1, key="parent_id")
    # organization_id is not reset by PUT: moving a location needs saying so.
    if "organization_id" in body:
        reader.integer("organization_id", minimum=1)
    values = reader.finish()

    if current is not None:
        org_id = values.get("organization_id", current.organization_id)
    elif "organization_id" in values:
        org_id = values["organization_id"]
    else:
        scope = req.principal.scope
        if scope is not None and len(scope) > 1:
            raise ApiError(400, {"organization_id": ["This field is required."]})
        org_id = scope[0] if scope is not None else None
    values["organization_id"] = org_id
    _check_writable_organization(api, req, org_id)

    parent_id = values.get("parent_id", current.parent_id if current else None)
    if parent_id is not None:
        parent = api.store.get_location(parent_id)
        if parent is None:
            raise ApiError(400, {"parent": [does_not_exist(parent_id)]})
        if parent.organization_id is not None:
            req.principal.check_organization(parent.organization_id)
        if parent.organization_id not in (None, org_id):
            raise ApiError(
                400, {"parent": ["The parent location belongs to another organization."]}
            )
        if current is not None and api.store.location_would_cycle(current.id, parent_id):
            raise ApiError(400, {"parent": ["A location cannot be its own parent or ancestor."]})
    return values


@route("/location/", methods=("GET",), role="viewer")
def list_locations(api: Api, req: ApiRequest) -> Result:
    scope = req.principal.scope
    org_filter = req.query_int("organization", minimum=1)
    if org_filter is not None:
        req.principal.check_organization(org_filter)
    return paged(
        req,
        lambda limit, offset: api.store.locations_page(
            scope, organization_id=org_filter, limit=limit, offset=offset
        ),
        location_json,
    )


@route("/location/", methods=("POST",), role="admin")
def create_location(api: Api, req: ApiRequest) -> Result:
    values = _location_values(api, req, None, partial=False)
    with store_errors(), api.store.transaction():
        loc = api.store.create_location(**values)
        api.store.add_history(
            None,
            "location_created",
            {"location_id": loc.id, "name": loc.name, "organization_id": loc.organization_id},
            now=api.now(),
            actor=req.principal.name,
        )
    return 201, location_json(loc)


@route("/location/<int:location_id>/", methods=("GET",), role="viewer")
def get_location(api: Api, req: ApiRequest, location_id: int) -> Result:
    return 200, location_json(_location(api, req, location_id))


@route("/location/<int:location_id>/", methods=("PUT", "PATCH"), role="admin")
def update_location(api: Api, req: ApiRequest, location_id: int) -> Result:
    current = _location(api, req, location_id)
    _check_writable_organization(api, req, current.organization_id)
    values = _location_values(api, req, current, partial=req.method == "PATCH")
    with store_errors():
        loc = api.store.update_location(
            location_id, now=api.now(), actor=req.principal.name, **values
        )
    return 200, location_json(loc)


@route("/location/<int:location_id>/", methods=("DELETE",), role="admin")
def delete_location(api: Api, req: ApiRequest, location_id: int) -> Result:
    current = _location(api, req, location_id)
    _check_writable_organization(api, req, current.organization_id)
    with store_errors():
        api.store.delete_location(location_id, now=api.now(), actor=req.principal.name)
    return 204, None
