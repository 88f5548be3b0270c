"""The two operation endpoints (spec section 5): a device's operational record.

``PUT /inventory_device_operation/<id>/`` and
``PUT /inventory_device_serial_operation/<serial>/`` both edit the one operational record of a
device (``Store.get_operational_record`` / ``save_operational_record``), with partial bodies:
only the keys sent change. Validation happens before any write, and every problem of a
well-formed body is reported at once as DRF field errors with 422 (400 is only for a body that
is not a JSON object). A write that changes nothing writes nothing, so the same body twice
gives the same record and one history entry.

Layout of the record's ``data``: the documented keys of both endpoints at the top level
(``location``, ``assigned_user``, ``notes``, ``tags``...), ``configuration`` (metadata keys
only), ``custom_fields``, and ``metadata`` for the keys neither endpoint documents. The
``status`` of the id endpoint (the status of the recorded operation, free text) is stored as
``operation_status``; the serial endpoint's ``status`` is the operational status itself.

``configuration`` keys that are full TR-069 parameter names (``Device.`` or
``InternetGatewayDevice.`` prefix, no trailing ``.``) are desired CPE settings: they go to the
settings store (``Store.set_desired_settings``), and a change queues one (coalesced)
``configuration_update`` task and wakes the device. A ``null`` value removes a key (for a
TR-069 key: the ACS stops managing that parameter). Responses show the desired settings
inside ``configuration`` with credential values redacted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from acs.clock import iso
from acs.cwmp.paths import ACS_MANAGED_SUFFIXES, ROOTS, is_setting_name, known_root
from acs.cwmp.redact import REDACTED, is_secret_path
from acs.cwmp.values import type_problem
from acs.store.models import OPERATIONAL_STATUSES, Device, OperationalRecord
from api.base import Api, ApiError, ApiRequest, Result, route
from api.docs import WRITE, Doc
from api.fields import (
    MAX_NAME,
    Choice,
    DateTime,
    Email,
    Form,
    JsonObject,
    RawText,
    StringList,
    TagList,
    Text,
)

MAX_TEXT = 10_000

_NOTE = RawText(max_length=MAX_TEXT)
_WHEN = DateTime(dates=True)
_CONFIGURATION = JsonObject(
    description="Merged key by key. Keys that are full TR-069 parameter paths ('Device.' or "
    "'InternetGatewayDevice.' prefix) are desired CPE settings, applied with "
    "SetParameterValues in the next session; other keys are plain metadata."
)
# Both endpoints take partial bodies and keep other keys as free-form metadata. The id
# endpoint's `status` (of the recorded operation, free text) is stored as operation_status.
ID_FORM = Form(
    "DeviceOperation",
    {
        "operational_status": Choice(choices=OPERATIONAL_STATUSES),
        "status": RawText(
            max_length=MAX_TEXT,
            source="operation_status",
            description="Status of the operation recorded (free text).",
        ),
        "description": _NOTE,
        "notes": _NOTE,
        "maintenance_notes": _NOTE,
        "location": _NOTE,
        "assigned_user": Email(),
        "operator_id": RawText(max_length=MAX_NAME, integers=True),
        "started_at": _WHEN,
        "completed_at": _WHEN,
        "next_maintenance": _WHEN,
        "configuration": _CONFIGURATION,
    },
    keep_unknown=True,
    status=422,
    components={"DeviceOperationWrite": "update"},
    notes={
        "update": "All keys optional; other keys are kept as free-form metadata. Invalid "
        "values (status, e-mail, dates) -> 422."
    },
)
# The serial endpoint's `status` is the operational status itself; `name` the device's.
SERIAL_FORM = Form(
    "DeviceSerialOperation",
    {
        "name": Text(blank=False, nullable=False),
        "status": Choice(choices=OPERATIONAL_STATUSES, source="operational_status"),
        "location": _NOTE,
        "assigned_user": Email(),
        "organization_unit": _NOTE,
        "device_type": _NOTE,
        "manufacturer": _NOTE,
        "model": _NOTE,
        "configuration": _CONFIGURATION,
        "custom_fields": JsonObject(description="Merged key by key."),
        "tags": TagList(description="Replaced (the device's tags, as /tags/ edits them)."),
    },
    keep_unknown=True,
    status=422,
    components={"DeviceSerialOperationWrite": "update"},
    notes={"update": "Partial and idempotent. Invalid values -> 422."},
)


def is_setting_key(key: str) -> bool:
    """Spec section 5: a configuration key naming a TR-069 parameter (a desired setting)."""
    return key.startswith(ROOTS) and not key.endswith(".")


# --- validation ---------------------------------------------------------------------------


@dataclass
class _Draft:
    """The validated effect of one body, computed before anything is written."""

    data: dict[str, Any]
    operational_status: str
    device_fields: dict[str, Any] = field(default_factory=dict)
    set_settings: dict[str, str] = field(default_factory=dict)
    remove_settings: list[str] = field(default_factory=list)
    tags: list[str] | None = None  # None: the body leaves them alone
    errors: dict[str, list[str]] = field(default_factory=dict)

    def error(self, key: str, message: str) -> None:
        self.errors.setdefault(key, []).append(message)


def _apply(draft: _Draft, form: Form, body: dict[str, Any]) -> dict[str, Any]:
    """Validate ``body`` with ``form`` into ``draft`` (errors included): the operational
    status, the configuration and the record's plain keys (null removes one). Returns the
    values the caller applies itself (the keys of neither kind), and what the form does not
    know goes to ``metadata``."""
    values, errors = form.check(body, mode="update")
    draft.errors.update(errors)
    if "operational_status" in values:
        draft.operational_status = values.pop("operational_status")
    own: dict[str, Any] = {}
    for name, spec in form.fields.items():
        key = spec.source or name
        if key not in values:
            continue
        value = values.pop(key)
        if isinstance(spec, JsonObject | StringList | Text):
            own[name] = value
        elif value is None:
            draft.data.pop(key, None)
        else:
            draft.data[key] = iso(value) if isinstance(spec, DateTime) else value
    extra = {k: v for k, v in body.items() if k not in form.fields}
    if extra:
        _merge_object(draft, "metadata", extra)
    return own


def _merge_object(draft: _Draft, key: str, value: dict[str, Any]) -> None:
    """Merge a free-form object key by key into data[key]; null removes a key."""
    merged = dict(draft.data.get(key) or {})
    for k, v in value.items():
        if v is None:
            merged.pop(k, None)
        else:
            merged[k] = v
    if merged:
        draft.data[key] = merged
    else:
        draft.data.pop(key, None)


def setting_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value
    raise ValueError("a TR-069 parameter value must be a string, number or boolean")


def _configuration(api: Api, device: Device, draft: _Draft, value: dict[str, Any]) -> None:
    metadata: dict[str, Any] = {}
    root = known_root(device.data_model_root)
    for key, raw in value.items():
        if not is_setting_key(key):
            metadata[key] = raw
            continue
        if raw is None:
            draft.remove_settings.append(key)
            continue
        problem = setting_problem(api, device, root, key, raw)
        if problem is not None:
            draft.error("configuration", f"{key}: {problem}")
            continue
        draft.set_settings[key] = setting_value(raw)
    _merge_object(draft, "configuration", metadata)
    if len(draft.set_settings) > 1024:
        draft.error("configuration", "At most 1024 TR-069 parameters per request.")


def setting_problem(api: Api, device: Device, root: str | None, key: str, raw: Any) -> str | None:
    """Why `key: raw` cannot be a desired setting of `device`, or None when it can."""
    if not is_setting_name(key):
        return "not a valid TR-069 parameter name."
    if root is not None and not key.startswith(root):
        return f"this device's data model root is {root}"
    if key.endswith(ACS_MANAGED_SUFFIXES):
        return "managed by the ACS; use the device's fields instead."
    try:
        text = setting_value(raw)
    except ValueError as exc:
        return f"{exc}."
    cached = api.store.get_parameter(device.id, key)
    if cached is not None and cached.writable is False:
        return "the CPE reports this parameter as read-only."
    problem = type_problem(text, api.store.setting_type(device.id, key, text))
    return None if problem is None else f"value {problem}"


def _draft(api: Api, device: Device) -> _Draft:
    record = api.store.get_operational_record(device.id)
    # A shallow copy is enough: nested objects are replaced, never mutated in place.
    return _Draft(data=dict(record.data), operational_status=device.operational_status)


def _fail_on_errors(draft: _Draft) -> None:
    if draft.errors:
        raise ApiError(422, draft.errors)


def _configure(api: Api, device: Device, draft: _Draft, own: dict[str, Any]) -> None:
    if "configuration" in own:
        _configuration(api, device, draft, own["configuration"])


# --- writing ------------------------------------------------------------------------------


def _save(api: Api, req: ApiRequest, device: Device, draft: _Draft, endpoint: str) -> None:
    """Write the draft (if it changes anything) in one transaction, then queue and wake."""
    store = api.store
    actor = req.principal.name
    now = api.now()
    record = store.get_operational_record(device.id)
    # The device row's status is the one the CWMP side enforces: it is the "from" status.
    old_status = device.operational_status
    status_changed = draft.operational_status != old_status
    data_changed = sorted(
        k for k in set(record.data) | set(draft.data) if record.data.get(k) != draft.data.get(k)
    )
    device_changes = {k: v for k, v in draft.device_fields.items() if getattr(device, k, None) != v}
    current = {s.path: s.value for s in store.desired_settings(device.id)}
    settings = {p: v for p, v in draft.set_settings.items() if current.get(p) != v}
    removals = [p for p in draft.remove_settings if p in current]
    tags = (
        draft.tags
        if draft.tags is not None and draft.tags != store.device_tags(device.id)
        else None
    )
    changed = status_changed or data_changed or device_changes or settings or removals
    if not changed and tags is None:
        return
    history = list(record.history)
    if status_changed:
        history.append(
            {
                "timestamp": iso(now),
                "action": "status_change",
                "from_status": old_status,
                "to_status": draft.operational_status,
                "performed_by": actor,
            }
        )
    queued = False
    with store.transaction():
        if device_changes:
            store.update_device(device.id, now=now, actor=actor, **device_changes)
        if removals:
            store.remove_desired_settings(device.id, removals, now=now, actor=actor)
        if tags is not None:
            store.set_tags(device.id, tags, now=now, actor=actor)
        if settings and store.set_desired_settings(device.id, settings, now=now, actor=actor):
            api.tasks.queue(device.id, "configuration_update", {}, actor=actor, wake=False, now=now)
            queued = True
        store.save_operational_record(
            device.id,
            operational_status=draft.operational_status,
            data=draft.data,
            history=history,
            updated_by=actor,
            now=now,
        )
        fields = data_changed if tags is None else sorted([*data_changed, "tags"])
        detail: dict[str, Any] = {"endpoint": endpoint, "fields": fields}
        if status_changed:
            detail["from_status"] = old_status
            detail["to_status"] = draft.operational_status
        store.add_history(device.id, "operational_record_updated", detail, now=now, actor=actor)
    if queued:
        api.tasks.wake(device.id)


# --- representation -----------------------------------------------------------------------


def _configuration_view(api: Api, device: Device, record: OperationalRecord) -> dict[str, Any]:
    """The stored configuration: metadata keys plus the desired settings (secrets redacted)."""
    view = dict(record.data.get("configuration") or {})
    for setting in api.store.desired_settings(device.id):
        view[setting.path] = REDACTED if is_secret_path(setting.path) else setting.value
    return view


def _device_type_name(api: Api, device: Device) -> str | None:
    if device.type_id is None:
        return None
    dtype = api.store.get_device_type(device.type_id)
    return None if dtype is None else (dtype.short_name or dtype.name)


def _location_name(api: Api, device: Device) -> str | None:
    if device.location_id is None:
        return None
    location = api.store.get_location(device.location_id)
    return None if location is None else location.name


def operation_json(api: Api, device: Device) -> dict[str, Any]:
    """The id endpoint's response (spec section 5, plus the other stored body keys)."""
    record = api.store.get_operational_record(device.id)
    data = record.data
    organization = api.store.get_organization(device.organization_id)
    configuration = _configuration_view(api, device, record)
    firmware = device.software_version or configuration.get("firmware_version")
    return {
        "id": device.id,
        "device_name": device.name,
        "serial_number": device.serial_number,
        "device_type": _device_type_name(api, device),
        "operational_status": device.operational_status,
        "location": data.get("location") or _location_name(api, device),
        "assigned_user": data.get("assigned_user"),
        "organization": None if organization is None else organization.name,
        "configuration": {**configuration, "firmware_version": firmware},
        "maintenance_notes": data.get("maintenance_notes"),
        "next_maintenance": data.get("next_maintenance"),
        "operator_id": data.get("operator_id"),
        "description": data.get("description"),
        "status": data.get("operation_status"),
        "notes": data.get("notes"),
        "started_at": data.get("started_at"),
        "completed_at": data.get("completed_at"),
        "metadata": data.get("metadata") or {},
        "last_updated": iso(record.last_updated),
        "updated_by": record.updated_by,
        "operational_history": record.history,
    }


def serial_operation_json(api: Api, device: Device) -> dict[str, Any]:
    """The serial endpoint's response (spec section 5)."""
    record = api.store.get_operational_record(device.id)
    data = record.data
    updated = max(device.last_change, record.last_updated or 0.0)
    return {
        "id": device.id,
        "serial_number": device.serial_number,
        "name": device.name,
        "status": device.operational_status,
        "location": data.get("location") or _location_name(api, device),
        "assigned_user": data.get("assigned_user"),
        "organization_unit": data.get("organization_unit"),
        "device_type": data.get("device_type") or _device_type_name(api, device),
        "manufacturer": data.get("manufacturer") or device.manufacturer,
        "model": data.get("model") or device.product_class,
        "configuration": _configuration_view(api, device, record),
        "custom_fields": data.get("custom_fields") or {},
        "tags": api.store.device_tags(device.id),
        "metadata": data.get("metadata") or {},
        "created_at": iso(device.created),
        "updated_at": iso(updated),
        "last_seen": iso(device.last_contact),
    }


# --- routes -------------------------------------------------------------------------------


def _put_doc(op_id: str, addressed: str, schema: str) -> Doc:
    summary = f"Update the device's operational record{addressed}"
    return Doc(
        op_id,
        summary,
        "inventory_device_operation",
        schema,
        body=f"{schema}Write",
        errors=(*WRITE, "Unprocessable"),
    )


@route(
    "/inventory_device_operation/<int:device_id>/",
    methods=("PUT",),
    role="operator",
    doc=_put_doc("put_device_operation", "", "DeviceOperation"),
)
def put_device_operation(api: Api, req: ApiRequest, device_id: int) -> Result:
    device = api.device(req, device_id)
    draft = _draft(api, device)
    _configure(api, device, draft, _apply(draft, ID_FORM, req.json_object()))
    _fail_on_errors(draft)
    _save(api, req, device, draft, "inventory_device_operation")
    return 200, operation_json(api, _fresh(api, device))


@route(
    "/inventory_device_serial_operation/<string:serial>/",
    methods=("PUT",),
    role="operator",
    doc=_put_doc("put_device_serial_operation", " by serial number", "DeviceSerialOperation"),
)
def put_device_serial_operation(api: Api, req: ApiRequest, serial: str) -> Result:
    device = api.device_by_serial(req, serial)
    draft = _draft(api, device)
    own = _apply(draft, SERIAL_FORM, req.json_object())
    if "name" in own:
        draft.device_fields["name"] = own["name"]
    _configure(api, device, draft, own)
    if "custom_fields" in own:
        _merge_object(draft, "custom_fields", own["custom_fields"])
    if "tags" in own:
        draft.tags = own["tags"]
    _fail_on_errors(draft)
    _save(api, req, device, draft, "inventory_device_serial_operation")
    return 200, serial_operation_json(api, _fresh(api, device))


def _fresh(api: Api, device: Device) -> Device:
    current = api.store.get_device(device.id)
    return device if current is None else current
