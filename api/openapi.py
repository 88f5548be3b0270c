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
from typing import Any

import acs
from api import resources  # noqa: F401  (declares its forms)
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
from api.fields import form_schemas
from api.operations import EMAIL_PATTERN
from api.schema import (
    BOOL_TEXT_PATTERN,
    BOOLISH,
    FREQUENCY_TEXT_PATTERN,
    JSON,
    LATITUDE_PATTERN,
    LONGITUDE_PATTERN,
    SETTING_PATH_PATTERN,
    TEXT_SCHEMAS,
    Schema,
    boolean,
    coordinate,
    date_time,
    integer,
    name_text,
    nullable,
    obj,
    page,
    pk,
    plain_text,
    read_only,
    ref,
    string,
    typed,
)

LATITUDE = string(True, description="Decimal degrees as a string, -90..90.", examples=["40.7128"])
LONGITUDE = string(
    True, description="Decimal degrees as a string, -180..180.", examples=["-74.006"]
)
OPERATIONAL_STATUS = string(
    enum=["provisioning", "active", "maintenance", "decommissioned", "inactive"]
)
TASK_STATE = string(enum=["pending", "in_progress", "done", "failed", "cancelled"])
_TASK_STATES = f"({'|'.join(TASK_STATE['enum'])})"

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
_SERIAL = ref("SerialNumber")
# What api.validation accepts, key by key (the read schema above says what is returned).
_DEVICE_WRITE_PROPERTIES: dict[str, Schema] = {
    "name": name_text(),
    "customer_id": plain_text(),
    "type": pk("Device type id."),
    "serial_number": _SERIAL,
    "serial_number_alt": nullable(ref("SerialNumberOrEmpty")),
    "description": nullable(ref("MultilineText")),
    "organization_id": pk(
        "Organization id; required unless the token is scoped to exactly one organization.",
        null=False,
    ),
    "firmware_image": pk("Target firmware image id.", objects=False),
    "firmware_image_is_pending": BOOLISH,
    "location": pk("Location id, in the device's organization or shared."),
    "location_name": plain_text(
        description="Finds or creates a location of this name in the device's organization."
    ),
    "latitude": coordinate(LATITUDE_PATTERN, 90, 32, "40.7128"),
    "longitude": coordinate(LONGITUDE_PATTERN, 180, 32, "-74.006"),
    "username": plain_text(description="CWMP username the CPE uses towards the ACS."),
    "password": nullable(
        string(
            maxLength=255,
            writeOnly=True,
            description="CWMP password; stored for Digest, never returned.",
        )
    ),
    "update_frequency": {
        "anyOf": [
            integer(minimum=30, maximum=86400),
            string(pattern=FREQUENCY_TEXT_PATTERN),
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
    "schedule_inform": obj(
        {"delay_seconds": integer(minimum=1, maximum=86400)}, ["delay_seconds"], additional=False
    ),
    "schedule_at": date_time(True, description="Delay the queued operations to this time."),
}

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
    "name": name_text(),
    "type": pk("Device type id."),
    "organization": pk(
        "Organization id; required unless the token is scoped to exactly one organization.",
        null=False,
    ),
    "status": {**BOOLISH, "description": "Mark the device Up/Down (e.g. down for maintenance)."},
    "ip_address": {
        "anyOf": [
            string(format="ipv4"),
            string(format="ipv6"),
            {"type": "string", "enum": [""]},
            {"type": "null"},
        ]
    },
    "location": {
        "anyOf": [
            plain_text(null=False),
            obj({"name": plain_text()}, ["name"]),
            {"type": "null"},
        ],
        "description": "Location name (found or created in the device's organization).",
    },
    "description": _DEVICE_WRITE_PROPERTIES["description"],
}

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
# Empty or null = none.
ASSIGNED_USER = string(
    True, maxLength=254, pattern=f"^({EMAIL_PATTERN})?$", description="An e-mail address."
)
_CONFIGURATION = obj(
    {},
    description="Merged key by key. Keys that are full TR-069 parameter paths ('Device.' or "
    "'InternetGatewayDevice.' prefix) are desired CPE settings, applied with "
    "SetParameterValues in the next session; other keys are plain metadata.",
)

# --- supporting resources, write side (api/resources.py) -------------------------------

# A firmware image's device type, as a form field or query parameter (api/firmware.py).
_DEVICE_TYPE_TEXT = string(
    pattern="^([1-9][0-9]{0,17}|null)?$", description="Device type id; empty or 'null' = none."
)

# --- the components ---------------------------------------------------------------------

SCHEMAS: dict[str, Schema] = {
    **TEXT_SCHEMAS,
    **form_schemas(),
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
    "DeviceCreate": obj(
        _DEVICE_WRITE_PROPERTIES,
        ["name", "serial_number", "organization_id"],
        additional=False,
        description="Unknown fields are refused with 400. organization_id may be left out "
        "with a token scoped to exactly one organization.",
    ),
    "DeviceReplace": obj(
        _DEVICE_WRITE_PROPERTIES,
        ["name", "serial_number"],
        additional=False,
        description="Full replacement: omitted writable fields reset to their defaults, except "
        "password, which is kept unless given.",
    ),
    "DevicePatch": obj(
        {**_DEVICE_WRITE_PROPERTIES, **_OPERATION_PROPERTIES},
        additional=False,
        description="Partial update plus device operations: each flag set to true queues a task "
        "and sends a connection request; false is accepted and does nothing. "
        "firmware_image + firmware_image_is_pending=true queues a firmware Download.",
    ),
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
    "DeviceNestedCreate": obj(
        _NESTED_WRITE_PROPERTIES,
        ["serial_number", "name", "organization"],
        additional=False,
        description="type and organization are ids; organization may be left out with a "
        "token scoped to exactly one organization.",
    ),
    "DeviceNestedReplace": obj(
        _NESTED_WRITE_PROPERTIES,
        ["name"],
        additional=False,
        description="A serial_number different from the path renames the device (409 if taken).",
    ),
    "DeviceNestedPatch": obj(_NESTED_WRITE_PROPERTIES, additional=False),
    "DeviceOperationWrite": obj(
        {
            "operational_status": OPERATIONAL_STATUS,
            "status": string(
                True, maxLength=10_000, description="Status of the operation recorded (free text)."
            ),
            "description": string(True, maxLength=10_000),
            "notes": string(True, maxLength=10_000),
            "maintenance_notes": string(True, maxLength=10_000),
            "location": string(True, maxLength=10_000),
            "assigned_user": ASSIGNED_USER,
            "operator_id": {"anyOf": [integer(), string(maxLength=255), {"type": "null"}]},
            "started_at": date_time(True),
            "completed_at": date_time(True),
            "next_maintenance": date_time(True),
            "configuration": _CONFIGURATION,
        },
        description="All keys optional; other keys are kept as free-form metadata. Invalid "
        "values (status, e-mail, dates) -> 422.",
    ),
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
    "DeviceSerialOperationWrite": obj(
        {
            "name": name_text(),
            "status": OPERATIONAL_STATUS,
            "location": string(True, maxLength=10_000),
            "assigned_user": ASSIGNED_USER,
            "organization_unit": string(True, maxLength=10_000),
            "device_type": string(True, maxLength=10_000),
            "manufacturer": string(True, maxLength=10_000),
            "model": string(True, maxLength=10_000),
            "configuration": _CONFIGURATION,
            "custom_fields": obj({}, description="Merged key by key."),
            "tags": {
                "type": "array",
                "items": string(),
                "maxItems": 100,
                "description": "Replaced.",
            },
        },
        description="Partial and idempotent. Invalid values -> 422.",
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
            "tags": {"type": "array", "items": string()},
            "created_at": date_time(),
            "updated_at": date_time(),
            "last_seen": date_time(True, description="Last CWMP contact."),
        },
        "*",
    ),
    # --- supporting resources (spec section 7)
    "Organization": obj(
        {"id": read_only(integer()), "name": string(minLength=1), "code": string(True)},
        ["id", "name", "code"],
    ),
    "OrganizationPage": page("Organization"),
    "DeviceType": obj(
        {
            "id": read_only(integer()),
            "name": string(minLength=1),
            "short_name": string(True),
            "model": string(True),
            "manufacturer": string(True),
            "product_class": string(
                True,
                description="Devices informing with this manufacturer/product class get this type.",
            ),
            "default_settings": obj(
                {}, description="TR-069 path -> value, applied to every device of the type."
            ),
            "update_frequency": integer(
                True,
                minimum=30,
                maximum=86400,
                description="Periodic inform interval of the type's devices that set none.",
            ),
        },
        "*",
    ),
    "DeviceTypePage": page("DeviceType"),
    "Location": obj(
        {
            "id": read_only(integer()),
            "name": string(minLength=1),
            "short_name": string(True),
            "latitude": LATITUDE,
            "longitude": LONGITUDE,
            "parent": integer(True, description="Parent location id."),
            "organization_id": integer(True),
        },
        ["id", "name", "short_name", "latitude", "longitude", "parent", "organization_id"],
    ),
    "LocationPage": page("Location"),
    # --- firmware images (api/firmware.py)
    "FirmwareImage": obj(
        {
            "id": read_only(integer()),
            "name": string(minLength=1, maxLength=255),
            "version": string(
                minLength=1,
                maxLength=255,
                description="Checked against the CPE's software version after an upgrade.",
            ),
            "size": read_only(integer(minimum=1, description="Bytes.")),
            "sha256": read_only(
                string(pattern="^[0-9a-f]{64}$", description="Also the file's ETag.")
            ),
            "device_type": integer(True, description="Device type id the image is meant for."),
            "filename": read_only(string(description="File name given to CPEs (TargetFileName).")),
            "created": read_only(date_time()),
        },
        "*",
    ),
    "FirmwareImagePage": page("FirmwareImage"),
    "FirmwareImageUpload": obj(
        {
            "file": string(
                minLength=1, contentMediaType="application/octet-stream", description="The image."
            ),
            "name": name_text(),
            "version": name_text(),
            "device_type": _DEVICE_TYPE_TEXT,
        },
        ["file", "name", "version"],
        additional=False,
    ),
    "Parameter": obj(
        {
            "path": string(),
            "value": string(True),
            "type": string(True, examples=["xsd:string"]),
            "writable": typed("boolean", null=True),
            "updated": date_time(),
        },
        ["path", "value", "type", "writable", "updated"],
    ),
    "ParameterPage": page("Parameter"),
    "Task": obj(
        {
            "id": integer(),
            "kind": string(examples=["reboot"]),
            "state": TASK_STATE,
            "created": date_time(),
            "scheduled_at": date_time(True),
            "started": date_time(True),
            "finished": date_time(True),
            "fault_code": integer(True),
            "fault_string": string(True),
            "attempts": integer(minimum=0),
            "actor": string(description="Who queued it: a token name, or 'acs'."),
        },
        "*",
    ),
    "TaskPage": page("Task"),
    "Backup": obj(
        {
            "id": integer(),
            "created": date_time(),
            "size": integer(minimum=0, description="Bytes."),
            "sha256": string(pattern="^[0-9a-f]{64}$"),
            "task": integer(True, description="The backup task that took it (null once deleted)."),
        },
        "*",
        description="A vendor configuration file the CPE uploaded (Upload RPC).",
    ),
    "BackupPage": page("Backup"),
    "TransferRequest": obj(
        {"schedule_at": date_time(True, description="Run at the first session after this time.")},
        additional=False,
        description="Optional body; an empty body queues the task to run now.",
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
        additional={"type": ["string", "number", "boolean", "null"]},
        propertyNames={"maxLength": 256, "pattern": SETTING_PATH_PATTERN},
        maxProperties=1024,
        description="TR-069 path -> value (the device's own setting; pending until the CPE "
        "confirms it) or null (stop managing the path; a type default applies again).",
        examples=[{"Device.ManagementServer.PeriodicInformInterval": "600"}],
    ),
    "HistoryEntry": obj(
        {
            "id": integer(),
            "time": date_time(),
            "actor": string(description="Token name, 'acs' or 'cpe'."),
            "action": string(examples=["updated", "status", "task_queued"]),
            "detail": obj({}),
        },
        ["time", "actor", "action"],
        description="One audit entry: API change, operation, status transition, CWMP fault.",
    ),
    "HistoryPage": page("HistoryEntry"),
    "SessionTranscript": obj(
        {"id": integer(), "started": date_time(), "transcript": string()},
        ["id", "started", "transcript"],
        description="A CWMP session's SOAP transcript (kept while the device's debug is on).",
    ),
    "SessionTranscriptPage": page("SessionTranscript"),
    "Health": obj(
        {
            "status": string(enum=["ok", "degraded", "error"]),
            "version": string(),
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
        ["status", "version"],
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

# --- parameters and responses -----------------------------------------------------------

_BOOL_QUERY = string(pattern=BOOL_TEXT_PATTERN, examples=["true"])


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
        integer(minimum=0, maximum=SQL_INT_MAX, default=DEFAULT_LIMIT),
        f"Page size (default {DEFAULT_LIMIT}, also for 0; larger values are capped at "
        f"{MAX_LIMIT}). Non-integer or negative -> 400.",
        empty=True,
    ),
    "offset": _query(
        "offset",
        integer(minimum=0, maximum=SQL_INT_MAX, default=0),
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
        "type",
        integer(minimum=-SQL_INT_MAX - 1, maximum=SQL_INT_MAX),
        "Device type id.",
        empty=True,
    ),
    "status": _query(
        "status",
        string(enum=["0", "false", "False", "1", "true", "True"]),
        "0/false/False = Down, 1/true/True = Up; anything else -> 400.",
        empty=True,
    ),
    "last_status_change_from": _query(
        "last_status_change_from",
        {
            "anyOf": [string(format="date-time"), string(format="date")],
            "examples": ["2000-01-01T00:01:00+00:00"],
        },
        "status_change >= this. Accepts 2000-01-01, 2000-01-01 00:01:00, "
        "2000-01-01T00:01:00, with or without offset (naive = UTC); invalid -> 400.",
        empty=True,
    ),
    "organization": _query(
        "organization",
        integer(minimum=-SQL_INT_MAX - 1, maximum=SQL_INT_MAX),
        "Organization id; outside the token's scope -> 403.",
        empty=True,
    ),
    "location_organization": _query(
        "organization",
        integer(minimum=1, maximum=SQL_INT_MAX),
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
        string(
            pattern=f"^ *{_TASK_STATES} *(, *{_TASK_STATES} *)*$",
            examples=["pending,in_progress"],
        ),
        "Comma-separated task states to list, e.g. 'pending,failed'.",
        empty=True,
    ),
    "path_prefix": _query(
        "path",
        string(examples=["Device.DeviceInfo."]),
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
    return {"description": description, "content": {JSON: {"schema": ref("ErrorBody")}}}


RESPONSES: dict[str, Schema] = {
    "BadRequest": _error_response(
        "Malformed JSON, body not an object, wrong type, unknown field or invalid filter."
    ),
    "Unauthorized": {
        "description": "Missing, unknown or revoked token.",
        "headers": {"WWW-Authenticate": {"schema": string(const="Bearer")}},
        "content": {JSON: {"schema": ref("Error")}},
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
        "headers": {"Retry-After": {"schema": integer(minimum=1)}},
        "content": {JSON: {"schema": ref("Error")}},
    },
}

# --- operations -------------------------------------------------------------------------

# Ids beyond SQLite's integers name no row: the route does not match them (404).
_ID_INT = integer(minimum=1, maximum=SQL_INT_MAX)
ID = _path_param("id", _ID_INT, "Device id.")
SERIAL = _path_param(
    "serial_number",
    string(pattern=r"^[^/\s]+$"),
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
        "get": _op(f"get_{tag}", f"One {name}", tag, "viewer", (200, ref(schema)), errors=_DETAIL),
        "put": _op(
            f"replace_{tag}",
            f"Replace a {name}",
            tag,
            "admin",
            (200, ref(schema)),
            body=ref(write),
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
            (200, ref(schema)),
            body=ref(f"{schema}Patch"),
            errors=(*_WRITE, "Conflict"),
        )
    return {
        f"{base}/": {
            "get": _op(
                f"list_{tag}",
                f"List {name}s",
                tag,
                "viewer",
                (200, ref(f"{schema}Page")),
                params=[*(_param_ref(n) for n in list_params), *_PAGE],
                errors=_READ,
            ),
            "post": _op(
                f"create_{tag}",
                f"Create a {name}",
                tag,
                "admin",
                (201, ref(schema)),
                body=ref(write),
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
            ("name", "Image name; required with a raw body.", name_text()),
            ("version", "Image version; required with a raw body.", name_text()),
            ("device_type", "Device type id; empty or 'null' = none.", _DEVICE_TYPE_TEXT),
        )
    ]
    upload = _op(
        "create_firmware_image",
        "Upload a firmware image",
        tag,
        "admin",
        (201, ref("FirmwareImage")),
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
            "multipart/form-data": {"schema": ref("FirmwareImageUpload")},
            "application/octet-stream": {
                "schema": string(minLength=1, contentMediaType="application/octet-stream")
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
                (200, ref("FirmwareImagePage")),
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
                (200, ref("FirmwareImage")),
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
                (200, ref("DevicePage")),
                params=_DEVICE_FILTERS,
                errors=_READ,
            ),
            "post": _op(
                "create_device",
                "Create a device",
                "inventory_device",
                "admin",
                (201, ref("Device")),
                body=ref("DeviceCreate"),
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
                (200, ref("Device")),
                params=[_param_ref("pending"), _param_ref("update_status")],
                errors=_DETAIL,
            ),
            "put": _op(
                "replace_device",
                "Replace a device",
                "inventory_device",
                "operator",
                (200, ref("Device")),
                body=ref("DeviceReplace"),
                errors=(*_WRITE, "Conflict"),
            ),
            "patch": _op(
                "patch_device",
                "Update a device and/or run device operations",
                "inventory_device",
                "operator",
                (200, ref("Device")),
                body=ref("DevicePatch"),
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
                (200, ref("ParameterPage")),
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
                (200, ref("TaskPage")),
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
                (200, ref("Task")),
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
                (200, ref("BackupPage")),
                params=_PAGE,
                errors=_DETAIL,
            ),
            "post": {
                **_op(
                    "create_device_backup",
                    "Take a configuration backup",
                    "device_resources",
                    "operator",
                    (202, ref("Task")),
                    body=ref("TransferRequest"),
                    errors=_WRITE,
                    description="Queues a backup task: the CPE is asked (Upload RPC, FileType "
                    "'1 Vendor Configuration File') to send its configuration to a signed URL "
                    "of the file server; the task completes on the CPE's TransferComplete once "
                    "the file is stored, and the backup then appears in this list.",
                ),
                "requestBody": {
                    "required": False,
                    "content": {JSON: {"schema": ref("TransferRequest")}},
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
                    (202, ref("Task")),
                    body=ref("TransferRequest"),
                    errors=_WRITE,
                    description="Queues a restore task: Download RPC with FileType "
                    "'3 Vendor Configuration File' and a signed URL of this backup; the task "
                    "completes on the CPE's TransferComplete (fault code 0), and fails with the "
                    "CPE's fault otherwise.",
                ),
                "requestBody": {
                    "required": False,
                    "content": {JSON: {"schema": ref("TransferRequest")}},
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
                (200, ref("HistoryPage")),
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
                (200, ref("DeviceSettings")),
                errors=_DETAIL,
            ),
            "patch": _op(
                "patch_device_settings",
                "Set or remove the device's own desired settings",
                "device_resources",
                "operator",
                (200, ref("DeviceSettings")),
                body=ref("DeviceSettingsPatch"),
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
                (200, ref("SessionTranscriptPage")),
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
                (200, ref("DeviceNestedPage")),
                params=_DEVICE_FILTERS,
                errors=_READ,
            ),
            "post": _op(
                "create_device_nested",
                "Create a device (nested view)",
                "inventory_device_serial",
                "admin",
                (201, ref("DeviceNestedDetail")),
                body=ref("DeviceNestedCreate"),
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
                (200, ref("DeviceNestedDetail")),
                params=[_param_ref("update_status")],
                errors=_DETAIL,
            ),
            "put": _op(
                "replace_device_nested",
                "Replace a device by serial number",
                "inventory_device_serial",
                "operator",
                (200, ref("DeviceNestedDetail")),
                body=ref("DeviceNestedReplace"),
                errors=(*_WRITE, "Conflict"),
            ),
            "patch": _op(
                "patch_device_nested",
                "Update a device by serial number",
                "inventory_device_serial",
                "operator",
                (200, ref("DeviceNestedDetail")),
                body=ref("DeviceNestedPatch"),
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
                (200, ref("DeviceOperation")),
                body=ref("DeviceOperationWrite"),
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
                (200, ref("DeviceSerialOperation")),
                body=ref("DeviceSerialOperationWrite"),
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
                        "content": {"text/plain": {"schema": string()}},
                    },
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                    "403": {"$ref": "#/components/responses/Forbidden"},
                    "503": {
                        "description": "The store is unavailable.",
                        "content": {JSON: {"schema": ref("Error")}},
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
                        "content": {JSON: {"schema": ref("Health")}},
                    },
                    "503": {
                        "description": "Degraded: storage is full and writes are refused "
                        "(status degraded, storage_full names the database and/or the files "
                        "directory; clears once a write succeeds again), or the store is "
                        "unavailable (status error).",
                        "content": {JSON: {"schema": ref("Health")}},
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
