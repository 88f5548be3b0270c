"""The OpenAPI 3.1 description of the REST API, and the route that serves it.

Owns ``GET /api/v1/openapi.json`` and the assembly of the document: ``paths`` come from the
route registry (each route's :class:`api.docs.Doc`, its rule's path parameters, its role),
the write bodies of declared forms from :mod:`api.fields`, the representations of declared
views from :mod:`api.views`, query parameters and error responses from :mod:`api.docs`. The
response shapes built from several rows at once (the flat and nested device views, the
operational records, effective settings, health) are written here as plain Python data
from spec/inventory-api.md. ``tests/test_api_openapi.py`` keeps it true by
walking the app's real url_map and validating real responses against the schemas, and
``tests/test_api_fields.py`` probes every declared field against its schema.

Like every API route except ``/healthz``, ``openapi.json`` needs a (viewer) bearer token: the
document reveals nothing secret, but spec section 1 makes ``/healthz`` the only anonymous
endpoint and a uniform rule is easier to operate than an exception. Paths in the document
carry the full ``/api/v1`` prefix so that ``/healthz`` and ``/metrics`` (served at the root)
fit in one ``paths`` object; ``servers`` is the base URL the client used.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import acs
from acs.cwmp.values import VALUE_PATTERN
from acs.store.models import OPERATIONAL_STATUSES, TASK_STATES
from api import (  # noqa: F401  (declare their forms and views)
    audit,
    backups,
    campaigns,
    device_children,
    device_tasks,
    firmware,
    operations,
    resources,
    tags,
    validation,
    webhooks,
)
from api.base import (
    ROUTES,
    Api,
    ApiRequest,
    Result,
    route,
)
from api.docs import PARAMETERS, PATH_PARAMETERS, RESPONSES, Doc
from api.fields import form_schemas
from api.schema import (
    LATITUDE,
    LONGITUDE,
    SETTING_PATH_PATTERN,
    TEXT_SCHEMAS,
    Schema,
    boolean,
    date_time,
    integer,
    obj,
    page,
    read_only,
    ref,
    string,
)
from api.views import view_schemas

OPERATIONAL_STATUS = string(enum=list(OPERATIONAL_STATUSES))
TAGS = {
    "type": "array",
    "items": string(),
    "description": "The device's tags, in the order given; edited with "
    "/inventory_device/{id}/tags/, /tags/ or the serial operation endpoint.",
}
TASK_STATE = string(enum=list(TASK_STATES))

# --- devices, flat view (spec section 3) ------------------------------------------------

_DEVICE_PROPERTIES: dict[str, Schema] = {
    "id": read_only(integer()),
    "uuid": read_only(string(format="uuid")),
    "name": string(minLength=1, maxLength=255),
    "customer_id": string(True),
    "is_active": read_only(
        boolean(description="True once the CPE completed a session and not decommissioned.")
    ),
    "status": read_only(string(enum=["Up", "Down"])),
    "status_change": read_only(date_time(description="Time of the last Up/Down transition.")),
    "type": integer(True, description="Device type id."),
    "type_short_name": read_only(string(True)),
    "software_version": read_only(string(True)),
    "hardware_version": read_only(string(True)),
    "manufacturer": read_only(string(True)),
    "product_class": read_only(string(True)),
    "unique_identifier": read_only(string(True, description="OUI-ProductClass-SerialNumber.")),
    "serial_number": string(
        minLength=1, maxLength=64, pattern=r"^[^/\s]+$", description="Unique, case-sensitive."
    ),
    "serial_number_alt": string(True, description="Also matched against the Inform serial."),
    "description": string(True),
    "organization_id": integer(),
    "firmware_image": integer(True, description="Target firmware image id."),
    "firmware_image_is_pending": boolean(
        description="True while the firmware upgrade is queued or in flight."
    ),
    "location": integer(True, description="Location id."),
    "location_name": string(
        True,
        description="On write: finds or creates a location of this name in the device's "
        "organization.",
    ),
    "location_short_name": read_only(string(True)),
    "latitude": LATITUDE,
    "longitude": LONGITUDE,
    "username": string(True, description="CWMP username the CPE uses towards the ACS."),
    "update_frequency": integer(
        minimum=30,
        maximum=86400,
        description=(
            "Periodic inform interval (s), set on the CPE as PeriodicInformInterval. Without a "
            "value of its own (omitted at creation, or on PUT) the device takes its type's, "
            "and follows it when the type's changes; else 300."
        ),
    ),
    "address": read_only(string(True, description="IP the CPE last connected from.")),
    "last_connection": read_only(date_time(True, description="Last CWMP session.")),
    "last_configuration": read_only(date_time(True)),
    "last_change": read_only(date_time(description="Last modification of this record.")),
    "created": read_only(date_time()),
    "debug": boolean(description="Keep SOAP transcripts of this device's sessions."),
    "pending_settings": read_only(
        string(
            True,
            description="Comma-separated pending items in queue order (spec section 6); with "
            "pending=true each item carries its state, e.g. "
            "'firmware_update:pending,reboot_scheduled:2024-01-16T02:00:00Z'.",
        )
    ),
    "tags": read_only(TAGS),
}
# Fields every list item carries (the seed's list example); the detail carries them all.
_DEVICE_LIST_REQUIRED = [
    "id", "uuid", "name", "customer_id", "is_active", "status", "status_change", "type",
    "type_short_name", "software_version", "hardware_version", "manufacturer", "serial_number",
    "description", "organization_id", "location_name", "location", "location_short_name",
    "latitude", "longitude", "address", "last_connection", "last_configuration", "created",
    "pending_settings", "tags",
]  # fmt: skip

# --- devices, nested view (spec section 4) ----------------------------------------------

_TYPE_REF = obj({"id": integer(), "name": string(), "model": string(True)}, ["id", "name", "model"])
_TYPE_REF_DETAIL = obj(
    {**_TYPE_REF["properties"], "manufacturer": string(True)},
    ["id", "name", "model", "manufacturer"],
)
_ORG_REF = obj({"id": integer(), "name": string()}, ["id", "name"])
_ORG_REF_DETAIL = obj({**_ORG_REF["properties"], "code": string(True)}, ["id", "name", "code"])

_NESTED_PROPERTIES: dict[str, Schema] = {
    "serial_number": _DEVICE_PROPERTIES["serial_number"],
    "name": string(minLength=1, maxLength=255),
    "type": {"anyOf": [_TYPE_REF, {"type": "null"}]},
    "organization": _ORG_REF,
    "status": boolean(description="True = Up."),
    "last_status_change": read_only(date_time()),
    "ip_address": string(True),
    "mac_address": read_only(string(True)),
    "location": string(True, description="Location name."),
    "description": string(True),
    "firmware_version": read_only(string(True, description="The CPE's software version.")),
    "pending_changes": read_only(boolean()),
    "pending_details": read_only(ref("PendingDetails")),
    "created_at": read_only(date_time()),
    "updated_at": read_only(date_time()),
    "tags": read_only(TAGS),
}
_NESTED_LIST_REQUIRED = [
    "serial_number", "name", "type", "organization", "status", "last_status_change",
    "ip_address", "location", "pending_changes", "created_at", "updated_at", "tags",
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

# --- operation endpoints (spec section 5) -----------------------------------------------

_HISTORY_ITEM = obj(
    {
        "timestamp": date_time(),
        "action": string(examples=["status_change"]),
        "from_status": string(True),
        "to_status": string(),
        "performed_by": string(True),
    },
    ["timestamp", "action", "from_status", "to_status", "performed_by"],
)

# --- the components ---------------------------------------------------------------------

SCHEMAS: dict[str, Schema] = {
    **TEXT_SCHEMAS,
    **form_schemas(),
    **device_tasks.TASK_SCHEMAS,
    **tags.TAG_SCHEMAS,
    "DeviceImportReport": obj(
        {
            "rows": integer(minimum=0, description="Data rows read."),
            "created": integer(minimum=0, description="Devices created (0 unless all were good)."),
            "dry_run": boolean(),
            "error_count": integer(minimum=0),
            "errors": {
                "type": "array",
                "maxItems": 1000,
                "items": obj(
                    {
                        "line": integer(minimum=2, description="Line of the file (1: the header)."),
                        "serial_number": string(),
                        "errors": obj({}, additional={"type": "array", "items": string()}),
                    },
                    "*",
                ),
                "description": "The bad lines (the first 1000).",
            },
        },
        "*",
    ),
    **view_schemas(),
    "Error": obj({"detail": string()}, ["detail"], description="Request-level error."),
    "FieldErrors": obj(
        {},
        additional={"type": "array", "items": string()},
        description="DRF-style field validation errors: field name -> messages.",
        minProperties=1,
    ),
    "ErrorBody": {"anyOf": [ref("Error"), ref("FieldErrors")]},
    "Device": obj(_DEVICE_PROPERTIES, list(_DEVICE_PROPERTIES), additional=False),
    "DeviceListItem": obj(_DEVICE_PROPERTIES, _DEVICE_LIST_REQUIRED, additional=False),
    "DevicePage": page("DeviceListItem"),
    "PendingDetails": obj(
        {
            "configuration_updates": integer(minimum=0),
            "firmware_update": boolean(),
            "last_pending_change": date_time(True),
        },
        ["configuration_updates", "firmware_update", "last_pending_change"],
    ),
    "DeviceNested": obj(_NESTED_PROPERTIES, _NESTED_LIST_REQUIRED, additional=False),
    "DeviceNestedDetail": obj(_NESTED_DETAIL_PROPERTIES, _NESTED_DETAIL_REQUIRED, additional=False),
    "DeviceNestedPage": page("DeviceNested"),
    "DeviceOperation": obj(
        {
            "id": integer(),
            "device_name": string(),
            "serial_number": string(),
            "device_type": string(True, description="Device type short name."),
            "operational_status": OPERATIONAL_STATUS,
            "location": string(True),
            "assigned_user": string(True),
            "organization": string(True, description="Organization name."),
            "configuration": obj(
                {"firmware_version": string(True, description="Reported by the CPE.")}
            ),
            "maintenance_notes": string(True),
            "next_maintenance": date_time(True),
            "operator_id": {"type": ["string", "integer", "null"]},
            "description": string(True),
            "last_updated": date_time(True),
            "updated_by": string(True),
            "operational_history": {"type": "array", "items": _HISTORY_ITEM},
        },
        "*",
    ),
    "DeviceSerialOperation": obj(
        {
            "id": integer(),
            "serial_number": string(),
            "name": string(),
            "status": OPERATIONAL_STATUS,
            "location": string(True),
            "assigned_user": string(True),
            "organization_unit": string(True),
            "device_type": string(True),
            "manufacturer": string(True),
            "model": string(True),
            "configuration": obj({}),
            "custom_fields": obj({}),
            "tags": TAGS,
            "created_at": date_time(),
            "updated_at": date_time(),
            "last_seen": date_time(True, description="Last CWMP contact."),
        },
        "*",
    ),
    "EffectiveSetting": obj(
        {
            "value": string(description="Desired value; credentials are redacted."),
            "type": string(examples=["xsd:unsignedInt"], description="xsd type it is sent with."),
            "source": string(
                enum=["device", "type"],
                description="The device's own setting, or its device type's default_settings.",
            ),
            "confirmed": boolean(description="The CPE has this value (nothing to push)."),
            "state": string(
                enum=["confirmed", "pending", "refused"],
                description="refused: the CPE refused exactly this value for good (see fault); "
                "it is not pushed again until the value changes.",
            ),
            "cpe_value": string(True, description="The CPE's last reported or accepted value."),
            "fault": obj(
                {"code": integer(True), "string": string(True)},
                ["code", "string"],
                type=["object", "null"],
            ),
            "updated": date_time(True, description="When the device's own setting last changed."),
        },
        "*",
    ),
    "DeviceSettings": obj(
        {
            "device": integer(),
            "data_model_root": string(True, examples=["Device."]),
            "device_type": integer(True),
            "last_configuration": date_time(True),
            "pending": integer(minimum=0, description="Settings the next push will send."),
            "settings": obj({}, additional=ref("EffectiveSetting")),
        },
        "*",
        description="Effective settings: the device type's default_settings overlaid by the "
        "device's own, keyed by TR-069 path.",
    ),
    "DeviceSettingsPatch": obj(
        {},
        additional={"type": ["string", "number", "boolean", "null"], "pattern": VALUE_PATTERN},
        propertyNames={"maxLength": 256, "pattern": SETTING_PATH_PATTERN},
        maxProperties=1024,
        description="TR-069 path -> value (the device's own setting; pending until the CPE "
        "confirms it) or null (stop managing the path; a type default applies again).",
        examples=[{"Device.ManagementServer.PeriodicInformInterval": "600"}],
    ),
    "Health": obj(
        {
            "status": string(enum=["ok", "degraded", "error"]),
            "version": string(),
            "commit": string(
                True, description="The commit this program was built from; null if unknown."
            ),
            "node": string(
                description="This ACS process among those sharing the database "
                "(host-pid-random, new at every start)."
            ),
            "storage": string(enum=["ok", "full"]),
            "storage_full": {"type": "array", "items": string(enum=["database", "files"])},
            "listeners": obj(
                {},
                additional=obj(
                    {"address": string(), "listening": boolean()}, ["address", "listening"]
                ),
            ),
            "devices": integer(minimum=0),
            "detail": string(),
        },
        ["status", "version", "commit", "node"],
    ),
}

_METADATA = obj({}, description="Body keys neither operation endpoint documents.")
# Shown once recorded, so not required.
SCHEMAS["DeviceOperation"]["properties"].update(
    {
        "status": string(True, description="Status of the last recorded operation (free text)."),
        "notes": string(True),
        "started_at": date_time(True),
        "completed_at": date_time(True),
        "metadata": _METADATA,
    }
)
SCHEMAS["DeviceSerialOperation"]["properties"]["metadata"] = _METADATA

# --- paths, from the route registry -----------------------------------------------------

_RULE_VARIABLE = re.compile(r"<(?:\w+:)?(\w+)>")


def _paths() -> dict[str, Schema]:
    """Every declared route (api.base.ROUTES) as a path item: the rule's variables become
    documented path parameters (api.docs.PATH_PARAMETERS), each method its operation."""
    paths: dict[str, Schema] = {}
    for info in ROUTES:
        variables = [PATH_PARAMETERS[v] for v in _RULE_VARIABLE.findall(info.rule)]
        template = _RULE_VARIABLE.sub(
            lambda m: "{" + PATH_PARAMETERS[m.group(1)]["name"] + "}", info.rule
        )
        item = paths.setdefault(template, {})
        if variables:
            item["parameters"] = variables
        for method, doc in info.docs.items():
            item[method.lower()] = doc.operation(info.role)
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
        "security": [{"bearerAuth": []}, {"sessionCookie": []}],
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
                "file",
                "campaign",
                "webhook",
                "auth",
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
                },
                "sessionCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "acs_session",
                    "description": "The web UI's session (POST /auth/login/); writes also "
                    "need its CSRF token in the X-CSRFToken header.",
                },
            },
            "schemas": copy.deepcopy(SCHEMAS),
            "parameters": copy.deepcopy(PARAMETERS),
            "responses": copy.deepcopy(RESPONSES),
        },
    }


@route(
    "/openapi.json",
    methods=("GET",),
    role="viewer",
    doc=Doc(
        "openapi",
        "This document",
        "meta",
        {"type": "object", "description": "An OpenAPI 3.1 document."},
    ),
)
def openapi_json(api: Api, req: ApiRequest) -> Result:
    """The OpenAPI document, with the base URL the client used as its server."""
    return 200, openapi_document(req.base_url())
