"""The OpenAPI 3.1 description of the REST API, and the route that serves it.

Owns ``GET /api/v1/openapi.json`` and the document itself: every route and method, its
path/query parameters, request bodies, responses (flat and nested device views, the pagination
envelope, DRF error bodies, the operation endpoints, the supporting resources) and the bearer
security scheme, written as plain Python data from spec/inventory-api.md.

The document is hand-written rather than generated from the handlers because the handlers
parse bodies by hand; ``tests/test_api_openapi.py`` keeps it true by walking the app's real
url_map (every route/method documented, nothing documented that is absent) and validating
real responses against the schemas here.

Like every API route except ``/healthz``, ``openapi.json`` needs a (viewer) bearer token: the
document reveals nothing secret, but spec section 1 makes ``/healthz`` the only anonymous
endpoint and a uniform rule is easier to operate than an exception. Paths in the document
carry the full ``/api/v1`` prefix so that ``/healthz`` and ``/metrics`` (served at the root)
fit in one ``paths`` object; ``servers`` is the base URL the client used.

``POST /firmware_image/`` is the one operation whose body is not JSON: multipart/form-data or
a raw image (``_firmware_paths``).
"""

from __future__ import annotations

import copy
import unicodedata
from collections.abc import Iterable
from typing import Any

import acs
from acs.cwmp.identity import REFUSED_CATEGORIES as REFUSED
from api.base import (
    API_PREFIX,
    DEFAULT_LIMIT,
    MAX_LIMIT,
    SQL_INT_MAX,
    Api,
    ApiRequest,
    Result,
    route,
)
from api.operations import EMAIL_PATTERN

JSON = "application/json"
Schema = dict[str, Any]

# --- schema helpers ---------------------------------------------------------------------


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _t(kind: str, *, null: bool = False, **extra: Any) -> Schema:
    """A JSON-schema type; ``null=True`` makes it ``[kind, "null"]`` (3.1 style nullable)."""
    return {"type": [kind, "null"] if null else kind, **extra}


def _str(null: bool = False, **extra: Any) -> Schema:
    return _t("string", null=null, **extra)


def _int(null: bool = False, **extra: Any) -> Schema:
    return _t("integer", null=null, **extra)


def _bool(**extra: Any) -> Schema:
    return _t("boolean", **extra)


def _dt(null: bool = False, **extra: Any) -> Schema:
    """ISO-8601 UTC, second precision, ``Z`` suffix (spec section 1)."""
    return _str(null, format="date-time", examples=["2024-01-15T09:30:15Z"], **extra)


def _ro(schema: Schema) -> Schema:
    return {**schema, "readOnly": True}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


# --- what the API's validation accepts, as patterns --------------------------------------


def _class(codes: Iterable[int]) -> str:
    """A regex character class body matching exactly ``codes`` (ascending), as ranges of
    ``\\uXXXX``/``\\UXXXXXXXX`` escapes (read alike by Python's re and Rust's regex)."""

    def esc(code: int) -> str:
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"

    parts: list[str] = []
    start = end = -2
    for code in codes:
        if code != end + 1:
            if start >= 0:
                parts.append(esc(start) if start == end else f"{esc(start)}-{esc(end)}")
            start = code
        end = code
    if start >= 0:
        parts.append(esc(start) if start == end else f"{esc(start)}-{esc(end)}")
    return "".join(parts)


# Names and text are refused unless acs.cwmp.identity.printable(): no control or format
# (bidirectional, zero-width) character, nor separator but ' '. Surrogates are
# left out of the class: a regex cannot name them portably, and no JSON text carries one
# that decodes to a lone surrogate by accident (the API refuses those too).
_UNPRINTABLE_CODES = [
    c
    for c in range(0x110000)
    if c != 0x20 and not 0xD800 <= c <= 0xDFFF and unicodedata.category(chr(c)) in REFUSED
]
_UNPRINTABLE = _class(_UNPRINTABLE_CODES)
# Descriptions may span lines: tab, line feed and carriage return pass.
_UNPRINTABLE_MULTILINE = _class(c for c in _UNPRINTABLE_CODES if c not in (9, 10, 13))
TEXT_PATTERN = f"^[^{_UNPRINTABLE}]*$"
NAME_PATTERN = f"^ *[^ {_UNPRINTABLE}][^{_UNPRINTABLE}]*$"  # not blank
MULTILINE_PATTERN = f"^[^{_UNPRINTABLE_MULTILINE}]*$"
# acs.cwmp.identity.serial_problem: printable, no '/' and no whitespace (the only printable
# whitespace is ' ').
SERIAL_PATTERN = f"^[^/ {_UNPRINTABLE}]+$"
# parse_bool: true/false/1/0 in any case.
BOOL_TEXT_PATTERN = "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|[01])$"
# A primary key written as text: ASCII digits, no sign, blanks or leading zero (18 digits at
# most, so every such text is below SQLite's largest integer).
PK_TEXT_PATTERN = "^[1-9][0-9]{0,17}$"
# Coordinates as text: plain decimals within range (api.validation.coordinate_problem).
LATITUDE_PATTERN = r"^[+-]?0*(90(\.0+)?|[0-8]?[0-9](\.[0-9]+)?)$"
LONGITUDE_PATTERN = r"^[+-]?0*(180(\.0+)?|(1[0-7][0-9]|[0-9]?[0-9])(\.[0-9]+)?)$"
# api.resources.PARAMETER_PATH (device type default_settings).
DEFAULT_SETTING_PATH_PATTERN = r"^(Device|InternetGatewayDevice)(\.[A-Za-z0-9_-]+)+$"
# acs.cwmp.paths.PATH_RE as a parameter name under a data model root (device settings).
# An alias segment "[...]" without '.', which the store splits paths on.
SETTING_PATH_PATTERN = r"^(Device|InternetGatewayDevice)(\.([A-Za-z0-9_-]+|\[[A-Za-z0-9_:-]+\]))+$"
# 30..86400 (a device's update_frequency may be sent as text).
FREQUENCY_TEXT_PATTERN = (
    "^(3[0-9]|[4-9][0-9]|[1-9][0-9]{2,3}|[1-7][0-9]{4}|8[0-5][0-9]{3}|86[0-3][0-9]{2}|86400)$"
)


# The patterns are long (one range per run of unprintable code points), so each lives once,
# in components/schemas, and fields refer to it.
TEXT_SCHEMAS: dict[str, Schema] = {
    "Name": _str(
        minLength=1,
        maxLength=255,
        pattern=NAME_PATTERN,
        description="1-255 printable characters, not blank: no control or format "
        "(bidirectional, zero-width) character, and no separator but ' '.",
    ),
    "Text": _str(
        maxLength=255, pattern=TEXT_PATTERN, description="0-255 printable characters (see Name)."
    ),
    "MultilineText": _str(
        maxLength=4096,
        pattern=MULTILINE_PATTERN,
        description="0-4096 printable characters (see Name), line breaks and tabs allowed.",
    ),
    "SerialNumber": _str(
        minLength=1,
        maxLength=64,
        pattern=SERIAL_PATTERN,
        description="1-64 printable characters (see Name), no '/' and no whitespace; unique, "
        "case-sensitive.",
    ),
    "SerialNumberOrEmpty": _str(
        maxLength=64,
        pattern=SERIAL_PATTERN.replace("]+$", "]*$"),
        description="A SerialNumber, or empty for none (serial_number_alt: also matched "
        "against the Inform serial).",
    ),
}


def _text(*, null: bool = True, **extra: Any) -> Schema:
    """Printable text (may be empty); null too unless ``null=False``."""
    return {**_nullable(_ref("Text")), **extra} if null else {**_ref("Text"), **extra}


def _name(**extra: Any) -> Schema:
    """Printable text, not blank."""
    return {**_ref("Name"), **extra}


BOOLISH = {
    "anyOf": [
        {"type": "boolean"},
        {"enum": [0, 1]},
        {"type": "string", "pattern": BOOL_TEXT_PATTERN},
    ],
    "description": "true/false; also 1/0, and 'true'/'false'/'1'/'0' in any case.",
}
_PK_INT = _int(minimum=1, maximum=SQL_INT_MAX)
_PK_TEXT = _str(pattern=PK_TEXT_PATTERN)


def _pk(description: str, *, null: bool = True, objects: bool = True) -> Schema:
    """A reference by id: an integer, its decimal text, or (``objects``) ``{"id": n}`` as
    the nested view returns it. Unknown ids -> 400."""
    options: list[Schema] = [_PK_INT, _PK_TEXT]
    if null:
        options.append({"type": "null"})
    if objects:
        options.append(_obj({"id": {"anyOf": list(options)}}, ["id"]))
    return {"anyOf": options, "description": description}


def _coordinate(pattern: str, limit: int, max_length: int, example: str) -> Schema:
    """A decimal in -limit..limit: a JSON number or its text; empty or null = none."""
    return {
        "anyOf": [
            _str(maxLength=max_length, pattern=f"^({pattern[1:-1]})?$"),
            _t("number", minimum=-limit, maximum=limit),
            {"type": "null"},
        ],
        "description": f"Decimal degrees, -{limit}..{limit}; stored and returned as text.",
        "examples": [example],
    }


def _obj(
    properties: dict[str, Schema],
    required: list[str] | tuple[str, ...] | str = (),
    *,
    additional: bool | Schema = True,
    **extra: Any,
) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required == "*":  # every property is always present
        schema["required"] = list(properties)
    elif required:
        schema["required"] = list(required)
    if additional is not True:
        schema["additionalProperties"] = additional
    schema.update(extra)
    return schema


def _page(item: str) -> Schema:
    """The DRF LimitOffsetPagination envelope around ``item`` rows."""
    return _obj(
        {
            "count": _int(minimum=0),
            "next": _str(True, format="uri", description="Absolute URL of the next page."),
            "previous": _str(True, format="uri", description="Absolute URL of the previous page."),
            "results": {"type": "array", "items": _ref(item)},
        },
        ["count", "next", "previous", "results"],
        additional=False,
    )


LATITUDE = _str(True, description="Decimal degrees as a string, -90..90.", examples=["40.7128"])
LONGITUDE = _str(True, description="Decimal degrees as a string, -180..180.", examples=["-74.006"])
OPERATIONAL_STATUS = _str(
    enum=["provisioning", "active", "maintenance", "decommissioned", "inactive"]
)
TASK_STATE = _str(enum=["pending", "in_progress", "done", "failed", "cancelled"])
_TASK_STATES = f"({'|'.join(TASK_STATE['enum'])})"

# --- devices, flat view (spec section 3) ------------------------------------------------

_DEVICE_PROPERTIES: dict[str, Schema] = {
    "id": _ro(_int()),
    "uuid": _ro(_str(format="uuid")),
    "name": _str(minLength=1, maxLength=255),
    "customer_id": _str(True),
    "is_active": _ro(
        _bool(description="True once the CPE completed a session and not decommissioned.")
    ),
    "status": _ro(_str(enum=["Up", "Down"])),
    "status_change": _ro(_dt(description="Time of the last Up/Down transition.")),
    "type": _int(True, description="Device type id."),
    "type_short_name": _ro(_str(True)),
    "software_version": _ro(_str(True)),
    "hardware_version": _ro(_str(True)),
    "manufacturer": _ro(_str(True)),
    "product_class": _ro(_str(True)),
    "unique_identifier": _ro(_str(True, description="OUI-ProductClass-SerialNumber.")),
    "serial_number": _str(
        minLength=1, maxLength=64, pattern=r"^[^/\s]+$", description="Unique, case-sensitive."
    ),
    "serial_number_alt": _str(True, description="Also matched against the Inform serial."),
    "description": _str(True),
    "organization_id": _int(),
    "firmware_image": _int(True, description="Target firmware image id."),
    "firmware_image_is_pending": _bool(
        description="True while the firmware upgrade is queued or in flight."
    ),
    "location": _int(True, description="Location id."),
    "location_name": _str(
        True,
        description="On write: finds or creates a location of this name in the device's "
        "organization.",
    ),
    "location_short_name": _ro(_str(True)),
    "latitude": LATITUDE,
    "longitude": LONGITUDE,
    "username": _str(True, description="CWMP username the CPE uses towards the ACS."),
    "update_frequency": _int(
        minimum=30,
        maximum=86400,
        description=(
            "Periodic inform interval (s), set on the CPE as PeriodicInformInterval. Without a "
            "value of its own (omitted at creation, or on PUT) the device takes its type's, "
            "and follows it when the type's changes; else 300."
        ),
    ),
    "address": _ro(_str(True, description="IP the CPE last connected from.")),
    "last_connection": _ro(_dt(True, description="Last CWMP session.")),
    "last_configuration": _ro(_dt(True)),
    "last_change": _ro(_dt(description="Last modification of this record.")),
    "created": _ro(_dt()),
    "debug": _bool(description="Keep SOAP transcripts of this device's sessions."),
    "pending_settings": _ro(
        _str(
            True,
            description="Comma-separated pending items in queue order (spec section 6); with "
            "pending=true each item carries its state, e.g. "
            "'firmware_update:pending,reboot_scheduled:2024-01-16T02:00:00Z'.",
        )
    ),
}
# Fields every list item carries (the seed's list example); the detail carries them all.
_DEVICE_LIST_REQUIRED = [
    "id", "uuid", "name", "customer_id", "is_active", "status", "status_change", "type",
    "type_short_name", "software_version", "hardware_version", "manufacturer", "serial_number",
    "description", "organization_id", "location_name", "location", "location_short_name",
    "latitude", "longitude", "address", "last_connection", "last_configuration", "created",
    "pending_settings",
]  # fmt: skip

_DEVICE_WRITABLE = (
    "name", "customer_id", "type", "serial_number", "serial_number_alt", "description",
    "organization_id", "firmware_image", "firmware_image_is_pending", "location",
    "location_name", "latitude", "longitude", "username", "update_frequency", "debug",
)  # fmt: skip
_SERIAL = _ref("SerialNumber")
# What api.validation accepts, key by key (the read schema above says what is returned).
_DEVICE_WRITE_PROPERTIES: dict[str, Schema] = {
    "name": _name(),
    "customer_id": _text(),
    "type": _pk("Device type id."),
    "serial_number": _SERIAL,
    "serial_number_alt": _nullable(_ref("SerialNumberOrEmpty")),
    "description": _nullable(_ref("MultilineText")),
    "organization_id": _pk(
        "Organization id; required unless the token is scoped to exactly one organization.",
        null=False,
    ),
    "firmware_image": _pk("Target firmware image id.", objects=False),
    "firmware_image_is_pending": BOOLISH,
    "location": _pk("Location id, in the device's organization or shared."),
    "location_name": _text(
        description="Finds or creates a location of this name in the device's organization."
    ),
    "latitude": _coordinate(LATITUDE_PATTERN, 90, 32, "40.7128"),
    "longitude": _coordinate(LONGITUDE_PATTERN, 180, 32, "-74.006"),
    "username": _text(description="CWMP username the CPE uses towards the ACS."),
    "password": _nullable(
        _str(
            maxLength=255,
            writeOnly=True,
            description="CWMP password; stored for Digest, never returned.",
        )
    ),
    "update_frequency": {
        "anyOf": [
            _int(minimum=30, maximum=86400),
            _str(pattern=FREQUENCY_TEXT_PATTERN),
        ],
        "description": _DEVICE_PROPERTIES["update_frequency"]["description"],
    },
    "debug": BOOLISH,
}

_OPERATION_PROPERTIES: dict[str, Schema] = {
    "reboot": {**BOOLISH, "description": "Reboot RPC; done when the CPE informs with 'M Reboot'."},
    "factory": {**BOOLISH, "description": "FactoryReset RPC; the stored settings are wiped."},
    "device_factory": {
        **BOOLISH,
        "description": "FactoryReset RPC; stored settings kept and re-applied after 0 BOOTSTRAP.",
    },
    "sync": {
        **BOOLISH,
        "description": "Read the CPE's whole parameter tree into the stored config.",
    },
    "reconf": {
        **BOOLISH,
        "description": "Re-apply every stored setting with SetParameterValues.",
    },
    "schedule_inform": _obj(
        {"delay_seconds": _int(minimum=1, maximum=86400)}, ["delay_seconds"], additional=False
    ),
    "schedule_at": _dt(True, description="Delay the queued operations to this time."),
}

# --- devices, nested view (spec section 4) ----------------------------------------------

_TYPE_REF = _obj({"id": _int(), "name": _str(), "model": _str(True)}, ["id", "name", "model"])
_TYPE_REF_DETAIL = _obj(
    {**_TYPE_REF["properties"], "manufacturer": _str(True)},
    ["id", "name", "model", "manufacturer"],
)
_ORG_REF = _obj({"id": _int(), "name": _str()}, ["id", "name"])
_ORG_REF_DETAIL = _obj({**_ORG_REF["properties"], "code": _str(True)}, ["id", "name", "code"])

_NESTED_PROPERTIES: dict[str, Schema] = {
    "serial_number": _DEVICE_PROPERTIES["serial_number"],
    "name": _str(minLength=1, maxLength=255),
    "type": {"anyOf": [_TYPE_REF, {"type": "null"}]},
    "organization": _ORG_REF,
    "status": _bool(description="True = Up."),
    "last_status_change": _ro(_dt()),
    "ip_address": _str(True),
    "mac_address": _ro(_str(True)),
    "location": _str(True, description="Location name."),
    "description": _str(True),
    "firmware_version": _ro(_str(True, description="The CPE's software version.")),
    "pending_changes": _ro(_bool()),
    "pending_details": _ro(_ref("PendingDetails")),
    "created_at": _ro(_dt()),
    "updated_at": _ro(_dt()),
}
_NESTED_LIST_REQUIRED = [
    "serial_number", "name", "type", "organization", "status", "last_status_change",
    "ip_address", "location", "pending_changes", "created_at", "updated_at",
]  # fmt: skip
_NESTED_DETAIL_PROPERTIES = {
    **_NESTED_PROPERTIES,
    "type": {"anyOf": [_TYPE_REF_DETAIL, {"type": "null"}]},
    "organization": _ORG_REF_DETAIL,
}
_NESTED_DETAIL_REQUIRED = [
    *_NESTED_LIST_REQUIRED,
    "mac_address",
    "description",
    "firmware_version",
    "pending_details",
]
_NESTED_WRITE_PROPERTIES: dict[str, Schema] = {
    "serial_number": _SERIAL,
    "name": _name(),
    "type": _pk("Device type id."),
    "organization": _pk(
        "Organization id; required unless the token is scoped to exactly one organization.",
        null=False,
    ),
    "status": {**BOOLISH, "description": "Mark the device Up/Down (e.g. down for maintenance)."},
    "ip_address": {
        "anyOf": [
            _str(format="ipv4"),
            _str(format="ipv6"),
            {"type": "string", "enum": [""]},
            {"type": "null"},
        ]
    },
    "location": {
        "anyOf": [
            _text(null=False),
            _obj({"name": _text()}, ["name"]),
            {"type": "null"},
        ],
        "description": "Location name (found or created in the device's organization).",
    },
    "description": _DEVICE_WRITE_PROPERTIES["description"],
}

# --- operation endpoints (spec section 5) -----------------------------------------------

_HISTORY_ITEM = _obj(
    {
        "timestamp": _dt(),
        "action": _str(examples=["status_change"]),
        "from_status": _str(True),
        "to_status": _str(),
        "performed_by": _str(True),
    },
    ["timestamp", "action", "from_status", "to_status", "performed_by"],
)
# Empty or null = none.
ASSIGNED_USER = _str(
    True, maxLength=254, pattern=f"^({EMAIL_PATTERN})?$", description="An e-mail address."
)
_CONFIGURATION = _obj(
    {},
    description="Merged key by key. Keys that are full TR-069 parameter paths ('Device.' or "
    "'InternetGatewayDevice.' prefix) are desired CPE settings, applied with "
    "SetParameterValues in the next session; other keys are plain metadata.",
)

# --- supporting resources, write side (api/resources.py) -------------------------------

# A firmware image's device type, as a form field or query parameter (api/firmware.py).
_DEVICE_TYPE_TEXT = _str(
    pattern="^([1-9][0-9]{0,17}|null)?$", description="Device type id; empty or 'null' = none."
)

_DEVICE_TYPE_WRITE: dict[str, Schema] = {
    "name": _name(),
    "short_name": _text(),
    "model": _text(),
    "manufacturer": _text(),
    "product_class": _text(),
    "default_settings": _obj(
        {},
        additional={"type": ["string", "number", "boolean"]},
        propertyNames={"maxLength": 256, "pattern": DEFAULT_SETTING_PATH_PATTERN},
        description="TR-069 parameter path -> value.",
    ),
    "update_frequency": _int(True, minimum=30, maximum=86400),
}
_LOCATION_WRITE: dict[str, Schema] = {
    "name": _name(),
    "short_name": _text(),
    "latitude": _coordinate(LATITUDE_PATTERN, 90, 64, "52.52"),
    "longitude": _coordinate(LONGITUDE_PATTERN, 180, 64, "13.405"),
    "parent": _int(
        True,
        minimum=1,
        maximum=SQL_INT_MAX,
        description="Parent location id: shared or in the same organization, never itself or "
        "a descendant.",
    ),
    "organization_id": _int(
        True,
        minimum=1,
        maximum=SQL_INT_MAX,
        description="Null = shared by every organization (unscoped admins only); a scoped "
        "token's only organization when omitted at creation.",
    ),
}

# --- the components ---------------------------------------------------------------------

SCHEMAS: dict[str, Schema] = {
    **TEXT_SCHEMAS,
    "Error": _obj({"detail": _str()}, ["detail"], description="Request-level error."),
    "FieldErrors": _obj(
        {},
        additional={"type": "array", "items": _str()},
        description="DRF-style field validation errors: field name -> messages.",
        minProperties=1,
    ),
    "ErrorBody": {"anyOf": [_ref("Error"), _ref("FieldErrors")]},
    "Device": _obj(_DEVICE_PROPERTIES, list(_DEVICE_PROPERTIES), additional=False),
    "DeviceListItem": _obj(_DEVICE_PROPERTIES, _DEVICE_LIST_REQUIRED, additional=False),
    "DevicePage": _page("DeviceListItem"),
    "DeviceCreate": _obj(
        _DEVICE_WRITE_PROPERTIES,
        ["name", "serial_number", "organization_id"],
        additional=False,
        description="Unknown fields are refused with 400. organization_id may be left out "
        "with a token scoped to exactly one organization.",
    ),
    "DeviceReplace": _obj(
        _DEVICE_WRITE_PROPERTIES,
        ["name", "serial_number"],
        additional=False,
        description="Full replacement: omitted writable fields reset to their defaults, except "
        "password, which is kept unless given.",
    ),
    "DevicePatch": _obj(
        {**_DEVICE_WRITE_PROPERTIES, **_OPERATION_PROPERTIES},
        additional=False,
        description="Partial update plus device operations: each flag set to true queues a task "
        "and sends a connection request; false is accepted and does nothing. "
        "firmware_image + firmware_image_is_pending=true queues a firmware Download.",
    ),
    "PendingDetails": _obj(
        {
            "configuration_updates": _int(minimum=0),
            "firmware_update": _bool(),
            "last_pending_change": _dt(True),
        },
        ["configuration_updates", "firmware_update", "last_pending_change"],
    ),
    "DeviceNested": _obj(_NESTED_PROPERTIES, _NESTED_LIST_REQUIRED, additional=False),
    "DeviceNestedDetail": _obj(
        _NESTED_DETAIL_PROPERTIES, _NESTED_DETAIL_REQUIRED, additional=False
    ),
    "DeviceNestedPage": _page("DeviceNested"),
    "DeviceNestedCreate": _obj(
        _NESTED_WRITE_PROPERTIES,
        ["serial_number", "name", "organization"],
        additional=False,
        description="type and organization are ids; organization may be left out with a "
        "token scoped to exactly one organization.",
    ),
    "DeviceNestedReplace": _obj(
        _NESTED_WRITE_PROPERTIES,
        ["name"],
        additional=False,
        description="A serial_number different from the path renames the device (409 if taken).",
    ),
    "DeviceNestedPatch": _obj(_NESTED_WRITE_PROPERTIES, additional=False),
    "DeviceOperationWrite": _obj(
        {
            "operational_status": OPERATIONAL_STATUS,
            "status": _str(
                True, maxLength=10_000, description="Status of the operation recorded (free text)."
            ),
            "description": _str(True, maxLength=10_000),
            "notes": _str(True, maxLength=10_000),
            "maintenance_notes": _str(True, maxLength=10_000),
            "location": _str(True, maxLength=10_000),
            "assigned_user": ASSIGNED_USER,
            "operator_id": {"anyOf": [_int(), _str(maxLength=255), {"type": "null"}]},
            "started_at": _dt(True),
            "completed_at": _dt(True),
            "next_maintenance": _dt(True),
            "configuration": _CONFIGURATION,
        },
        description="All keys optional; other keys are kept as free-form metadata. Invalid "
        "values (status, e-mail, dates) -> 422.",
    ),
    "DeviceOperation": _obj(
        {
            "id": _int(),
            "device_name": _str(),
            "serial_number": _str(),
            "device_type": _str(True, description="Device type short name."),
            "operational_status": OPERATIONAL_STATUS,
            "location": _str(True),
            "assigned_user": _str(True),
            "organization": _str(True, description="Organization name."),
            "configuration": _obj(
                {"firmware_version": _str(True, description="Reported by the CPE.")}
            ),
            "maintenance_notes": _str(True),
            "next_maintenance": _dt(True),
            "operator_id": {"type": ["string", "integer", "null"]},
            "description": _str(True),
            "last_updated": _dt(True),
            "updated_by": _str(True),
            "operational_history": {"type": "array", "items": _HISTORY_ITEM},
        },
        "*",
    ),
    "DeviceSerialOperationWrite": _obj(
        {
            "name": _name(),
            "status": OPERATIONAL_STATUS,
            "location": _str(True, maxLength=10_000),
            "assigned_user": ASSIGNED_USER,
            "organization_unit": _str(True, maxLength=10_000),
            "device_type": _str(True, maxLength=10_000),
            "manufacturer": _str(True, maxLength=10_000),
            "model": _str(True, maxLength=10_000),
            "configuration": _CONFIGURATION,
            "custom_fields": _obj({}, description="Merged key by key."),
            "tags": {"type": "array", "items": _str(), "maxItems": 100, "description": "Replaced."},
        },
        description="Partial and idempotent. Invalid values -> 422.",
    ),
    "DeviceSerialOperation": _obj(
        {
            "id": _int(),
            "serial_number": _str(),
            "name": _str(),
            "status": OPERATIONAL_STATUS,
            "location": _str(True),
            "assigned_user": _str(True),
            "organization_unit": _str(True),
            "device_type": _str(True),
            "manufacturer": _str(True),
            "model": _str(True),
            "configuration": _obj({}),
            "custom_fields": _obj({}),
            "tags": {"type": "array", "items": _str()},
            "created_at": _dt(),
            "updated_at": _dt(),
            "last_seen": _dt(True, description="Last CWMP contact."),
        },
        "*",
    ),
    # --- supporting resources (spec section 7)
    "Organization": _obj(
        {"id": _ro(_int()), "name": _str(minLength=1), "code": _str(True)},
        ["id", "name", "code"],
    ),
    "OrganizationWrite": _obj({"name": _name(), "code": _text()}, ["name"], additional=False),
    "OrganizationPatch": _obj({"name": _name(), "code": _text()}, additional=False),
    "OrganizationPage": _page("Organization"),
    "DeviceType": _obj(
        {
            "id": _ro(_int()),
            "name": _str(minLength=1),
            "short_name": _str(True),
            "model": _str(True),
            "manufacturer": _str(True),
            "product_class": _str(
                True,
                description="Devices informing with this manufacturer/product class get this type.",
            ),
            "default_settings": _obj(
                {}, description="TR-069 path -> value, applied to every device of the type."
            ),
            "update_frequency": _int(
                True,
                minimum=30,
                maximum=86400,
                description="Periodic inform interval of the type's devices that set none.",
            ),
        },
        "*",
    ),
    "DeviceTypeWrite": _obj(_DEVICE_TYPE_WRITE, ["name"], additional=False),
    "DeviceTypePatch": _obj(_DEVICE_TYPE_WRITE, additional=False),
    "DeviceTypePage": _page("DeviceType"),
    "Location": _obj(
        {
            "id": _ro(_int()),
            "name": _str(minLength=1),
            "short_name": _str(True),
            "latitude": LATITUDE,
            "longitude": LONGITUDE,
            "parent": _int(True, description="Parent location id."),
            "organization_id": _int(True),
        },
        ["id", "name", "short_name", "latitude", "longitude", "parent", "organization_id"],
    ),
    "LocationWrite": _obj(_LOCATION_WRITE, ["name"], additional=False),
    "LocationPatch": _obj(_LOCATION_WRITE, additional=False),
    "LocationPage": _page("Location"),
    # --- firmware images (api/firmware.py)
    "FirmwareImage": _obj(
        {
            "id": _ro(_int()),
            "name": _str(minLength=1, maxLength=255),
            "version": _str(
                minLength=1,
                maxLength=255,
                description="Checked against the CPE's software version after an upgrade.",
            ),
            "size": _ro(_int(minimum=1, description="Bytes.")),
            "sha256": _ro(_str(pattern="^[0-9a-f]{64}$", description="Also the file's ETag.")),
            "device_type": _int(True, description="Device type id the image is meant for."),
            "filename": _ro(_str(description="File name given to CPEs (TargetFileName).")),
            "created": _ro(_dt()),
        },
        "*",
    ),
    "FirmwareImagePage": _page("FirmwareImage"),
    "FirmwareImageUpload": _obj(
        {
            "file": _str(
                minLength=1, contentMediaType="application/octet-stream", description="The image."
            ),
            "name": _name(),
            "version": _name(),
            "device_type": _DEVICE_TYPE_TEXT,
        },
        ["file", "name", "version"],
        additional=False,
    ),
    "Parameter": _obj(
        {
            "path": _str(),
            "value": _str(True),
            "type": _str(True, examples=["xsd:string"]),
            "writable": _t("boolean", null=True),
            "updated": _dt(),
        },
        ["path", "value", "type", "writable", "updated"],
    ),
    "ParameterPage": _page("Parameter"),
    "Task": _obj(
        {
            "id": _int(),
            "kind": _str(examples=["reboot"]),
            "state": TASK_STATE,
            "created": _dt(),
            "scheduled_at": _dt(True),
            "started": _dt(True),
            "finished": _dt(True),
            "fault_code": _int(True),
            "fault_string": _str(True),
            "attempts": _int(minimum=0),
            "actor": _str(description="Who queued it: a token name, or 'acs'."),
        },
        "*",
    ),
    "TaskPage": _page("Task"),
    "Backup": _obj(
        {
            "id": _int(),
            "created": _dt(),
            "size": _int(minimum=0, description="Bytes."),
            "sha256": _str(pattern="^[0-9a-f]{64}$"),
            "task": _int(True, description="The backup task that took it (null once deleted)."),
        },
        "*",
        description="A vendor configuration file the CPE uploaded (Upload RPC).",
    ),
    "BackupPage": _page("Backup"),
    "TransferRequest": _obj(
        {"schedule_at": _dt(True, description="Run at the first session after this time.")},
        additional=False,
        description="Optional body; an empty body queues the task to run now.",
    ),
    "EffectiveSetting": _obj(
        {
            "value": _str(description="Desired value; credentials are redacted."),
            "type": _str(examples=["xsd:unsignedInt"], description="xsd type it is sent with."),
            "source": _str(
                enum=["device", "type"],
                description="The device's own setting, or its device type's default_settings.",
            ),
            "confirmed": _bool(description="The CPE has this value (nothing to push)."),
            "state": _str(
                enum=["confirmed", "pending", "refused"],
                description="refused: the CPE refused exactly this value for good (see fault); "
                "it is not pushed again until the value changes.",
            ),
            "cpe_value": _str(True, description="The CPE's last reported or accepted value."),
            "fault": _obj(
                {"code": _int(True), "string": _str(True)},
                ["code", "string"],
                type=["object", "null"],
            ),
            "updated": _dt(True, description="When the device's own setting last changed."),
        },
        "*",
    ),
    "DeviceSettings": _obj(
        {
            "device": _int(),
            "data_model_root": _str(True, examples=["Device."]),
            "device_type": _int(True),
            "last_configuration": _dt(True),
            "pending": _int(minimum=0, description="Settings the next push will send."),
            "settings": _obj({}, additional=_ref("EffectiveSetting")),
        },
        "*",
        description="Effective settings: the device type's default_settings overlaid by the "
        "device's own, keyed by TR-069 path.",
    ),
    "DeviceSettingsPatch": _obj(
        {},
        additional={"type": ["string", "number", "boolean", "null"]},
        propertyNames={"maxLength": 256, "pattern": SETTING_PATH_PATTERN},
        maxProperties=1024,
        description="TR-069 path -> value (the device's own setting; pending until the CPE "
        "confirms it) or null (stop managing the path; a type default applies again).",
        examples=[{"Device.ManagementServer.PeriodicInformInterval": "600"}],
    ),
    "HistoryEntry": _obj(
        {
            "id": _int(),
            "time": _dt(),
            "actor": _str(description="Token name, 'acs' or 'cpe'."),
            "action": _str(examples=["updated", "status", "task_queued"]),
            "detail": _obj({}),
        },
        ["time", "actor", "action"],
        description="One audit entry: API change, operation, status transition, CWMP fault.",
    ),
    "HistoryPage": _page("HistoryEntry"),
    "SessionTranscript": _obj(
        {"id": _int(), "started": _dt(), "transcript": _str()},
        ["id", "started", "transcript"],
        description="A CWMP session's SOAP transcript (kept while the device's debug is on).",
    ),
    "SessionTranscriptPage": _page("SessionTranscript"),
    "Health": _obj(
        {
            "status": _str(enum=["ok", "degraded", "error"]),
            "version": _str(),
            "storage": _str(enum=["ok", "full"]),
            "storage_full": {"type": "array", "items": _str(enum=["database", "files"])},
            "listeners": _obj(
                {},
                additional=_obj(
                    {"address": _str(), "listening": _bool()}, ["address", "listening"]
                ),
            ),
            "devices": _int(minimum=0),
            "detail": _str(),
        },
        ["status", "version"],
    ),
}

_METADATA = _obj({}, description="Body keys neither operation endpoint documents.")
# Shown once recorded, so not required.
SCHEMAS["DeviceOperation"]["properties"].update(
    {
        "status": _str(True, description="Status of the last recorded operation (free text)."),
        "notes": _str(True),
        "started_at": _dt(True),
        "completed_at": _dt(True),
        "metadata": _METADATA,
    }
)
SCHEMAS["DeviceSerialOperation"]["properties"]["metadata"] = _METADATA

# --- parameters and responses -----------------------------------------------------------

_BOOL_QUERY = _str(pattern=BOOL_TEXT_PATTERN, examples=["true"])


def _query(name: str, schema: Schema, description: str, *, empty: bool = False) -> Schema:
    """A query parameter; ``empty``: ``?name=`` is the same as leaving it out."""
    param: Schema = {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }
    if empty:
        param["allowEmptyValue"] = True
    return param


PARAMETERS: dict[str, Schema] = {
    "limit": _query(
        "limit",
        _int(minimum=0, maximum=SQL_INT_MAX, default=DEFAULT_LIMIT),
        f"Page size (default {DEFAULT_LIMIT}, also for 0; larger values are capped at "
        f"{MAX_LIMIT}). Non-integer or negative -> 400.",
        empty=True,
    ),
    "offset": _query(
        "offset",
        _int(minimum=0, maximum=SQL_INT_MAX, default=0),
        "Index of the first result (default 0). Non-integer or negative -> 400.",
        empty=True,
    ),
    "pending": _query(
        "pending",
        _BOOL_QUERY,
        "Detailed pending form: each pending item carries its state.",
    ),
    "update_status": _query(
        "update_status",
        _BOOL_QUERY,
        "Send a connection request to each returned device first (bounded by "
        "api.update_status_timeout) and update its status from the outcome. Needs the "
        "operator role.",
    ),
    "type": _query(
        "type", _int(minimum=-SQL_INT_MAX - 1, maximum=SQL_INT_MAX), "Device type id.", empty=True
    ),
    "status": _query(
        "status",
        _str(enum=["0", "false", "False", "1", "true", "True"]),
        "0/false/False = Down, 1/true/True = Up; anything else -> 400.",
        empty=True,
    ),
    "last_status_change_from": _query(
        "last_status_change_from",
        {
            "anyOf": [_str(format="date-time"), _str(format="date")],
            "examples": ["2000-01-01T00:01:00+00:00"],
        },
        "status_change >= this. Accepts 2000-01-01, 2000-01-01 00:01:00, "
        "2000-01-01T00:01:00, with or without offset (naive = UTC); invalid -> 400.",
        empty=True,
    ),
    "organization": _query(
        "organization",
        _int(minimum=-SQL_INT_MAX - 1, maximum=SQL_INT_MAX),
        "Organization id; outside the token's scope -> 403.",
        empty=True,
    ),
    "location_organization": _query(
        "organization",
        _int(minimum=1, maximum=SQL_INT_MAX),
        "Organization id: its locations and the shared ones; outside the token's scope -> 403.",
        empty=True,
    ),
    "force": _query(
        "force",
        _BOOL_QUERY,
        "Delete even while a CWMP session or firmware transfer is in progress.",
    ),
    "task_state": _query(
        "state",
        _str(
            pattern=f"^ *{_TASK_STATES} *(, *{_TASK_STATES} *)*$",
            examples=["pending,in_progress"],
        ),
        "Comma-separated task states to list, e.g. 'pending,failed'.",
        empty=True,
    ),
    "path_prefix": _query(
        "path",
        _str(examples=["Device.DeviceInfo."]),
        "Only parameters whose path starts with this prefix.",
    ),
}


def _path_param(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
    }


def _param_ref(name: str) -> Schema:
    return {"$ref": f"#/components/parameters/{name}"}


def _error_response(description: str) -> Schema:
    return {"description": description, "content": {JSON: {"schema": _ref("ErrorBody")}}}


RESPONSES: dict[str, Schema] = {
    "BadRequest": _error_response(
        "Malformed JSON, body not an object, wrong type, unknown field or invalid filter."
    ),
    "Unauthorized": {
        "description": "Missing, unknown or revoked token.",
        "headers": {"WWW-Authenticate": {"schema": _str(const="Bearer")}},
        "content": {JSON: {"schema": _ref("Error")}},
    },
    "Forbidden": _error_response("Role too low, or an organization outside the token's scope."),
    "NotFound": _error_response("Unknown id or serial number."),
    "Conflict": _error_response("Uniqueness conflict or blocked delete."),
    "TooLarge": _error_response("Request body over 1 MiB."),
    "Unprocessable": _error_response(
        "Well-formed JSON with invalid values (status, e-mail, date)."
    ),
    "StorageFull": {
        "description": "The database or the files directory is full: nothing was written. "
        "GET /healthz reports it until space is freed.",
        "headers": {"Retry-After": {"schema": _int(minimum=1)}},
        "content": {JSON: {"schema": _ref("Error")}},
    },
}

# --- operations -------------------------------------------------------------------------

# Ids beyond SQLite's integers name no row: the route does not match them (404).
_ID_INT = _int(minimum=1, maximum=SQL_INT_MAX)
ID = _path_param("id", _ID_INT, "Device id.")
SERIAL = _path_param(
    "serial_number",
    _str(pattern=r"^[^/\s]+$"),
    "Serial number (case-sensitive; may contain '.', '-', '_', ':').",
)


def _rid(what: str) -> Schema:
    return _path_param("id", _ID_INT, f"{what} id.")


def _op(
    op_id: str,
    summary: str,
    tag: str,
    role: str,
    ok: tuple[int, Schema | None],
    *,
    params: list[Schema] | None = None,
    body: Schema | None = None,
    errors: tuple[str, ...] = (),
    description: str | None = None,
) -> Schema:
    """One operation object; every authenticated operation may answer 401 and 403, and 503
    when storage is full."""
    code, schema = ok
    responses: dict[str, Any] = {}
    if schema is None:
        responses[str(code)] = {"description": "No content."}
    else:
        responses[str(code)] = {"description": "Success.", "content": {JSON: {"schema": schema}}}
    for status, name in (
        ("400", "BadRequest"),
        ("404", "NotFound"),
        ("409", "Conflict"),
        ("413", "TooLarge"),
        ("422", "Unprocessable"),
    ):
        if name in errors:
            responses[status] = {"$ref": f"#/components/responses/{name}"}
    responses["401"] = {"$ref": "#/components/responses/Unauthorized"}
    responses["403"] = {"$ref": "#/components/responses/Forbidden"}
    responses["503"] = {"$ref": "#/components/responses/StorageFull"}
    op: Schema = {
        "operationId": op_id,
        "summary": summary,
        "tags": [tag],
        "x-required-role": role,
        "parameters": list(params or []),
        "responses": dict(sorted(responses.items())),
    }
    if description:
        op["description"] = description
    if body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    return op


_READ = ("BadRequest",)
_DETAIL = ("BadRequest", "NotFound")
_WRITE = ("BadRequest", "NotFound", "TooLarge")
_DEVICE_FILTERS = [
    _param_ref(n)
    for n in (
        "type",
        "status",
        "last_status_change_from",
        "organization",
        "limit",
        "offset",
        "pending",
        "update_status",
    )
]
_PAGE = [_param_ref("limit"), _param_ref("offset")]


def _crud(
    base: str,
    name: str,
    tag: str,
    schema: str,
    *,
    patch: bool = True,
    list_params: tuple[str, ...] = (),
) -> dict[str, Schema]:
    """Admin CRUD of a supporting resource: list/create and detail/replace/patch/delete."""
    write = f"{schema}Write"
    detail: Schema = {
        "parameters": [_rid(name)],
        "get": _op(f"get_{tag}", f"One {name}", tag, "viewer", (200, _ref(schema)), errors=_DETAIL),
        "put": _op(
            f"replace_{tag}",
            f"Replace a {name}",
            tag,
            "admin",
            (200, _ref(schema)),
            body=_ref(write),
            errors=(*_WRITE, "Conflict"),
        ),
        "delete": _op(
            f"delete_{tag}",
            f"Delete a {name}",
            tag,
            "admin",
            (204, None),
            errors=("NotFound", "Conflict"),
            description="409 while devices still refer to it.",
        ),
    }
    if patch:
        detail["patch"] = _op(
            f"patch_{tag}",
            f"Update a {name}",
            tag,
            "admin",
            (200, _ref(schema)),
            body=_ref(f"{schema}Patch"),
            errors=(*_WRITE, "Conflict"),
        )
    return {
        f"{base}/": {
            "get": _op(
                f"list_{tag}",
                f"List {name}s",
                tag,
                "viewer",
                (200, _ref(f"{schema}Page")),
                params=[*(_param_ref(n) for n in list_params), *_PAGE],
                errors=_READ,
            ),
            "post": _op(
                f"create_{tag}",
                f"Create a {name}",
                tag,
                "admin",
                (201, _ref(schema)),
                body=_ref(write),
                errors=("BadRequest", "Conflict", "TooLarge"),
            ),
        },
        f"{base}/{{id}}/": detail,
    }


def _firmware_paths(base: str) -> dict[str, Schema]:
    """List/upload and detail/delete of firmware images (api/firmware.py)."""
    tag = "firmware_image"
    query = [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": f"{description} Raw-body uploads only: with a multipart body "
            "-> 400 (the form carries them).",
            "schema": schema,
        }
        for name, description, schema in (
            ("name", "Image name; required with a raw body.", _name()),
            ("version", "Image version; required with a raw body.", _name()),
            ("device_type", "Device type id; empty or 'null' = none.", _DEVICE_TYPE_TEXT),
        )
    ]
    upload = _op(
        "create_firmware_image",
        "Upload a firmware image",
        tag,
        "admin",
        (201, _ref("FirmwareImage")),
        params=query,
        errors=("BadRequest",),
        description="multipart/form-data with the image in field 'file' (plus name, version, "
        "device_type), or the raw image as the body with ?name=&version=. Streamed to disk and "
        "hashed (SHA-256) off the reactor. Needs a token without organization scope. Bodies "
        "over [files] max_upload (default 512 MiB) -> 413, refused from their headers.",
    )
    upload["requestBody"] = {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": _ref("FirmwareImageUpload")},
            "application/octet-stream": {
                "schema": _str(minLength=1, contentMediaType="application/octet-stream")
            },
        },
    }
    upload["responses"]["413"] = _error_response("Body over [files] max_upload.")
    upload["responses"] = dict(sorted(upload["responses"].items()))
    return {
        f"{base}/": {
            "get": _op(
                "list_firmware_images",
                "List firmware images",
                tag,
                "viewer",
                (200, _ref("FirmwareImagePage")),
                params=list(_PAGE),
                errors=_READ,
            ),
            "post": upload,
        },
        f"{base}/{{id}}/": {
            "parameters": [_rid("firmware image")],
            "get": _op(
                "get_firmware_image",
                "One firmware image",
                tag,
                "viewer",
                (200, _ref("FirmwareImage")),
                errors=_DETAIL,
            ),
            "delete": _op(
                "delete_firmware_image",
                "Delete a firmware image and its file",
                tag,
                "admin",
                (204, None),
                errors=("NotFound", "Conflict"),
                description="409 while a pending or in-progress firmware_update task uses it. "
                "Needs a token without organization scope.",
            ),
        },
    }


def _paths() -> dict[str, Schema]:
    p = API_PREFIX
    dev = f"{p}/inventory_device"
    ser = f"{p}/inventory_device_serial"
    paths: dict[str, Schema] = {
        f"{dev}/": {
            "get": _op(
                "list_devices",
                "List devices (flat view)",
                "inventory_device",
                "viewer",
                (200, _ref("DevicePage")),
                params=_DEVICE_FILTERS,
                errors=_READ,
            ),
            "post": _op(
                "create_device",
                "Create a device",
                "inventory_device",
                "admin",
                (201, _ref("Device")),
                body=_ref("DeviceCreate"),
                errors=("BadRequest", "Conflict", "TooLarge"),
                description="Duplicate serial_number (or a serial_number_alt equal to another "
                "device's serial) -> 409.",
            ),
        },
        f"{dev}/{{id}}/": {
            "parameters": [ID],
            "get": _op(
                "get_device",
                "One device (flat view)",
                "inventory_device",
                "viewer",
                (200, _ref("Device")),
                params=[_param_ref("pending"), _param_ref("update_status")],
                errors=_DETAIL,
            ),
            "put": _op(
                "replace_device",
                "Replace a device",
                "inventory_device",
                "operator",
                (200, _ref("Device")),
                body=_ref("DeviceReplace"),
                errors=(*_WRITE, "Conflict"),
            ),
            "patch": _op(
                "patch_device",
                "Update a device and/or run device operations",
                "inventory_device",
                "operator",
                (200, _ref("Device")),
                body=_ref("DevicePatch"),
                errors=(*_WRITE, "Conflict"),
            ),
            "delete": _op(
                "delete_device",
                "Delete a device",
                "inventory_device",
                "admin",
                (204, None),
                params=[_param_ref("force")],
                errors=("BadRequest", "NotFound", "Conflict"),
                description="Removes the device, its tasks, cached parameters and history; the "
                "global audit log keeps a deletion entry. 409 while a CWMP session or a "
                "firmware transfer is in progress, unless force=true.",
            ),
        },
        f"{dev}/{{id}}/parameters/": {
            "parameters": [ID],
            "get": _op(
                "list_device_parameters",
                "The device's cached parameter tree",
                "device_resources",
                "viewer",
                (200, _ref("ParameterPage")),
                params=[_param_ref("path_prefix"), *_PAGE],
                errors=_DETAIL,
            ),
        },
        f"{dev}/{{id}}/tasks/": {
            "parameters": [ID],
            "get": _op(
                "list_device_tasks",
                "Queued and finished tasks of the device",
                "device_resources",
                "viewer",
                (200, _ref("TaskPage")),
                params=[_param_ref("task_state"), *_PAGE],
                errors=_DETAIL,
            ),
        },
        f"{dev}/{{id}}/tasks/{{task_id}}/": {
            "parameters": [ID, _path_param("task_id", _ID_INT, "Task id.")],
            "get": _op(
                "get_device_task",
                "One task of the device",
                "device_resources",
                "viewer",
                (200, _ref("Task")),
                errors=_DETAIL,
            ),
            "delete": _op(
                "cancel_device_task",
                "Cancel a pending task",
                "device_resources",
                "operator",
                (204, None),
                errors=("NotFound", "Conflict"),
                description="409 when the task is no longer pending.",
            ),
        },
        f"{dev}/{{id}}/backups/": {
            "parameters": [ID],
            "get": _op(
                "list_device_backups",
                "Configuration backups of the device",
                "device_resources",
                "viewer",
                (200, _ref("BackupPage")),
                params=_PAGE,
                errors=_DETAIL,
            ),
            "post": {
                **_op(
                    "create_device_backup",
                    "Take a configuration backup",
                    "device_resources",
                    "operator",
                    (202, _ref("Task")),
                    body=_ref("TransferRequest"),
                    errors=_WRITE,
                    description="Queues a backup task: the CPE is asked (Upload RPC, FileType "
                    "'1 Vendor Configuration File') to send its configuration to a signed URL "
                    "of the file server; the task completes on the CPE's TransferComplete once "
                    "the file is stored, and the backup then appears in this list.",
                ),
                "requestBody": {
                    "required": False,
                    "content": {JSON: {"schema": _ref("TransferRequest")}},
                },
            },
        },
        f"{dev}/{{id}}/backups/{{backup_id}}/": {
            "parameters": [ID, _path_param("backup_id", _ID_INT, "Backup id.")],
            "delete": _op(
                "delete_device_backup",
                "Delete a configuration backup and its file",
                "device_resources",
                "admin",
                (204, None),
                errors=("NotFound", "Conflict"),
                description="409 while a restore of this backup is queued or running.",
            ),
        },
        f"{dev}/{{id}}/backups/{{backup_id}}/restore/": {
            "parameters": [ID, _path_param("backup_id", _ID_INT, "Backup id.")],
            "post": {
                **_op(
                    "restore_device_backup",
                    "Restore a configuration backup to the device",
                    "device_resources",
                    "operator",
                    (202, _ref("Task")),
                    body=_ref("TransferRequest"),
                    errors=_WRITE,
                    description="Queues a restore task: Download RPC with FileType "
                    "'3 Vendor Configuration File' and a signed URL of this backup; the task "
                    "completes on the CPE's TransferComplete (fault code 0), and fails with the "
                    "CPE's fault otherwise.",
                ),
                "requestBody": {
                    "required": False,
                    "content": {JSON: {"schema": _ref("TransferRequest")}},
                },
            },
        },
        f"{dev}/{{id}}/history/": {
            "parameters": [ID],
            "get": _op(
                "list_device_history",
                "The device's audit trail",
                "device_resources",
                "viewer",
                (200, _ref("HistoryPage")),
                params=_PAGE,
                errors=_DETAIL,
            ),
        },
        f"{dev}/{{id}}/settings/": {
            "parameters": [ID],
            "get": _op(
                "get_device_settings",
                "The device's effective desired settings and their state",
                "device_resources",
                "viewer",
                (200, _ref("DeviceSettings")),
                errors=_DETAIL,
            ),
            "patch": _op(
                "patch_device_settings",
                "Set or remove the device's own desired settings",
                "device_resources",
                "operator",
                (200, _ref("DeviceSettings")),
                body=_ref("DeviceSettingsPatch"),
                errors=_WRITE,
                description="A change queues one configuration_update and wakes the device. "
                "Invalid paths or values -> 400 keyed by path.",
            ),
        },
        f"{dev}/{{id}}/sessions/": {
            "parameters": [ID],
            "get": _op(
                "list_device_sessions",
                "SOAP transcripts of the device's sessions (debug on)",
                "device_resources",
                "viewer",
                (200, _ref("SessionTranscriptPage")),
                params=_PAGE,
                errors=_DETAIL,
            ),
        },
        f"{ser}/": {
            "get": _op(
                "list_devices_nested",
                "List devices (nested view)",
                "inventory_device_serial",
                "viewer",
                (200, _ref("DeviceNestedPage")),
                params=_DEVICE_FILTERS,
                errors=_READ,
            ),
            "post": _op(
                "create_device_nested",
                "Create a device (nested view)",
                "inventory_device_serial",
                "admin",
                (201, _ref("DeviceNestedDetail")),
                body=_ref("DeviceNestedCreate"),
                errors=("BadRequest", "Conflict", "TooLarge"),
            ),
        },
        f"{ser}/{{serial_number}}/": {
            "parameters": [SERIAL],
            "get": _op(
                "get_device_nested",
                "One device by serial number (nested view)",
                "inventory_device_serial",
                "viewer",
                (200, _ref("DeviceNestedDetail")),
                params=[_param_ref("update_status")],
                errors=_DETAIL,
            ),
            "put": _op(
                "replace_device_nested",
                "Replace a device by serial number",
                "inventory_device_serial",
                "operator",
                (200, _ref("DeviceNestedDetail")),
                body=_ref("DeviceNestedReplace"),
                errors=(*_WRITE, "Conflict"),
            ),
            "patch": _op(
                "patch_device_nested",
                "Update a device by serial number",
                "inventory_device_serial",
                "operator",
                (200, _ref("DeviceNestedDetail")),
                body=_ref("DeviceNestedPatch"),
                errors=(*_WRITE, "Conflict"),
            ),
            "delete": _op(
                "delete_device_nested",
                "Delete a device by serial number",
                "inventory_device_serial",
                "admin",
                (204, None),
                params=[_param_ref("force")],
                errors=("BadRequest", "NotFound", "Conflict"),
            ),
        },
        f"{p}/inventory_device_operation/{{id}}/": {
            "parameters": [ID],
            "put": _op(
                "put_device_operation",
                "Update the device's operational record",
                "inventory_device_operation",
                "operator",
                (200, _ref("DeviceOperation")),
                body=_ref("DeviceOperationWrite"),
                errors=(*_WRITE, "Unprocessable"),
            ),
        },
        f"{p}/inventory_device_serial_operation/{{serial_number}}/": {
            "parameters": [SERIAL],
            "put": _op(
                "put_device_serial_operation",
                "Update the device's operational record by serial number",
                "inventory_device_operation",
                "operator",
                (200, _ref("DeviceSerialOperation")),
                body=_ref("DeviceSerialOperationWrite"),
                errors=(*_WRITE, "Unprocessable"),
            ),
        },
        **_crud(f"{p}/organization", "organization", "organization", "Organization"),
        **_crud(f"{p}/device_type", "device type", "device_type", "DeviceType"),
        **_crud(
            f"{p}/location",
            "location",
            "location",
            "Location",
            list_params=("location_organization",),
        ),
        **_firmware_paths(f"{p}/firmware_image"),
        f"{p}/openapi.json": {
            "get": _op(
                "openapi",
                "This document",
                "meta",
                "viewer",
                (200, {"type": "object", "description": "An OpenAPI 3.1 document."}),
            ),
        },
        # At the root, next to /healthz, where scrapers look; it still needs a token.
        "/metrics": {
            "get": {
                **_op("metrics", "Prometheus metrics", "meta", "viewer", (200, None)),
                "description": "Counters over every organization, so a token scoped to some "
                "organizations gets 403.",
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format 0.0.4.",
                        "content": {"text/plain": {"schema": _str()}},
                    },
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                    "403": {"$ref": "#/components/responses/Forbidden"},
                    "503": {
                        "description": "The store is unavailable.",
                        "content": {JSON: {"schema": _ref("Error")}},
                    },
                },
            },
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness of the appliance (no token needed)",
                "tags": ["meta"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "Healthy.",
                        "content": {JSON: {"schema": _ref("Health")}},
                    },
                    "503": {
                        "description": "Degraded: storage is full and writes are refused "
                        "(status degraded, storage_full names the database and/or the files "
                        "directory; clears once a write succeeds again), or the store is "
                        "unavailable (status error).",
                        "content": {JSON: {"schema": _ref("Health")}},
                    },
                },
            },
        },
    }
    return paths


def openapi_document(server_url: str | None = None) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document; ``server_url`` = the base URL clients use."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ACS inventory API",
            "version": acs.__version__,
            "description": "Device inventory and TR-069 device operations of the ACS appliance. "
            "Errors are DRF-style: {'detail': '...'} or {'field': ['message', ...]}. Every "
            "list is paginated (limit/offset) in ascending id order. Roles: viewer (GET), "
            "operator (+ device writes and operations), admin (everything); each operation "
            "names its minimum role in x-required-role.",
        },
        "servers": [{"url": server_url or "/"}],
        "security": [{"bearerAuth": []}],
        "tags": [
            {"name": name}
            for name in (
                "inventory_device",
                "inventory_device_serial",
                "inventory_device_operation",
                "device_resources",
                "organization",
                "device_type",
                "location",
                "firmware_image",
                "meta",
            )
        ],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Token created with `acs token create`, shown once.",
                }
            },
            "schemas": copy.deepcopy(SCHEMAS),
            "parameters": copy.deepcopy(PARAMETERS),
            "responses": copy.deepcopy(RESPONSES),
        },
    }


@route("/openapi.json", methods=("GET",), role="viewer")
def openapi_json(api: Api, req: ApiRequest) -> Result:
    """The OpenAPI document, with the base URL the client used as its server."""
    return 200, openapi_document(req.base_url())
