"""SQLite columns <-> the dataclasses of `acs.store.models`, in one place.

SQLite keeps booleans as 0/1 and JSON as text; these functions turn a `sqlite3.Row` (or any
mapping with the column names) into the frozen rows of `acs.store.models`, and `dumps` is the
one way a JSON column is written. Columns the dataclass does not know (e.g. the generated
`liveness_deadline`) are ignored.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from acs.store.models import (
    ApiToken,
    Backup,
    Campaign,
    Delivery,
    Device,
    DeviceType,
    FirmwareImage,
    HistoryEntry,
    Location,
    OperationalRecord,
    Organization,
    Parameter,
    SessionTranscript,
    StoredFile,
    Task,
    User,
    Webhook,
)

Row = sqlite3.Row

DEVICE_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Device))
_DEVICE_BOOLS = frozenset({"debug", "firmware_image_is_pending", "provisioned"})
# SQLite may hand back a REAL holding a whole number as int (notably through RETURNING);
# times are floats in the domain, so they are cast here.
_DEVICE_TIMES = ("status_change", "last_contact", "last_connection", "last_configuration")
_DEVICE_TIMES_REQUIRED = ("created", "last_change")
_new_device = object.__new__


def dumps(value: Any) -> str:
    """JSON for a JSON column; compact and key-sorted so equal values give equal text."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _opt_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def device(row: Row | Mapping[str, Any]) -> Device:
    # Hot path (every Inform, every API list row): a sqlite3.Row looks columns up by name
    # with a case-insensitive scan, so it is turned into a dict once; and the frozen
    # dataclass's generated __init__ (one object.__setattr__ per field, 38 fields) is
    # bypassed by filling the instance dict directly: same fields, values and equality.
    src = dict(zip(row.keys(), row, strict=True)) if type(row) is sqlite3.Row else row
    values = {c: src[c] for c in DEVICE_COLUMNS}
    for c in _DEVICE_BOOLS:
        values[c] = bool(values[c])
    for c in _DEVICE_TIMES:
        v = values[c]
        if v is not None:
            values[c] = float(v)
    for c in _DEVICE_TIMES_REQUIRED:
        values[c] = float(values[c])
    obj = _new_device(Device)
    obj.__dict__.update(values)
    return obj


def organization(row: Row) -> Organization:
    return Organization(id=row["id"], name=row["name"], code=row["code"])


def task(row: Row) -> Task:
    return Task(
        id=row["id"],
        device_id=row["device_id"],
        kind=row["kind"],
        args=json.loads(row["args"]),
        state=row["state"],
        created=float(row["created"]),
        scheduled_at=_opt_float(row["scheduled_at"]),
        started=_opt_float(row["started"]),
        finished=_opt_float(row["finished"]),
        fault_code=row["fault_code"],
        fault_string=row["fault_string"],
        attempts=row["attempts"],
        next_attempt_at=_opt_float(row["next_attempt_at"]),
        result=_loads(row["result"]),
        actor=row["actor"],
        priority=row["priority"],
        campaign_id=row["campaign_id"],
    )


def parameter(row: Row) -> Parameter:
    return Parameter(
        path=row["path"],
        value=row["value"],
        type=row["type"],
        writable=_opt_bool(row["writable"]),
        updated=float(row["updated"]),
    )


def history(row: Row) -> HistoryEntry:
    return HistoryEntry(
        id=row["id"],
        device_id=row["device_id"],
        time=float(row["time"]),
        actor=row["actor"],
        action=row["action"],
        detail=json.loads(row["detail"]),
    )


def webhook(row: Row) -> Webhook:
    return Webhook(
        id=row["id"],
        url=row["url"],
        secret=row["secret"],
        event_types=tuple(json.loads(row["event_types"])),
        cursor=int(row["cursor"]),
        created=float(row["created"]),
    )


def campaign(row: Row) -> Campaign:
    scope = json.loads(row["organization_ids"]) if row["organization_ids"] else None
    return Campaign(
        id=row["id"],
        name=row["name"],
        filter=json.loads(row["filter"]),
        organization_ids=None if scope is None else tuple(scope),
        kind=row["kind"],
        args=json.loads(row["args"]),
        windows=tuple(json.loads(row["windows"])),
        rate=float(row["rate"]),
        max_in_flight=int(row["max_in_flight"]),
        stop_rule=json.loads(row["stop_rule"]),
        state=row["state"],
        hold=bool(row["hold"]),
        reason=row["reason"],
        actor=row["actor"],
        created=float(row["created"]),
        started=_opt_float(row["started"]),
        finished=_opt_float(row["finished"]),
    )


def delivery(row: Row) -> Delivery:
    return Delivery(
        id=row["id"],
        webhook_id=row["webhook_id"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        payload=row["payload"],
        state=row["state"],
        attempts=row["attempts"],
        next_attempt_at=float(row["next_attempt_at"]),
        last_status=row["last_status"],
        last_error=row["last_error"],
        created=float(row["created"]),
        delivered=_opt_float(row["delivered"]),
    )


def token(row: Row) -> ApiToken:
    return ApiToken(
        id=row["id"],
        name=row["name"],
        role=row["role"],
        organization_ids=tuple(json.loads(row["organization_ids"])),
        created=float(row["created"]),
        revoked=bool(row["revoked"]),
    )


def user(row: Row) -> User:
    return User(
        id=row["id"],
        name=row["name"],
        role=row["role"],
        organization_ids=tuple(json.loads(row["organization_ids"])),
        created=float(row["created"]),
        disabled=bool(row["disabled"]),
    )


def device_type(row: Row) -> DeviceType:
    return DeviceType(
        id=row["id"],
        name=row["name"],
        short_name=row["short_name"],
        model=row["model"],
        manufacturer=row["manufacturer"],
        product_class=row["product_class"],
        default_settings=json.loads(row["default_settings"]),
        update_frequency=row["update_frequency"],
        connection_request_order=_order(row["connection_request_order"]),
    )


def _order(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(json.loads(text))


def location(row: Row) -> Location:
    return Location(
        id=row["id"],
        name=row["name"],
        short_name=row["short_name"],
        latitude=row["latitude"],
        longitude=row["longitude"],
        parent_id=row["parent_id"],
        organization_id=row["organization_id"],
    )


def backup(row: Row) -> Backup:
    return Backup(
        id=row["id"],
        device_id=row["device_id"],
        task_id=row["task_id"],
        filename=row["filename"],
        size=row["size"],
        sha256=row["sha256"],
        created=float(row["created"]),
    )


def firmware_image(row: Row) -> FirmwareImage:
    return FirmwareImage(
        id=row["id"],
        name=row["name"],
        version=row["version"],
        size=row["size"],
        sha256=row["sha256"],
        device_type_id=row["device_type_id"],
        filename=row["filename"],
        created=float(row["created"]),
    )


def stored_file(row: Row) -> StoredFile:
    return StoredFile(
        id=row["id"],
        name=row["name"],
        file_type=row["file_type"],
        oui=row["oui"],
        product_class=row["product_class"],
        version=row["version"],
        size=row["size"],
        sha256=row["sha256"],
        filename=row["filename"],
        device_id=row["device_id"],
        task_id=row["task_id"],
        created=float(row["created"]),
    )


def operational_record(row: Row) -> OperationalRecord:
    return OperationalRecord(
        device_id=row["device_id"],
        operational_status=row["operational_status"],
        data=json.loads(row["data"]),
        history=json.loads(row["history"]),
        updated_by=row["updated_by"],
        last_updated=_opt_float(row["last_updated"]),
    )


def session_transcript(row: Row) -> SessionTranscript:
    return SessionTranscript(
        id=row["id"],
        device_id=row["device_id"],
        started=float(row["started"]),
        transcript=row["transcript"],
    )
