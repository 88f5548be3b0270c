"""Devices as CSV: ``POST /inventory_device/import/`` (and ``acs import FILE.csv``) creates
the devices of a CSV file, ``GET /inventory_device/?format=csv`` exports what the list
filters select.

An import is checked as a whole first: every row as a device creation of the flat view
(:func:`api.validation.device_write`), serials unique in the file and in the inventory.
Any bad row and nothing is written: the report names every bad line (up to
``MAX_REPORTED``); else every device is created in one transaction. ``dry_run`` gives the
report only. Columns (the header row names them, in any order): ``serial_number``
(required), ``name`` (default: the serial), ``type`` (a device type's id or unique name),
``organization`` (an id or a name; default: the token's only organization, else the
appliance's default one), ``location`` (a location name, found or created in the device's
organization), ``description``, ``customer_id``, ``serial_number_alt``, ``latitude``,
``longitude``, ``username``, ``password``, ``update_frequency``, ``debug`` and ``tags`` (a
JSON list). An empty cell is a column left out. What an export adds (``id``, ``status``,
the CPE-reported fields...) is read-only and ignored, so an export imports back.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from acs.clock import iso
from acs.store import Conflict, Device, DeviceFilter, Store
from acs.store.checks import MAX_TAGS, check_tag
from api.base import Api, ApiError, ApiRequest, Principal, Result, bad_request, route
from api.docs import Doc
from api.schema import JSON, ref, string
from api.validation import DeviceWrite, device_write

log = Logger(namespace="api.device_csv")

MAX_IMPORT_BYTES = 32 * 1024 * 1024
MAX_IMPORT_ROWS = 100_000
MAX_REPORTED = 1000  # bad lines named in a report
EXPORT_PAGE = 500

IMPORT_COLUMNS = (
    "serial_number", "name", "type", "organization", "location", "description", "customer_id",
    "serial_number_alt", "latitude", "longitude", "username", "password", "update_frequency",
    "debug", "tags",
)  # fmt: skip
# What an export has besides (never the password); an import ignores these.
READ_ONLY_COLUMNS = (
    "id", "status", "software_version", "hardware_version", "manufacturer", "product_class",
    "last_connection", "created",
)  # fmt: skip
EXPORT_COLUMNS = ("id", *(c for c in IMPORT_COLUMNS if c != "password"), *READ_ONLY_COLUMNS[1:])


@dataclass
class _Row:
    line: int
    write: DeviceWrite  # the row, validated as a creation of the flat view
    tags: list[str] = field(default_factory=list)


@dataclass
class Report:
    rows: int = 0
    created: int = 0
    dry_run: bool = False
    errors: list[dict[str, Any]] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "created": self.created,
            "dry_run": self.dry_run,
            "errors": self.errors[:MAX_REPORTED],
            "error_count": len(self.errors),
        }


class ImportRefused(Exception):
    """The file as a whole is no import (not CSV, no header, unknown columns, too big)."""


def _reader(text: str) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    header = reader.fieldnames
    if not header:
        raise ImportRefused("The file has no header row.")
    names = [h.strip() for h in header]
    unknown = [n for n in names if n not in IMPORT_COLUMNS and n not in READ_ONLY_COLUMNS]
    if unknown:
        raise ImportRefused(f"Unknown columns: {', '.join(repr(u[:40]) for u in unknown[:10])}.")
    if len(set(names)) != len(names) or "serial_number" not in names:
        raise ImportRefused("The header names each column once, serial_number among them.")
    reader.fieldnames = names
    try:
        for number, row in enumerate(reader, start=2):
            if number - 1 > MAX_IMPORT_ROWS:
                raise ImportRefused(f"At most {MAX_IMPORT_ROWS} rows per import.")
            if None in row:
                raise ImportRefused(f"Line {number}: more cells than columns.")
            yield number, row
    except csv.Error as exc:
        raise ImportRefused(f"Not CSV: {exc}") from None


def _reference(value: str, by_name: Any, what: str) -> tuple[int | None, str | None]:
    """An id, or the id a name stands for: (id, None) or (None, why not)."""
    if value.isascii() and value.isdigit():
        return int(value), None
    found = by_name(value)
    if isinstance(found, list):
        if len(found) != 1:
            return None, f"{len(found)} {what}s are named {value!r}: give its id."
        found = found[0]
    if found is None:
        return None, f"No {what} named {value!r}."
    return int(found.id), None


def _row_body(
    store: Store, cells: dict[str, str], default_org: int | None
) -> tuple[dict[str, Any], list[str], dict[str, list[str]]]:
    """(a flat-view creation body, the row's tags, the problems found converting it)."""
    problems: dict[str, list[str]] = {}
    given = {k: v for k, v in cells.items() if k in IMPORT_COLUMNS and v != ""}
    body: dict[str, Any] = {}
    for key, value in given.items():
        if key in ("type", "organization", "location", "tags", "update_frequency", "debug"):
            continue
        body[key] = value
    body.setdefault("name", given.get("serial_number", ""))
    references = (
        ("type", "type", store.device_types_named, "device type"),
        ("organization", "organization_id", store.organization_named, "organization"),
    )
    for column, key, by_name, what in references:
        if column in given:
            row_id, why = _reference(given[column], by_name, what)
            if why is not None:
                problems[column] = [why]
            else:
                body[key] = row_id
    if "organization" not in given and default_org is not None:
        body["organization_id"] = default_org
    if "location" in given:
        body["location_name"] = given["location"]
    if "update_frequency" in given:
        body["update_frequency"] = given["update_frequency"]  # decimal text is accepted
    if "debug" in given:
        body["debug"] = given["debug"]
    tags: list[str] = []
    if "tags" in given:
        try:
            parsed = json.loads(given["tags"])
            if not isinstance(parsed, list) or len(parsed) > MAX_TAGS:
                raise ValueError("not a list")
            tags = list(dict.fromkeys(check_tag(t) for t in parsed))
        except ValueError:
            problems["tags"] = [f'A JSON list of at most {MAX_TAGS} tags, e.g. ["a", "b"].']
    return body, tags, problems


def check_import(
    store: Store, principal: Principal, text: str, default_org: int
) -> tuple[list[_Row], Report]:
    """Every row checked; raises ImportRefused for a file that is no import at all."""
    report = Report()
    rows: list[_Row] = []
    seen: dict[str, int] = {}
    scope = principal.scope
    fallback = scope[0] if scope is not None and len(scope) == 1 else default_org
    for line, cells in _reader(text):
        report.rows += 1
        body, tags, problems = _row_body(store, cells, fallback)
        serial = str(body.get("serial_number", ""))
        write: DeviceWrite | None = None
        try:
            write = device_write("flat", store, principal, dict(body), mode="create")
        except ApiError as exc:
            for key, messages in exc.body.items():
                listed = messages if isinstance(messages, list) else [str(messages)]
                problems.setdefault(key, []).extend(listed)
        for key in ("serial_number", "serial_number_alt"):
            value = body.get(key)
            if not value:
                continue
            if value in seen:
                problems.setdefault(key, []).append(f"Also on line {seen[value]}.")
            elif store.find_device_by_serial(value) is not None:
                problems.setdefault(key, []).append("A device with this serial already exists.")
            seen.setdefault(value, line)
        if problems or write is None:
            report.errors.append({"line": line, "serial_number": serial[:64], "errors": problems})
        else:
            rows.append(_Row(line, write, tags))
    return rows, report


def import_devices(
    store: Store,
    principal: Principal,
    text: str,
    *,
    default_org: int,
    dry_run: bool,
    now: float,
) -> Report:
    """Check, then (unless ``dry_run`` or a row is bad) create every device at once."""
    rows, report = check_import(store, principal, text, default_org)
    report.dry_run = dry_run
    if dry_run or report.errors or not rows:
        return report
    actor = principal.name
    with store.transaction():
        for row in rows:
            try:
                device = row.write.save(store, None, now=now, actor=actor)
            except Conflict:
                # Registered between the check and now (a CPE's first Inform): all or nothing.
                raise ApiError(
                    409, {"detail": f"Line {row.line}: a device with this serial appeared."}
                ) from None
            if row.tags:
                store.set_tags(device.id, row.tags, now=now, actor=actor)
    report.created = len(rows)
    return report


# --- export -------------------------------------------------------------------------------


def export_row(device: Device, names: dict[str, dict[int, str]], tags: list[str]) -> list[Any]:
    values = {
        "id": device.id,
        "serial_number": device.serial_number,
        "name": device.name,
        "type": "" if device.type_id is None else device.type_id,
        "organization": names["organization"].get(device.organization_id, device.organization_id),
        "location": names["location"].get(device.location_id or 0, ""),
        "description": device.description or "",
        "customer_id": device.customer_id or "",
        "serial_number_alt": device.serial_number_alt or "",
        "latitude": device.latitude or "",
        "longitude": device.longitude or "",
        "username": device.username or "",
        "update_frequency": device.update_frequency,
        "debug": "true" if device.debug else "false",
        "tags": json.dumps(tags, ensure_ascii=False) if tags else "",
        "status": device.status,
        "software_version": device.software_version or "",
        "hardware_version": device.hardware_version or "",
        "manufacturer": device.manufacturer or "",
        "product_class": device.product_class or "",
        "last_connection": iso(device.last_connection) or "",
        "created": iso(device.created),
    }
    return [values[c] for c in EXPORT_COLUMNS]


class CsvExport(Resource):
    """The devices a filter selects as CSV, written page by page as the client reads (a
    push producer the transport pauses when its buffer is full, like the file server's), so
    an export of any size holds about one page in memory."""

    isLeaf = True

    def __init__(self, store: Store, filters: DeviceFilter) -> None:
        super().__init__()
        self.store = store
        self.filters = filters

    def render_GET(self, request: Request) -> int:
        request.setHeader(b"content-type", b"text/csv; charset=utf-8")
        request.setHeader(b"content-disposition", b'attachment; filename="devices.csv"')
        request.setHeader(b"cache-control", b"no-store")
        _CsvProducer(request, self.store, self.filters).start()
        return NOT_DONE_YET


class _CsvProducer:
    """Each page is read in a unit of work (on PostgreSQL off the reactor thread), one at a
    time; the next is asked for once the last is written, unless the transport paused us."""

    def __init__(self, request: Request, store: Store, filters: DeviceFilter) -> None:
        self.request: Request | None = request
        self.store = store
        self.filters = filters
        self.after = 0
        self.header = True
        self.paused = False
        self._reading = False  # a page's unit is under way
        self._looping = False  # in _produce's loop (SQLite's pages come back inside it)

    def start(self) -> None:
        assert self.request is not None
        self.request.registerProducer(self, True)
        self._produce()

    def _produce(self) -> None:
        if self._looping:
            return  # the loop below goes on
        self._looping = True
        try:
            while self.request is not None and not self.paused and not self._reading:
                self._reading = True
                self.store.read(self._page).addCallbacks(self._write, self._unread)
        finally:
            self._looping = False

    def _write(self, page: tuple[bytes, bool]) -> None:
        self._reading = False
        data, more = page
        if self.request is None:
            return  # the client went away meanwhile
        self.request.write(data)  # may pause us, or (connection lost) stop us
        if not more and self.request is not None:
            request, self.request = self.request, None
            request.unregisterProducer()
            request.finish()
        self._produce()

    def _unread(self, failure: Failure) -> None:
        # The answer has begun: cut it short rather than end it as if complete.
        log.failure("CSV export: cannot read a page", failure)
        request, self.request = self.request, None
        if request is not None:
            request.unregisterProducer()
            request.loseConnection()

    def _page(self) -> tuple[bytes, bool]:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        if self.header:
            writer.writerow(EXPORT_COLUMNS)
            self.header = False
        store = self.store
        devices = store.devices_after(self.filters, self.after, limit=EXPORT_PAGE)
        organizations = store.organizations_by_id(d.organization_id for d in devices)
        locations = store.locations_by_id(d.location_id for d in devices if d.location_id)
        names = {
            "organization": {i: o.name for i, o in organizations.items()},
            "location": {i: loc.name for i, loc in locations.items()},
        }
        tags = store.tags_by_device(d.id for d in devices)
        for device in devices:
            writer.writerow(export_row(device, names, tags.get(device.id, [])))
        if devices:
            self.after = devices[-1].id
        return out.getvalue().encode("utf-8"), len(devices) == EXPORT_PAGE

    def resumeProducing(self) -> None:
        self.paused = False
        self._produce()

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        self.request = None


# --- routes -------------------------------------------------------------------------------


def _csv_text(req: ApiRequest) -> str:
    content = req.raw.content
    if content is not None:
        content.seek(0)
    data = content.read(MAX_IMPORT_BYTES + 1) if content is not None else b""
    if len(data) > MAX_IMPORT_BYTES:
        raise ApiError(413, {"detail": f"An import is at most {MAX_IMPORT_BYTES} bytes."})
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise bad_request("The file is not UTF-8 text.") from None


@route(
    "/inventory_device/import/",
    methods=("POST",),
    role="admin",
    doc=Doc(
        "import_devices",
        "Create the devices of a CSV file, all or none",
        "inventory_device",
        "DeviceImportReport",
        params=("dry_run",),
        request_body={
            "required": True,
            "content": {"text/csv": {"schema": string(description="A header row, then devices.")}},
        },
        errors=("Conflict", "TooLarge"),
        responses={
            "400": {
                "description": "Bad rows (the report, nothing written), or no CSV import at all.",
                "content": {
                    JSON: {"schema": {"anyOf": [ref("DeviceImportReport"), ref("ErrorBody")]}}
                },
            }
        },
        description="Columns: " + ", ".join(IMPORT_COLUMNS) + " (and, ignored, an export's "
        "read-only ones). Every row is checked first: any bad one -> 400 with the report and "
        "nothing written; dry_run=true -> the report only.",
    ),
)
def import_route(api: Api, req: ApiRequest) -> Result:
    dry_run = req.query_bool("dry_run")
    text = _csv_text(req)
    try:
        report = import_devices(
            api.store,
            req.principal,
            text,
            default_org=api.appliance.default_organization.id,
            dry_run=dry_run,
            now=api.now(),
        )
    except ImportRefused as exc:
        raise bad_request(str(exc)) from None
    return (400 if report.errors else 200), report.json()
