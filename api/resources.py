"""Supporting REST resources (spec section 7): ``/organization/``, ``/device_type/`` and
``/location/``, their write bodies declared once as :class:`api.fields.Form` (which also give
the OpenAPI document their schemas), plus the helpers the other route modules share.

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

from collections.abc import Callable
from typing import Any

from acs.store.models import CONNECTION_REQUEST_METHODS, DeviceType, Location, Organization
from api.base import (
    Api,
    ApiError,
    ApiRequest,
    Result,
    conflict,
    forbidden,
    not_found,
    route,
    store_errors,
)
from api.docs import crud
from api.fields import (
    MAX_UPDATE_FREQUENCY,
    MIN_UPDATE_FREQUENCY,
    ChoiceList,
    Coordinate,
    Form,
    Integer,
    ParameterValues,
    Text,
    does_not_exist,
)
from api.schema import (
    LATITUDE,
    LATITUDE_PATTERN,
    LONGITUDE,
    LONGITUDE_PATTERN,
    integer,
    obj,
    read_only,
    string,
)
from api.views import Out, View

# --- shared helpers ---------------------------------------------------------------------------


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


# --- organizations ----------------------------------------------------------------------------


ORGANIZATION_VIEW = View(
    "Organization",
    {"id": Out(read_only(integer())), "name": Out(string(minLength=1)), "code": Out(string(True))},
)
organization_json = ORGANIZATION_VIEW.render


def _organization(api: Api, req: ApiRequest, org_id: int) -> Organization:
    org = api.store.get_organization(org_id)
    if org is None:
        raise not_found("No organization with this id.")
    req.principal.check_organization(org.id)
    return org


ORGANIZATION_FORM = Form("Organization", {"name": Text(required=True), "code": Text()})


def _organization_body(req: ApiRequest, *, partial: bool) -> dict[str, Any]:
    return ORGANIZATION_FORM.read(req.json_object(), mode="update" if partial else "create")


_ORGANIZATION_DOCS = crud("organization", "organization", "Organization")


@route("/organization/", methods=("GET",), role="viewer", doc=_ORGANIZATION_DOCS["list"])
def list_organizations(api: Api, req: ApiRequest) -> Result:
    scope = req.principal.scope
    return paged(
        req,
        lambda limit, offset: api.store.organizations_page(scope, limit=limit, offset=offset),
        organization_json,
    )


@route("/organization/", methods=("POST",), role="admin", doc=_ORGANIZATION_DOCS["create"])
def create_organization(api: Api, req: ApiRequest) -> Result:
    require_unscoped(req, "Creating an organization")
    values = _organization_body(req, partial=False)
    with store_errors():
        org = api.store.create_organization(
            name=values["name"], code=values["code"], now=api.now(), actor=req.principal.name
        )
    return 201, organization_json(org)


@route(
    "/organization/<int:org_id>/", methods=("GET",), role="viewer", doc=_ORGANIZATION_DOCS["get"]
)
def get_organization(api: Api, req: ApiRequest, org_id: int) -> Result:
    return 200, organization_json(_organization(api, req, org_id))


@route(
    "/organization/<int:org_id>/",
    methods=("PUT", "PATCH"),
    role="admin",
    doc={"PUT": _ORGANIZATION_DOCS["replace"], "PATCH": _ORGANIZATION_DOCS["patch"]},
)
def update_organization(api: Api, req: ApiRequest, org_id: int) -> Result:
    _organization(api, req, org_id)
    values = _organization_body(req, partial=req.method == "PATCH")
    with store_errors():
        org = api.store.update_organization(
            org_id, now=api.now(), actor=req.principal.name, **values
        )
    return 200, organization_json(org)


@route(
    "/organization/<int:org_id>/",
    methods=("DELETE",),
    role="admin",
    doc=_ORGANIZATION_DOCS["delete"],
)
def delete_organization(api: Api, req: ApiRequest, org_id: int) -> Result:
    _organization(api, req, org_id)
    with store_errors():
        api.store.delete_organization(org_id, now=api.now(), actor=req.principal.name)
    return 204, None


# --- device types -----------------------------------------------------------------------------

_ORDER_DESCRIPTION = (
    "How connection requests try to reach the type's devices, in order: http (the "
    "ConnectionRequestURL), udp (TR-111, through the device's STUN binding), xmpp (TR-069 "
    "Annex K, to the device's ConnReqJabberID); a method the device cannot be reached by "
    "is skipped. null: xmpp first for a device that reported a ConnReqJabberID, then udp "
    "first for one that reports NATDetected or a UDPConnectionRequestAddress, else http "
    "then udp."
)

DEVICE_TYPE_FORM = Form(
    "DeviceType",
    {
        "name": Text(required=True),
        "short_name": Text(),
        "model": Text(),
        "manufacturer": Text(),
        "product_class": Text(),
        "default_settings": ParameterValues(),
        "update_frequency": Integer(minimum=MIN_UPDATE_FREQUENCY, maximum=MAX_UPDATE_FREQUENCY),
        "connection_request_order": ChoiceList(
            choices=CONNECTION_REQUEST_METHODS, description=_ORDER_DESCRIPTION
        ),
    },
)


DEVICE_TYPE_VIEW = View(
    "DeviceType",
    {
        "id": Out(read_only(integer())),
        "name": Out(string(minLength=1)),
        "short_name": Out(string(True)),
        "model": Out(string(True)),
        "manufacturer": Out(string(True)),
        "product_class": Out(
            string(
                True,
                description="Devices informing with this manufacturer/product class get this type.",
            )
        ),
        "default_settings": Out(
            obj({}, description="TR-069 path -> value, applied to every device of the type.")
        ),
        "update_frequency": Out(
            integer(
                True,
                minimum=MIN_UPDATE_FREQUENCY,
                maximum=MAX_UPDATE_FREQUENCY,
                description="Periodic inform interval of the type's devices that set none.",
            )
        ),
        "connection_request_order": Out(
            {
                "type": ["array", "null"],
                "items": string(enum=list(CONNECTION_REQUEST_METHODS)),
                "description": _ORDER_DESCRIPTION,
            }
        ),
    },
)
device_type_json = DEVICE_TYPE_VIEW.render


def _device_type(api: Api, type_id: int) -> DeviceType:
    dt = api.store.get_device_type(type_id)
    if dt is None:
        raise not_found("No device type with this id.")
    return dt


def _device_type_body(req: ApiRequest, *, partial: bool) -> dict[str, Any]:
    return DEVICE_TYPE_FORM.read(req.json_object(), mode="update" if partial else "create")


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


_DEVICE_TYPE_DOCS = crud("device type", "device_type", "DeviceType")


@route("/device_type/", methods=("GET",), role="viewer", doc=_DEVICE_TYPE_DOCS["list"])
def list_device_types(api: Api, req: ApiRequest) -> Result:
    return paged(
        req,
        lambda limit, offset: api.store.device_types_page(limit=limit, offset=offset),
        device_type_json,
    )


@route("/device_type/", methods=("POST",), role="admin", doc=_DEVICE_TYPE_DOCS["create"])
def create_device_type(api: Api, req: ApiRequest) -> Result:
    require_unscoped(req, "Changing device types")
    values = _device_type_body(req, partial=False)
    with store_errors(), api.store.transaction():
        _check_type_match(api, values, None)
        dt = api.store.create_device_type(**values, now=api.now(), actor=req.principal.name)
    return 201, device_type_json(dt)


@route("/device_type/<int:type_id>/", methods=("GET",), role="viewer", doc=_DEVICE_TYPE_DOCS["get"])
def get_device_type(api: Api, req: ApiRequest, type_id: int) -> Result:
    return 200, device_type_json(_device_type(api, type_id))


@route(
    "/device_type/<int:type_id>/",
    methods=("PUT", "PATCH"),
    role="admin",
    doc={"PUT": _DEVICE_TYPE_DOCS["replace"], "PATCH": _DEVICE_TYPE_DOCS["patch"]},
)
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


@route(
    "/device_type/<int:type_id>/",
    methods=("DELETE",),
    role="admin",
    doc=_DEVICE_TYPE_DOCS["delete"],
)
def delete_device_type(api: Api, req: ApiRequest, type_id: int) -> Result:
    _device_type(api, type_id)
    require_unscoped(req, "Changing device types")
    with store_errors():
        api.store.delete_device_type(type_id, now=api.now(), actor=req.principal.name)
    return 204, None


# --- locations --------------------------------------------------------------------------------


LOCATION_VIEW = View(
    "Location",
    {
        "id": Out(read_only(integer())),
        "name": Out(string(minLength=1)),
        "short_name": Out(string(True)),
        "latitude": Out(LATITUDE),
        "longitude": Out(LONGITUDE),
        "parent": Out(integer(True, description="Parent location id."), "parent_id"),
        "organization_id": Out(integer(True)),
    },
)
location_json = LOCATION_VIEW.render


LOCATION_FORM = Form(
    "Location",
    {
        "name": Text(required=True),
        "short_name": Text(),
        "latitude": Coordinate(limit=90, pattern=LATITUDE_PATTERN, example="52.52"),
        "longitude": Coordinate(limit=180, pattern=LONGITUDE_PATTERN, example="13.405"),
        "parent": Integer(
            minimum=1,
            source="parent_id",
            description="Parent location id: shared or in the same organization, never itself "
            "or a descendant.",
        ),
        # Not reset by PUT: moving a location needs saying so.
        "organization_id": Integer(
            minimum=1,
            reset=False,
            description="Null = shared by every organization (unscoped admins only); a scoped "
            "token's only organization when omitted at creation.",
        ),
    },
)


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
    values = LOCATION_FORM.read(req.json_object(), mode="update" if partial else "create")

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


_LOCATION_DOCS = crud("location", "location", "Location", list_params=("location_organization",))


@route("/location/", methods=("GET",), role="viewer", doc=_LOCATION_DOCS["list"])
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


@route("/location/", methods=("POST",), role="admin", doc=_LOCATION_DOCS["create"])
def create_location(api: Api, req: ApiRequest) -> Result:
    values = _location_values(api, req, None, partial=False)
    with store_errors(), api.store.transaction():
        loc = api.store.create_location(**values, now=api.now(), actor=req.principal.name)
    return 201, location_json(loc)


@route("/location/<int:location_id>/", methods=("GET",), role="viewer", doc=_LOCATION_DOCS["get"])
def get_location(api: Api, req: ApiRequest, location_id: int) -> Result:
    return 200, location_json(_location(api, req, location_id))


@route(
    "/location/<int:location_id>/",
    methods=("PUT", "PATCH"),
    role="admin",
    doc={"PUT": _LOCATION_DOCS["replace"], "PATCH": _LOCATION_DOCS["patch"]},
)
def update_location(api: Api, req: ApiRequest, location_id: int) -> Result:
    current = _location(api, req, location_id)
    _check_writable_organization(api, req, current.organization_id)
    values = _location_values(api, req, current, partial=req.method == "PATCH")
    with store_errors():
        loc = api.store.update_location(
            location_id, now=api.now(), actor=req.principal.name, **values
        )
    return 200, location_json(loc)


@route(
    "/location/<int:location_id>/", methods=("DELETE",), role="admin", doc=_LOCATION_DOCS["delete"]
)
def delete_location(api: Api, req: ApiRequest, location_id: int) -> Result:
    current = _location(api, req, location_id)
    _check_writable_organization(api, req, current.organization_id)
    with store_errors():
        api.store.delete_location(location_id, now=api.now(), actor=req.principal.name)
    return 204, None
