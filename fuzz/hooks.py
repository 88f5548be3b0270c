"""schemathesis hooks of ``make fuzz`` (loaded through ``SCHEMATHESIS_HOOKS=fuzz.hooks``).

A schema can say that ``organization_id`` is a positive integer, not that the organization
exists, nor that a device's location must be in the device's organization. A schema-valid
body naming a random id is rightly refused with 400 (DRF's ``Invalid pk``), which
``positive_data_acceptance`` would report as a valid request rejected. So, before a
*positive* case is sent, the references in its JSON body are pointed at rows that exist (read
from the fuzzed ACS's database, ``FUZZ_DATABASE``, and within the token's organizations,
``FUZZ_SCOPE``); the generated value picks which one, so shrinking still works. The other
rules no schema states are repaired the same way: a location's kept parent must suit its new
organization, a pending firmware upgrade needs an image, an upload's name and version go
in the query for a raw body and in the form for a multipart one (firmware images and
files), a task's parameters are named once each with values of their types, and the
file, image or task a task names exists, with its time windows in order; a device import is a
good CSV file, checked only (dry_run); a webhook's URL is on loopback. Negative cases are sent as
generated. schemathesis revalidates a case a hook edited, so a repaired body that stopped
being schema-valid is not judged as positive.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from typing import Any

import schemathesis
from schemathesis import Case
from schemathesis.hooks import HookContext

from acs.cwmp.values import type_problem
from acs.store import is_postgresql
from acs.store.postgres import translate
from acs.tasks.kinds import TRANSFER_KINDS
from api.base import parse_bool

Body = dict[str, Any]


def _rows(sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of the fuzzed ACS's database, opened read-only (the ACS owns it)."""
    if is_postgresql(os.environ["FUZZ_DATABASE"]):
        return _pg_rows(sql, *args)
    uri = f"file:{os.environ['FUZZ_DATABASE']}?mode=ro"
    connection = sqlite3.connect(uri, uri=True, timeout=5)
    try:
        return list(connection.execute(sql, args))
    finally:
        connection.close()


def _pg_rows(sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """The same SQLite statement on the PostgreSQL database, as the store runs it."""
    import psycopg

    text, order = translate(sql)
    params = list(args) if order is None else [args[i] for i in order]
    with psycopg.connect(
        os.environ["FUZZ_DATABASE"], autocommit=True, cursor_factory=psycopg.ClientCursor
    ) as conn:
        return [tuple(row) for row in conn.execute(text, params or None)]


def _ids(sql: str, *args: Any) -> list[int]:
    return [int(row[0]) for row in _rows(sql, *args) if row[0] is not None]


def _scope() -> set[int] | None:
    text = os.environ.get("FUZZ_SCOPE", "")
    return {int(part) for part in text.split(",")} if text else None


def _pick(value: Any, choices: list[int]) -> int | None:
    """An existing id chosen by the generated value (None when there is none to choose)."""
    if not choices:
        return None
    index = value if type(value) is int else len(str(value))
    return choices[index % len(choices)]


def _organizations() -> list[int]:
    ids = _ids("SELECT id FROM organizations ORDER BY id")
    scope = _scope()
    return [i for i in ids if scope is None or i in scope]


def _repoint(body: Body, key: str, choices: Callable[[], list[int]]) -> None:
    if body.get(key) is not None:
        picked = _pick(body[key], choices())
        if picked is not None:
            body[key] = picked


def _device_org(case: Case, body: Body, key: str) -> int | None:
    """The organization a device write ends in: the body's, else the device's current one."""
    if body.get(key) is not None:
        return int(body[key])
    device = (case.path_parameters or {}).get("id")
    if device is None:
        return None
    found = _ids("SELECT organization_id FROM devices WHERE id = ?", device)
    return found[0] if found else None


def _flat_device(case: Case, body: Body) -> None:
    _repoint(body, "organization_id", _organizations)
    _repoint(body, "type", lambda: _ids("SELECT id FROM device_types ORDER BY id"))
    _repoint(body, "firmware_image", lambda: _ids("SELECT id FROM firmware_images ORDER BY id"))
    named = body.get("location_name")
    if body.get("location") is not None and (named is None or not str(named).strip()):
        # A blank location_name is none: the location id counts then.
        org = _device_org(case, body, "organization_id")
        body["location"] = _pick(
            body["location"],
            _ids("SELECT id FROM locations WHERE organization_id IS ? ORDER BY id", org),
        )
    if parse_bool(body.get("firmware_image_is_pending")) and body.get("firmware_image") is None:
        # Pending needs an image: the body's, or (when the body names none) the device's.
        images = _ids("SELECT id FROM firmware_images ORDER BY id")
        if "firmware_image" in body or not _has_image(case):
            body["firmware_image"] = images[0] if images else None


def _has_image(case: Case) -> bool:
    device = (case.path_parameters or {}).get("id")
    found = _ids("SELECT firmware_image_id FROM devices WHERE id = ?", device)
    return bool(found and found[0])


def _nested_device(case: Case, body: Body) -> None:
    _repoint(body, "organization", _organizations)
    _repoint(body, "type", lambda: _ids("SELECT id FROM device_types ORDER BY id"))


def _location(case: Case, body: Body) -> None:
    _repoint(body, "organization_id", _organizations)
    location = (case.path_parameters or {}).get("id")
    org = body.get("organization_id")
    if "organization_id" not in body and location is not None:
        found = _ids("SELECT organization_id FROM locations WHERE id = ?", location)
        org = found[0] if found else None
    if "parent" not in body and location is not None:
        # The parent the location keeps must suit the organization it ends in.
        kept = _ids("SELECT parent_id FROM locations WHERE id = ?", location)
        ok = _ids(
            "SELECT id FROM locations WHERE organization_id IS NULL OR organization_id IS ?", org
        )
        if kept and kept[0] not in ok:
            body["parent"] = None
    if body.get("parent") is None:
        return
    # Shared or in the same organization, and neither the location itself nor below it.
    parents: dict[int, int | None] = dict(_rows("SELECT id, parent_id FROM locations"))
    candidates = [
        i
        for i in _ids(
            "SELECT id FROM locations WHERE organization_id IS NULL OR organization_id IS ? "
            "ORDER BY id",
            org,
        )
        if location is None or not _below(i, int(location), parents)
    ]
    body["parent"] = _pick(body["parent"], candidates)


def _below(node: int, ancestor: int, parents: dict[int, int | None]) -> bool:
    """``node`` is ``ancestor`` or one of its descendants."""
    seen: set[int] = set()
    current: int | None = node
    while current is not None and current not in seen:
        if current == ancestor:
            return True
        seen.add(current)
        current = parents.get(current)
    return False


def _firmware_upload(case: Case, body: Body) -> None:
    """A multipart upload: no query fields (they are for raw bodies), and an existing device
    type (or none) in the form."""
    case.query = {}
    if body.get("device_type") and body["device_type"] != "null":
        picked = _pick(body["device_type"], _ids("SELECT id FROM device_types ORDER BY id"))
        body["device_type"] = "" if picked is None else str(picked)


def _task_request(case: Case, body: Body) -> None:
    """A task: its values to set name each parameter once, with a type its value suits
    (the rules no schema states); and the answer waits at most a second, since a
    fuzzed device never runs the task and the run's requests time out after 30 s."""
    query = case.query if case.query is not None else {}
    if query.get("timeout") not in (None, ""):  # "" is no timeout (allowEmptyValue)
        query["timeout"] = min(int(query["timeout"]), 1)
    case.query = query
    _task_references(case, body)
    kinds = ("set_parameter_values", "add_object")
    if body.get("kind") not in kinds or not isinstance(body.get("parameters"), list):
        return
    seen: set[str] = set()
    kept = []
    for item in body["parameters"]:
        name, value, xsd = item.get("name"), item.get("value"), item.get("type")
        if name in seen:
            continue
        seen.add(name)
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if isinstance(xsd, str) and type_problem(text, xsd) is not None:
            item = {k: v for k, v in item.items() if k != "type"}
        kept.append(item)
    body["parameters"] = kept


def _task_references(case: Case, body: Body) -> None:
    """A download names a stored file or image that exists; a cancel a transfer task of
    the device still under way (fuzz/seed.py queues one on each device)."""
    kind = body.get("kind")
    if kind in ("download", "schedule_download"):
        _repoint(body, "file", lambda: _ids("SELECT id FROM files WHERE device_id IS NULL"))
        _repoint(body, "firmware_image", lambda: _ids("SELECT id FROM firmware_images"))
    windows = body.get("time_windows")
    if kind == "schedule_download" and isinstance(windows, list):
        # In time order, each ending after it starts, not overlapping (no schema says so).
        kept: list[Body] = []
        for window in sorted(windows, key=lambda w: w.get("window_start", 0)):
            window["window_end"] = max(window.get("window_end", 0), window.get("window_start", 0))
            if not kept or window["window_start"] >= kept[-1]["window_end"]:
                kept.append(window)
        body["time_windows"] = kept
    if kind == "cancel_transfer":
        device = (case.path_parameters or {}).get("id")
        marks = ", ".join("?" for _ in TRANSFER_KINDS)
        _repoint(
            body,
            "task",
            lambda: _ids(
                f"SELECT id FROM tasks WHERE device_id = ? AND kind IN ({marks})"
                " AND state IN ('pending', 'in_progress') ORDER BY id",
                device,
                *TRANSFER_KINDS,
            ),
        )


def _campaign(case: Case, body: Body) -> None:
    """A campaign's task holds what a task request does (see ``_task_request``)."""
    if isinstance(body.get("task"), dict):
        _task_request(case, body["task"])


def _file_upload(case: Case, body: Body) -> None:
    """A multipart file: no query fields (they are for raw bodies), and no OUI written as
    "null" (a form field is text: leaving it out is how a form says none)."""
    case.query = {}
    if body.get("oui") in (None, "null"):
        body.pop("oui", None)


def _webhook(case: Case, body: Body) -> None:
    """A webhook the ACS will POST to: loopback (port 9, where nothing listens) only."""
    if "url" in body:
        body["url"] = "http://127.0.0.1:9/fuzz"


IMPORT = "/api/v1/inventory_device/import/"


def _device_import(case: Case, body: Body) -> None:
    """No schema says what a CSV import holds: a schema-valid one is a good file, checked
    only (a device written would make the same file fail the next time)."""
    orgs = _organizations()
    organization = orgs[0] if orgs else ""
    case.body = f"serial_number,name,organization\nFUZZ-IMPORT-1,fuzz,{organization}\n"
    query = case.query if case.query is not None else {}
    query["dry_run"] = "true"
    case.query = query


_REPAIRS: dict[str, Callable[[Case, Body], None]] = {
    "/api/v1/inventory_device/": _flat_device,
    "/api/v1/inventory_device/{id}/": _flat_device,
    "/api/v1/inventory_device_serial/": _nested_device,
    "/api/v1/inventory_device_serial/{serial_number}/": _nested_device,
    "/api/v1/location/": _location,
    "/api/v1/location/{id}/": _location,
    "/api/v1/firmware_image/": _firmware_upload,
    "/api/v1/file/": _file_upload,
    "/api/v1/inventory_device/{id}/tasks/": _task_request,
    IMPORT: _device_import,  # whatever the body: see before_call
    "/api/v1/webhook/": _webhook,
    "/api/v1/campaign/": _campaign,
}


@schemathesis.hook
def before_call(context: HookContext, case: Case, kwargs: dict[str, Any]) -> None:
    meta = case.meta
    repair = _REPAIRS.get(case.operation.path)
    if repair is None or meta is None or not meta.generation.mode.is_positive:
        return
    if case.operation.path == IMPORT:
        _device_import(case, {})
    elif isinstance(case.body, dict):
        repair(case, case.body)
    elif case.operation.path == "/api/v1/firmware_image/" and case.body is not None:
        # A raw-body upload needs ?name=&version= (a multipart one sends them as fields).
        query = case.query if case.query is not None else {}
        for key in ("name", "version"):
            query.setdefault(key, "fuzz")
        if query.get("device_type") not in (None, "", "null"):
            picked = _pick(query["device_type"], _ids("SELECT id FROM device_types ORDER BY id"))
            query["device_type"] = "" if picked is None else str(picked)
        case.query = query
    elif case.operation.path == "/api/v1/file/" and case.body is not None:
        query = case.query if case.query is not None else {}
        query.setdefault("name", "fuzz")
        query.setdefault("file_type", "2 Web Content")
        case.query = query
