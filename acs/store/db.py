"""The Store: every read and write of the appliance's SQLite file goes through here.

One `Store` wraps one `sqlite3` connection in autocommit mode (WAL, foreign keys on) and is
used synchronously from the reactor thread; each method is a short SQLite operation. Methods
that need the current time take `now` explicitly so tests drive time; the store never reads
the clock. Every mutating method is atomic on its own, and `with store.transaction():` groups
several calls into one unit (a CWMP session's writes, for example). Never await or yield to
the reactor inside `transaction()`: other callbacks would run inside the open transaction.

The hot paths (`record_inform`, `find_device_by_serial`, `next_task`, `devices_due_down`) are a
couple of indexed statements each: they run thousands of times a second on large fleets.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import sqlite3
import threading
import types
import typing
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from acs.store import codec
from acs.store.errors import Conflict, NotFound, StoreError
from acs.store.health import DATABASE, StorageHealth, is_storage_full
from acs.store.migrations import migrate
from acs.store.models import (
    DEFAULT_UPDATE_FREQUENCY,
    DOWN,
    FRONT_PRIORITY,
    IN_PROGRESS,
    NORMAL_PRIORITY,
    OPERATIONAL_STATUSES,
    PENDING,
    ROLES,
    TASK_STATES,
    UP,
    ApiToken,
    Backup,
    DesiredSetting,
    Device,
    DeviceFilter,
    DeviceType,
    FirmwareImage,
    HistoryEntry,
    InformRecord,
    Location,
    OperationalRecord,
    Organization,
    Parameter,
    SessionTranscript,
    Task,
)

BOOTSTRAP = "0 BOOTSTRAP"
BUSY_TIMEOUT_MS = 5000
# Bytes the WAL is cut back to when a checkpoint lets SQLite reset it: one big transaction
# (a retention batch, a bulk seed) must not leave a WAL of its size on disk for good.
JOURNAL_SIZE_LIMIT = 32 * 1024 * 1024
# Bytes the full-storage probe writes (and deletes in the same transaction): a few pages,
# so "not full" means room for a session's writes, not for one more row in a half-empty page.
PROBE_BYTES = 16 * 1024

T = TypeVar("T")

# Never written into history details: the values are credentials.
_SECRET_FIELDS = frozenset({"password", "connection_request_password"})
# Columns the store manages itself; callers cannot set them through create/update.
_MANAGED_FIELDS = frozenset({"id", "uuid", "created", "last_change", "status_change"})
_CREATE_FIELDS = frozenset(codec.DEVICE_COLUMNS) - _MANAGED_FIELDS - {"status"}
_UPDATE_FIELDS = frozenset(codec.DEVICE_COLUMNS) - _MANAGED_FIELDS
# Columns referencing another table, checked up front for a clear error message.
_DEVICE_REFERENCES = {
    "organization_id": "organizations",
    "type_id": "device_types",
    "location_id": "locations",
    "firmware_image_id": "firmware_images",
}
_DEVICE_HINTS = typing.get_type_hints(Device)


def _allowed_types(hint: Any) -> tuple[tuple[type, ...], bool]:
    """(accepted python types, nullable) for a Device field annotation."""
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    nullable = type(None) in args
    accepted = tuple(a for a in args if a is not type(None))
    return accepted, nullable


def _check_device_value(column: str, value: Any) -> Any:
    """Validate one device column value; returns it normalised. Raises ValueError."""
    accepted, nullable = _allowed_types(_DEVICE_HINTS[column])
    if column == "serial_number_alt" and value == "":
        value = None  # "no alternative serial"; '' would collide between devices
    if value is None:
        if column == "update_frequency":
            return None  # the device type's (or the default): see _frequency_fields
        if not nullable:
            raise ValueError(f"{column} must not be null")
        return None
    if bool in accepted:
        if isinstance(value, bool) or (type(value) is int and value in (0, 1)):
            return bool(value)
        raise ValueError(f"{column} must be a boolean, not {value!r}")
    if int in accepted and type(value) is int:
        ok = True
    elif float in accepted and isinstance(value, int | float) and not isinstance(value, bool):
        value, ok = float(value), True
    else:
        ok = str in accepted and isinstance(value, str)
    if not ok:
        names = "/".join(t.__name__ for t in accepted)
        raise ValueError(f"{column} must be {names}, not {value!r}")
    if column in ("serial_number", "name") and not value:
        raise ValueError(f"{column} must not be empty")
    if column == "update_frequency" and value <= 0:
        raise ValueError("update_frequency must be > 0")
    if column == "operational_status" and value not in OPERATIONAL_STATUSES:
        raise ValueError(f"operational_status must be one of {', '.join(OPERATIONAL_STATUSES)}")
    if column == "status":
        return _normalise_status(value)
    return value


def _normalise_status(status: Any) -> str:
    if isinstance(status, str) and status.capitalize() in (UP, DOWN):
        return status.capitalize()
    raise ValueError(f"status must be {UP!r} or {DOWN!r}, not {status!r}")


def _time(name: str, value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"{name} must be a number of epoch seconds, not {value!r}")


def _opt_time(name: str, value: Any) -> float | None:
    return None if value is None else _time(name, value)


def _json_text(name: str, value: Any) -> str:
    try:
        return codec.dumps(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} is not JSON-serialisable: {exc}") from exc


def _prefix_bounds(prefix: str) -> tuple[str, str | None]:
    """[low, high) covering every string starting with `prefix` under BINARY collation.

    UTF-8 byte order equals code point order, so bumping the last code point gives the
    exclusive upper bound and the query stays an index range scan (LIKE would not).
    """
    for i in range(len(prefix) - 1, -1, -1):
        code = ord(prefix[i]) + 1
        if 0xD800 <= code <= 0xDFFF:  # surrogates cannot be encoded; skip over them
            code = 0xE000
        if code <= 0x10FFFF:
            return prefix, prefix[:i] + chr(code)
    return prefix, None


def _check_page(limit: Any, offset: Any) -> None:
    # SQLite reads LIMIT -1 as "no limit": refuse negatives rather than return everything.
    for name, value in (("limit", limit), ("offset", offset)):
        if type(value) is not int or value < 0:
            raise ValueError(f"{name} must be a non-negative int, not {value!r}")


def _device_clauses(filters: DeviceFilter | None) -> tuple[list[str], list[Any]]:
    """The list filters as AND-ed SQL clauses and their parameters."""
    if filters is None:
        return [], []
    clauses: list[str] = []
    params: list[Any] = []
    if filters.organization_ids is not None:
        orgs = list(filters.organization_ids)
        if not orgs:
            return ["0"], []
        clauses.append(f"organization_id IN ({', '.join('?' for _ in orgs)})")
        params += orgs
    if filters.type_id is not None:
        clauses.append("type_id = ?")
        params.append(filters.type_id)
    if filters.status is not None:
        clauses.append("status = ?")
        params.append(_normalise_status(filters.status))
    if filters.status_change_from is not None:
        clauses.append("status_change >= ?")
        params.append(_time("status_change_from", filters.status_change_from))
    return clauses, params


def _device_where(filters: DeviceFilter | None) -> tuple[str, list[Any]]:
    clauses, params = _device_clauses(filters)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _offset_index(filters: DeviceFilter | None) -> str:
    """The index hint for skipping `offset` matching devices in id order.

    One equality filter (one organization, a type or a status) has its own index, whose
    entries for one key are in id order: SQLite picks it. Anything else (no filter, a
    status_change range, several organizations, combined filters) would scan whole device
    rows or sort; the narrow id-ordered devices_list holds every filtered column instead.
    """
    if filters is not None and filters.status_change_from is None:
        orgs = filters.organization_ids
        single = [
            orgs is not None and len(orgs) == 1,
            filters.type_id is not None,
            filters.status is not None,
        ]
        if sum(single) == 1 and (orgs is None or len(orgs) <= 1):
            return ""
    return " INDEXED BY devices_list"


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class InformWork(NamedTuple):
    """Which of an Inform's checks can find anything for a device (``Store.inform_work``)."""

    active_tasks: bool  # a pending or in_progress task
    version_checks: bool  # a completed firmware_update whose version is still unchecked
    settings: bool  # desired settings of its own, or defaults of its device type
    # Provisioned, and the cached PeriodicInformInterval is not its update_frequency (unless
    # a desired setting or a type default governs that parameter).
    interval_drift: bool


class Store:
    """Synchronous access to the appliance database (see the module docstring)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        # The connection itself, for inspection by tests and tools (`store.db.execute(...)`);
        # the store's own statements go through `_conn`.
        self.db = conn
        self._depth = 0
        # The connection may be shared with a worker thread (check_same_thread=False);
        # a transaction must not interleave with another thread's statements.
        self._lock = threading.RLock()
        # Whether the database (and, through FileStorage, the files directory) is full.
        self.health = StorageHealth()

    # --- lifecycle ----------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path) -> Store:
        """Open (creating if needed) the database at `path` and migrate it."""
        target = str(path)
        try:
            if target != ":memory:":
                Path(target).parent.mkdir(parents=True, exist_ok=True)
                # It holds device and connection-request passwords and the URL-signing key:
                # owner-only, and SQLite gives its -wal and -shm files the same mode.
                os.close(os.open(target, os.O_RDWR | os.O_CREAT, 0o600))
                os.chmod(target, 0o600)
            conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open database {target}: {exc}") from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            # The automatic checkpoint (every 1,000 pages) and the maintenance job's keep the
            # WAL short; this cuts the file back once they have.
            conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
            migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot open database {target}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return cls(conn)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            # Cheap; keeps the planner's statistics useful on long-lived files.
            self._conn.execute("PRAGMA optimize")
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit. Nested use becomes a SAVEPOINT, so an inner failure that the
        caller catches rolls back only the inner part."""
        with self._lock:
            if self._depth == 0:
                self._conn.execute("BEGIN IMMEDIATE")
                self._depth = 1
                changes = self._conn.total_changes
                try:
                    yield
                    self._conn.execute("COMMIT")
                except BaseException as exc:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    if is_storage_full(exc):
                        self.health.refused_write(DATABASE)
                    raise
                else:
                    if self._conn.total_changes != changes:  # a write, not only reads
                        self.health.wrote(DATABASE)
                finally:
                    self._depth = 0
            else:
                name = f"sp{self._depth}"
                self._conn.execute(f"SAVEPOINT {name}")
                self._depth += 1
                try:
                    yield
                except BaseException:
                    self._conn.execute(f"ROLLBACK TO {name}")
                    self._conn.execute(f"RELEASE {name}")
                    raise
                else:
                    self._conn.execute(f"RELEASE {name}")
                finally:
                    self._depth -= 1

    @contextmanager
    def _atomic(self) -> Iterator[None]:
        """``transaction()`` for hot-path writers whose only statement that can fail (a
        lookup raising NotFound) runs before any write: inside a caller's transaction the
        SAVEPOINT/RELEASE pair would protect nothing, so it is skipped and a failure is the
        caller's transaction's to roll back. Alone, it is a transaction as usual."""
        with self._lock:
            if self._depth == 0:
                with self.transaction():
                    yield
            else:
                yield

    # --- low-level helpers --------------------------------------------------------------

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        cur = self._conn.cursor()
        cur.row_factory = sqlite3.Row
        return cur.execute(sql, params).fetchall()

    def _one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        cur = self._conn.cursor()
        cur.row_factory = sqlite3.Row
        row: sqlite3.Row | None = cur.execute(sql, params).fetchone()
        return row

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self._conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def _exists(self, table: str, row_id: Any) -> bool:
        if type(row_id) is not int:
            return False
        # `table` is always one of our literal table names, never caller input.
        return self._scalar(f"SELECT 1 FROM {table} WHERE id = ?", (row_id,)) is not None

    def _require_device(self, device_id: int) -> None:
        if not self._exists("devices", device_id):
            raise NotFound(f"device {device_id!r} not found")

    def _insert_history(
        self, device_id: int | None, action: str, detail: dict[str, Any], now: float, actor: str
    ) -> None:
        self._conn.execute(
            "INSERT INTO history (device_id, time, actor, action, detail) VALUES (?, ?, ?, ?, ?)",
            (device_id, now, actor, action, _json_text("detail", detail)),
        )

    def _page(
        self,
        table: str,
        where: str,
        params: Sequence[Any],
        decode: Callable[[sqlite3.Row], T],
        *,
        order: str = "id",
        limit: int,
        offset: int,
    ) -> tuple[int, list[T]]:
        """(rows matching, one page of them in ``order``) from one snapshot: what every list
        endpoint answers. ``table``, ``where`` ("" or " WHERE ...") and ``order`` are our
        literal SQL, never caller input; the caller has checked the page (``_check_page``)."""
        with self.transaction():
            total = int(self._scalar(f"SELECT count(*) FROM {table}{where}", params))
            found = self._all(
                f"SELECT * FROM {table}{where} ORDER BY {order} LIMIT ? OFFSET ?",
                [*params, limit, offset],
            )
        return total, [decode(r) for r in found]

    def _delete_unless_used(
        self,
        table: str,
        noun: str,
        row_id: int,
        decode: Callable[[sqlite3.Row], T],
        uses: Sequence[tuple[str, str]],
        audit: tuple[str, Callable[[T], dict[str, Any]]],
        *,
        now: float,
        actor: str,
    ) -> T:
        """Delete row ``row_id`` of ``table`` and audit it in the global log; NotFound if it
        does not exist, Conflict while one of ``uses`` counts rows that depend on it. Each
        use is (count query taking the id, message with ``{id}`` and ``{n}``), checked in
        order; ``audit`` is (action, detail of the deleted row). Returns the deleted row."""
        with self.transaction():
            row = self._one(f"SELECT * FROM {table} WHERE id = ?", (row_id,))
            if row is None:
                raise NotFound(f"{noun} {row_id!r} not found")
            current = decode(row)
            for count_sql, message in uses:
                n = int(self._scalar(count_sql, (row_id,)))
                if n:
                    raise Conflict(message.format(id=row_id, n=n))
            self._conn.execute(f"DELETE FROM {table} WHERE id = ?", (row_id,))
            action, detail = audit
            self._audit(action, detail(current), now, actor)
        return current

    # --- organizations ------------------------------------------------------------------

    def ensure_organization(self, name: str, *, code: str | None = None) -> Organization:
        """Get the organization called `name`, creating it (with `code`) if absent."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError("organization name must be a non-empty string")
        with self.transaction():
            self._conn.execute(
                "INSERT INTO organizations (name, code) VALUES (?, ?) "
                "ON CONFLICT (name) DO NOTHING",
                (name, code),
            )
            row = self._one("SELECT * FROM organizations WHERE name = ?", (name,))
        assert row is not None
        return codec.organization(row)

    def get_organization(self, org_id: int) -> Organization | None:
        row = self._one("SELECT * FROM organizations WHERE id = ?", (org_id,))
        return None if row is None else codec.organization(row)

    # --- devices ------------------------------------------------------------------------

    def _clean_device_fields(
        self, fields: dict[str, Any], allowed: frozenset[str]
    ) -> dict[str, Any]:
        clean: dict[str, Any] = {}
        for key, value in fields.items():
            if key not in allowed:
                raise ValueError(f"unknown or read-only device field {key!r}")
            clean[key] = _check_device_value(key, value)
        for key, table in _DEVICE_REFERENCES.items():
            ref = clean.get(key)
            if ref is not None and not self._exists(table, ref):
                raise ValueError(f"{key} {ref} does not exist")
        return clean

    def _check_serials(self, serial: str | None, alt: str | None, exclude_id: int | None) -> None:
        """Raise Conflict if `serial`/`alt` is any other device's serial or alt serial."""
        wanted = [s for s in (serial, alt) if s is not None]
        if not wanted:
            return
        marks = ", ".join("?" for _ in wanted)
        row = self._one(
            f"SELECT id, serial_number, serial_number_alt FROM devices "
            f"WHERE (serial_number IN ({marks}) OR serial_number_alt IN ({marks})) "
            f"AND id IS NOT ? LIMIT 1",
            (*wanted, *wanted, exclude_id),
        )
        if row is not None:
            taken = next(s for s in wanted if s in (row["serial_number"], row["serial_number_alt"]))
            raise Conflict(f"serial number {taken!r} is already used by device {row['id']}")

    def _frequency_fields(self, frequency: int | None, type_id: int | None) -> dict[str, Any]:
        """The update_frequency columns of a device: its own ``frequency``, or (None) the one
        its type ``type_id`` sets, else the default; ``own_update_frequency`` says which."""
        if frequency is not None:
            return {"update_frequency": frequency, "own_update_frequency": 1}
        row = self._conn.execute(
            "SELECT update_frequency FROM device_types WHERE id = ?", (type_id,)
        ).fetchone()
        inherited = row[0] if row is not None and row[0] is not None else DEFAULT_UPDATE_FREQUENCY
        return {"update_frequency": inherited, "own_update_frequency": 0}

    def create_device(
        self,
        *,
        serial_number: str,
        name: str,
        organization_id: int,
        now: float,
        actor: str,
        **fields: Any,
    ) -> Device:
        now_f = _time("now", now)
        values = self._clean_device_fields(
            {
                **fields,
                "serial_number": serial_number,
                "name": name,
                "organization_id": organization_id,
            },
            _CREATE_FIELDS | {"serial_number", "name", "organization_id"},
        )
        if values["organization_id"] is None:
            raise ValueError("organization_id must not be null")
        values.update(self._frequency_fields(values.get("update_frequency"), values.get("type_id")))
        values.setdefault("operational_status", "provisioning")
        values.update(
            uuid=str(uuid.uuid4()),
            status=DOWN,
            status_change=now_f,
            created=now_f,
            last_change=now_f,
        )
        columns = list(values)
        with self.transaction():
            # The unique indexes and the serial triggers enforce the rule; the lookup that
            # names the device in the way only runs once they refused (auto-registration
            # of a whole boot storm must not pay it for every new CPE).
            try:
                row = self._one(
                    f"INSERT INTO devices ({', '.join(columns)}) "
                    f"VALUES ({', '.join('?' for _ in columns)}) RETURNING *",
                    [values[c] for c in columns],
                )
            except sqlite3.IntegrityError as exc:
                self._check_serials(values["serial_number"], values.get("serial_number_alt"), None)
                raise Conflict(f"device conflicts with an existing one: {exc}") from exc
            assert row is not None
            created = codec.device(row)
            self._insert_history(
                created.id,
                "created",
                {"serial_number": created.serial_number, "name": created.name},
                now_f,
                actor,
            )
        return created

    def get_device(self, device_id: int) -> Device | None:
        row = self._one("SELECT * FROM devices WHERE id = ?", (device_id,))
        return None if row is None else codec.device(row)

    def find_device_by_serial(self, serial: str) -> Device | None:
        """The device whose serial_number is `serial`, else the one whose alt serial is."""
        # Two point lookups beat one OR query (multi-index OR plus a sort), and the first
        # one answers almost every Inform.
        row = self._one("SELECT * FROM devices WHERE serial_number = ?", (serial,))
        if row is None:
            row = self._one("SELECT * FROM devices WHERE serial_number_alt = ?", (serial,))
        return None if row is None else codec.device(row)

    def get_device_by_serial_number(self, serial: str) -> Device | None:
        """The device whose serial_number is exactly `serial` (the API's identity)."""
        row = self._one("SELECT * FROM devices WHERE serial_number = ?", (serial,))
        return None if row is None else codec.device(row)

    def count_devices(self, filters: DeviceFilter | None = None) -> int:
        where, params = _device_where(filters)
        return int(self._scalar(f"SELECT count(*) FROM devices{where}", params))

    def devices_page(
        self, filters: DeviceFilter | None = None, *, limit: int = 20, offset: int = 0
    ) -> tuple[int, list[Device]]:
        """(total matching, one page of devices in ascending id order) for list endpoints."""
        _check_page(limit, offset)
        clauses, params = _device_clauses(filters)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        with self.transaction():  # count and page from the same snapshot
            total = int(self._scalar(f"SELECT count(*) FROM devices{where}", params))
            if offset >= total or limit == 0:
                return total, []
            if offset == 0:
                found = self._all(
                    f"SELECT * FROM devices{where} ORDER BY id LIMIT ?", [*params, limit]
                )
            else:
                # OFFSET over full rows reads every skipped device; find the first id of the
                # page on a narrow index instead, then seek to it by rowid.
                also = "".join(f" AND {c}" for c in clauses)
                found = self._all(
                    f"SELECT * FROM devices WHERE id >= (SELECT id FROM devices"
                    f"{_offset_index(filters)}{where} ORDER BY id LIMIT 1 OFFSET ?){also} "
                    "ORDER BY id LIMIT ?",
                    [*params, offset, *params, limit],
                )
        return total, [codec.device(r) for r in found]

    # Batch lookups for serialising a page of devices: one query per kind of related row
    # instead of one per device (a page is at most a few hundred ids, well under SQLite's
    # limit on bound parameters).

    def _rows_by_id(self, table: str, ids: Iterable[int]) -> list[sqlite3.Row]:
        wanted = sorted({i for i in ids if type(i) is int})
        if not wanted:
            return []
        marks = ", ".join("?" for _ in wanted)
        # `table` is always one of our literal table names, never caller input.
        return self._all(f"SELECT * FROM {table} WHERE id IN ({marks})", wanted)

    def device_types_by_id(self, ids: Iterable[int]) -> dict[int, DeviceType]:
        return {r["id"]: codec.device_type(r) for r in self._rows_by_id("device_types", ids)}

    def locations_by_id(self, ids: Iterable[int]) -> dict[int, Location]:
        return {r["id"]: codec.location(r) for r in self._rows_by_id("locations", ids)}

    def organizations_by_id(self, ids: Iterable[int]) -> dict[int, Organization]:
        return {r["id"]: codec.organization(r) for r in self._rows_by_id("organizations", ids)}

    def tasks_for_devices(
        self, device_ids: Iterable[int], kinds: Iterable[str] | None = None
    ) -> dict[int, list[Task]]:
        """Each device's tasks in queue order (like `tasks_for_device`), optionally only
        those of `kinds`; devices without any are absent."""
        wanted = sorted(set(device_ids))
        if not wanted:
            return {}
        sql = f"SELECT * FROM tasks WHERE device_id IN ({', '.join('?' for _ in wanted)})"
        params: list[Any] = list(wanted)
        if kinds is not None:
            kind_list = sorted(set(kinds))
            if not kind_list:
                return {}
            sql += f" AND kind IN ({', '.join('?' for _ in kind_list)})"
            params += kind_list
        found: dict[int, list[Task]] = {}
        for r in self._all(sql + " ORDER BY priority, id", params):
            found.setdefault(r["device_id"], []).append(codec.task(r))
        return found

    def unconfirmed_settings_summary(
        self, device_ids: Iterable[int]
    ) -> dict[int, tuple[int, float]]:
        """device id -> (unconfirmed settings count, when one last changed), for the devices
        that have any (see `unconfirmed_settings_count`)."""
        wanted = sorted(set(device_ids))
        if not wanted:
            return {}
        found = self._conn.execute(
            "SELECT device_id, count(*), max(updated) FROM desired_settings "
            f"WHERE device_id IN ({', '.join('?' for _ in wanted)}) AND confirmed = 0 "
            "GROUP BY device_id",
            wanted,
        ).fetchall()
        return {int(d): (int(n), float(u)) for d, n, u in found}

    def update_device(self, device_id: int, *, now: float, actor: str, **fields: Any) -> Device:
        """Partial update. Only values that differ are written and recorded; a `status` change
        is recorded as a transition like `set_status`."""
        now_f = _time("now", now)
        clean = self._clean_device_fields(fields, _UPDATE_FIELDS)
        if "organization_id" in clean and clean["organization_id"] is None:
            raise ValueError("organization_id must not be null")
        with self.transaction():
            current = self.get_device(device_id)
            if current is None:
                raise NotFound(f"device {device_id!r} not found")
            own = self._own_frequency(device_id, clean, current)
            if own is not None:
                clean["update_frequency"] = own["update_frequency"]
            changes = {k: v for k, v in clean.items() if getattr(current, k) != v}
            if own is not None:
                self._conn.execute(
                    "UPDATE devices SET own_update_frequency = ? WHERE id = ?",
                    (own["own_update_frequency"], device_id),
                )
            if not changes:
                return current
            new_status = changes.pop("status", None)
            if "serial_number" in changes or "serial_number_alt" in changes:
                self._check_serials(
                    changes.get("serial_number"),
                    changes.get("serial_number_alt"),
                    device_id,
                )
            assignments = [f"{k} = ?" for k in changes] + ["last_change = ?"]
            try:
                self._conn.execute(
                    f"UPDATE devices SET {', '.join(assignments)} WHERE id = ?",
                    [*changes.values(), now_f, device_id],
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"device update conflicts with an existing one: {exc}") from exc
            if changes:
                self._insert_history(
                    device_id,
                    "updated",
                    {
                        "fields": sorted(changes),
                        "changes": {
                            k: {"from": getattr(current, k), "to": v}
                            for k, v in changes.items()
                            if k not in _SECRET_FIELDS
                        },
                    },
                    now_f,
                    actor,
                )
            if new_status is not None:
                self._transition(device_id, current.status, new_status, now_f, actor, "")
            updated = self.get_device(device_id)
        assert updated is not None
        return updated

    def _own_frequency(
        self, device_id: int, clean: dict[str, Any], current: Device
    ) -> dict[str, Any] | None:
        """The update_frequency columns an update sets, None when it leaves them alone: a
        value makes it the device's own, None (and a new type for a device without its own)
        takes the type's."""
        if "update_frequency" in clean:
            return self._frequency_fields(
                clean["update_frequency"], clean.get("type_id", current.type_id)
            )
        if "type_id" in clean and clean["type_id"] != current.type_id:
            row = self._conn.execute(
                "SELECT own_update_frequency FROM devices WHERE id = ?", (device_id,)
            ).fetchone()
            if row is not None and not row[0]:
                return self._frequency_fields(None, clean["type_id"])
        return None

    def delete_device(self, device_id: int, *, now: float, actor: str) -> None:
        """Delete the device with its tasks, parameters and history (FK cascades); the
        global audit log keeps a `device_deleted` entry."""
        now_f = _time("now", now)
        with self.transaction():
            row = self._one("SELECT serial_number, name FROM devices WHERE id = ?", (device_id,))
            if row is None:
                raise NotFound(f"device {device_id!r} not found")
            self._conn.execute("DELETE FROM devices WHERE id = ?", (device_id,))
            self._insert_history(
                None,
                "device_deleted",
                {
                    "device_id": device_id,
                    "serial_number": row["serial_number"],
                    "name": row["name"],
                },
                now_f,
                actor,
            )

    def _transition(
        self, device_id: int, old: str, new: str, now: float, actor: str, reason: str
    ) -> bool:
        """Write an Up/Down transition (status, status_change, history) if it is one."""
        if old == new:
            return False
        self._conn.execute(
            "UPDATE devices SET status = ?, status_change = ? WHERE id = ?", (new, now, device_id)
        )
        self._insert_history(
            device_id, "status", {"from": old, "to": new, "reason": reason}, now, actor
        )
        return True

    def set_status(
        self, device_id: int, status: str, *, now: float, actor: str = "acs", reason: str = ""
    ) -> bool:
        """Set Up/Down; returns True if it changed. Up also counts as contact (last_contact)."""
        new = _normalise_status(status)
        now_f = _time("now", now)
        with self.transaction():
            old = self._scalar("SELECT status FROM devices WHERE id = ?", (device_id,))
            if old is None:
                raise NotFound(f"device {device_id!r} not found")
            if new == UP:
                self._conn.execute(
                    "UPDATE devices SET last_contact = ? WHERE id = ?", (now_f, device_id)
                )
            return self._transition(device_id, old, new, now_f, actor, reason)

    def record_inform(self, device_id: int, info: InformRecord, *, now: float) -> Device:
        """Step 1 of every session: what the CPE says about itself, contact time, Up."""
        now_f = _time("now", now)
        if info.product_class:
            unique = f"{info.oui}-{info.product_class}-{info.serial_number}"
        else:
            unique = f"{info.oui}-{info.serial_number}"
        events = list(info.event_codes)
        bootstrap = BOOTSTRAP in events
        with self._atomic():
            old = self._scalar("SELECT status FROM devices WHERE id = ?", (device_id,))
            if old is None:
                raise NotFound(f"device {device_id!r} not found")
            row = self._one(
                """
                UPDATE devices SET
                    manufacturer = ?, oui = ?, product_class = ?, unique_identifier = ?,
                    software_version = coalesce(?, software_version),
                    hardware_version = coalesce(?, hardware_version),
                    connection_request_url = coalesce(nullif(?, ''), connection_request_url),
                    data_model_root = coalesce(?, data_model_root),
                    address = coalesce(?, address),
                    last_connection = ?, last_contact = ?,
                    status = 'Up',
                    status_change = CASE WHEN status = 'Up' THEN status_change ELSE ? END,
                    provisioned = CASE WHEN ? THEN 0 ELSE provisioned END
                WHERE id = ? RETURNING *
                """,
                (
                    info.manufacturer,
                    info.oui,
                    info.product_class,
                    unique,
                    info.software_version,
                    info.hardware_version,
                    info.connection_request_url,
                    info.data_model_root,
                    info.address,
                    now_f,
                    now_f,
                    now_f,
                    bootstrap,
                    device_id,
                ),
            )
            assert row is not None
            entries = []
            if old != UP:
                entries.append(("status", codec.dumps({"from": old, "to": UP, "reason": "inform"})))
            entries.append(("inform", codec.dumps({"events": events})))
            self._conn.executemany(
                "INSERT INTO history (device_id, time, actor, action, detail) "
                "VALUES (?, ?, 'cpe', ?, ?)",
                [(device_id, now_f, action, detail) for action, detail in entries],
            )
            if bootstrap:
                # A factory-fresh CPE: whatever we cached about its tree is stale.
                self._conn.execute("DELETE FROM parameters WHERE device_id = ?", (device_id,))
        return codec.device(row)

    def devices_due_down(self, now: float) -> list[int]:
        """Up devices whose liveness window (2 x update_frequency + 60 s after the last
        contact) ended strictly before `now`."""
        cur = self._conn.execute(
            "SELECT id FROM devices WHERE status = 'Up' AND liveness_deadline < ?", (now,)
        )
        # Sorted here: an ORDER BY id would add a temp B-tree sort to the indexed scan.
        return sorted(r[0] for r in cur.fetchall())

    # --- parameters ---------------------------------------------------------------------

    def upsert_parameters(
        self,
        device_id: int,
        params: Iterable[tuple[str, str | None, str | None, bool | None]],
        *,
        now: float,
    ) -> None:
        """Insert or update cached parameters; None leaves value/type/writable as they are."""
        now_f = _time("now", now)
        batch = []
        for item in params:
            try:
                path, value, ptype, writable = item
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"parameter must be (path, value, type, writable): {item!r}"
                ) from exc
            if not isinstance(path, str) or not path:
                raise ValueError(f"parameter path must be a non-empty string, not {path!r}")
            if value is not None and not isinstance(value, str):
                raise ValueError(f"value of {path} must be a string or None")
            if ptype is not None and not isinstance(ptype, str):
                raise ValueError(f"type of {path} must be a string or None")
            if writable is not None and not isinstance(writable, bool):
                raise ValueError(f"writable of {path} must be a bool or None")
            batch.append((device_id, path, value, ptype, writable, now_f))
        with self.transaction():
            self._require_device(device_id)
            self._conn.executemany(
                """
                INSERT INTO parameters (device_id, path, value, type, writable, updated)
                VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (device_id, path) DO UPDATE SET
                    value = coalesce(excluded.value, value),
                    type = coalesce(excluded.type, type),
                    writable = coalesce(excluded.writable, writable),
                    updated = excluded.updated
                """,
                batch,
            )

    def _prefix_where(self, prefix: str) -> tuple[str, list[Any]]:
        if not isinstance(prefix, str):
            raise ValueError(f"prefix must be a string, not {prefix!r}")
        if not prefix:
            return "", []
        low, high = _prefix_bounds(prefix)
        if high is None:
            return " AND path >= ?", [low]
        return " AND path >= ? AND path < ?", [low, high]

    def get_parameters(self, device_id: int, prefix: str = "") -> list[Parameter]:
        where, args = self._prefix_where(prefix)
        found = self._all(
            f"SELECT * FROM parameters WHERE device_id = ?{where} ORDER BY path",
            [device_id, *args],
        )
        return [codec.parameter(r) for r in found]

    def get_parameter(self, device_id: int, path: str) -> Parameter | None:
        row = self._one(
            "SELECT * FROM parameters WHERE device_id = ? AND path = ?", (device_id, path)
        )
        return None if row is None else codec.parameter(row)

    def delete_parameters(self, device_id: int, prefix: str = "") -> int:
        """Delete cached parameters under `prefix` ("" = all); returns how many."""
        where, args = self._prefix_where(prefix)
        with self.transaction():
            cur = self._conn.execute(
                f"DELETE FROM parameters WHERE device_id = ?{where}", [device_id, *args]
            )
        return cur.rowcount

    # --- tasks --------------------------------------------------------------------------

    def queue_task(
        self,
        device_id: int,
        kind: str,
        args: dict[str, Any],
        *,
        now: float,
        actor: str,
        scheduled_at: float | None = None,
        front: bool = False,
    ) -> Task:
        now_f = _time("now", now)
        when = _opt_time("scheduled_at", scheduled_at)
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"task kind must be a non-empty string, not {kind!r}")
        if not isinstance(args, dict):
            raise ValueError(f"task args must be a dict, not {type(args).__name__}")
        args_text = _json_text("task args", args)
        priority = FRONT_PRIORITY if front else NORMAL_PRIORITY
        with self.transaction():
            self._require_device(device_id)
            row = self._one(
                "INSERT INTO tasks (device_id, kind, args, state, priority, created, "
                "scheduled_at, actor) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?) RETURNING *",
                (device_id, kind, args_text, priority, now_f, when, actor),
            )
            assert row is not None
            detail: dict[str, Any] = {"task_id": row["id"], "kind": kind}
            if when is not None:
                detail["scheduled_at"] = when
            # Args stay out of history: SetParameterValues args may carry passwords.
            self._insert_history(device_id, "task_queued", detail, now_f, actor)
        return codec.task(row)

    def next_task(self, device_id: int, *, now: float) -> Task | None:
        """First pending task in queue order that is due (scheduled/retry time reached)."""
        row = self._one(
            "SELECT * FROM tasks WHERE device_id = ?1 AND state = 'pending' "
            "AND (scheduled_at IS NULL OR scheduled_at <= ?2) "
            "AND (next_attempt_at IS NULL OR next_attempt_at <= ?2) "
            "ORDER BY priority, id LIMIT 1",
            (device_id, now),
        )
        return None if row is None else codec.task(row)

    def inform_work(self, device_id: int) -> InformWork:
        """What an Inform may have to look at for this device, in one query (see
        ``InformWork``), so a device with nothing to do costs one statement here."""
        row = self._conn.execute(
            "SELECT"
            " EXISTS (SELECT 1 FROM tasks WHERE device_id = ?1"
            "  AND state IN ('pending', 'in_progress')),"
            " EXISTS (SELECT 1 FROM tasks WHERE device_id = ?1 AND state = 'done'"
            "  AND kind = 'firmware_update'"
            "  AND json_extract(result, '$.version_check') = 'pending'),"
            " EXISTS (SELECT 1 FROM desired_settings WHERE device_id = ?1)"
            " OR EXISTS (SELECT 1 FROM devices v JOIN device_types t ON t.id = v.type_id,"
            "  json_each(t.default_settings) WHERE v.id = ?1),"
            " EXISTS (SELECT 1 FROM devices d JOIN parameters p ON p.device_id = d.id AND p.path ="
            "  coalesce(d.data_model_root, 'Device.') || 'ManagementServer.PeriodicInformInterval'"
            "  WHERE d.id = ?1 AND d.provisioned"
            "  AND CAST(p.value AS INTEGER) IS NOT d.update_frequency"
            "  AND NOT EXISTS (SELECT 1 FROM desired_settings s"
            "   WHERE s.device_id = ?1 AND s.path = p.path)"
            "  AND NOT EXISTS (SELECT 1 FROM device_types t, json_each(t.default_settings) j"
            "   WHERE t.id = d.type_id AND j.key = p.path))",
            (device_id,),
        ).fetchone()
        return InformWork(bool(row[0]), bool(row[1]), bool(row[2]), bool(row[3]))

    def get_task(self, task_id: int) -> Task | None:
        row = self._one("SELECT * FROM tasks WHERE id = ?", (task_id,))
        return None if row is None else codec.task(row)

    def tasks_for_device(self, device_id: int, states: Iterable[str] | None = None) -> list[Task]:
        """The device's tasks in queue order, optionally only those in `states`."""
        if states is None:
            found = self._all(
                "SELECT * FROM tasks WHERE device_id = ? ORDER BY priority, id", (device_id,)
            )
        else:
            wanted = list(states)
            unknown = [s for s in wanted if s not in TASK_STATES]
            if unknown:
                raise ValueError(f"unknown task state(s): {', '.join(map(repr, unknown))}")
            if not wanted:
                return []
            marks = ", ".join("?" for _ in wanted)
            found = self._all(
                f"SELECT * FROM tasks WHERE device_id = ? AND state IN ({marks}) "
                "ORDER BY priority, id",
                (device_id, *wanted),
            )
        return [codec.task(r) for r in found]

    def _task_transition(
        self, task_id: int, from_states: tuple[str, ...], assignments: str, params: Sequence[Any]
    ) -> sqlite3.Row:
        """UPDATE a task if it is in one of `from_states`; NotFound / Conflict otherwise."""
        marks = ", ".join("?" for _ in from_states)
        row = self._one(
            f"UPDATE tasks SET {assignments} WHERE id = ? AND state IN ({marks}) RETURNING *",
            (*params, task_id, *from_states),
        )
        if row is None:
            state = self._scalar("SELECT state FROM tasks WHERE id = ?", (task_id,))
            if state is None:
                raise NotFound(f"task {task_id!r} not found")
            raise Conflict(f"task {task_id} is {state}, expected {' or '.join(from_states)}")
        return row

    def start_task(self, task_id: int, *, now: float) -> Task:
        now_f = _time("now", now)
        with self.transaction():
            row = self._task_transition(
                task_id,
                (PENDING,),
                "state = 'in_progress', started = ?, attempts = attempts + 1",
                (now_f,),
            )
        return codec.task(row)

    def complete_task(
        self, task_id: int, *, now: float, result: dict[str, Any] | None = None
    ) -> Task:
        now_f = _time("now", now)
        result_text = None if result is None else _json_text("task result", result)
        with self.transaction():
            row = self._task_transition(
                task_id,
                (PENDING, IN_PROGRESS),
                "state = 'done', finished = ?, result = ?, next_attempt_at = NULL",
                (now_f, result_text),
            )
            self._insert_history(
                row["device_id"],
                "task_done",
                {"task_id": task_id, "kind": row["kind"]},
                now_f,
                row["actor"],
            )
        return codec.task(row)

    def fail_task(
        self,
        task_id: int,
        *,
        now: float,
        fault_code: int | None,
        fault_string: str | None,
        retry_at: float | None,
        result: dict[str, Any] | None = None,
    ) -> Task:
        """Record a fault; back to pending until `retry_at` if given, else failed for good.

        `result` (e.g. the per-parameter faults of a SetParameterValues) replaces the task's
        result when given; None keeps what is there."""
        now_f = _time("now", now)
        retry = _opt_time("retry_at", retry_at)
        result_text = None if result is None else _json_text("task result", result)
        if fault_code is not None and (type(fault_code) is not int):
            raise ValueError(f"fault_code must be an int or None, not {fault_code!r}")
        if fault_string is not None and not isinstance(fault_string, str):
            raise ValueError(f"fault_string must be a string or None, not {fault_string!r}")
        with self.transaction():
            if retry is not None:
                row = self._task_transition(
                    task_id,
                    (PENDING, IN_PROGRESS),
                    "state = 'pending', fault_code = ?, fault_string = ?, next_attempt_at = ?, "
                    "result = coalesce(?, result)",
                    (fault_code, fault_string, retry, result_text),
                )
            else:
                row = self._task_transition(
                    task_id,
                    (PENDING, IN_PROGRESS),
                    "state = 'failed', fault_code = ?, fault_string = ?, finished = ?, "
                    "next_attempt_at = NULL, result = coalesce(?, result)",
                    (fault_code, fault_string, now_f, result_text),
                )
            device_id, kind = row["device_id"], row["kind"]
            if fault_code is not None:
                self._insert_history(
                    device_id,
                    "cwmp_fault",
                    {"task_id": task_id, "kind": kind, "code": fault_code, "string": fault_string},
                    now_f,
                    "cpe",
                )
            if retry is None:
                self._insert_history(
                    device_id,
                    "task_failed",
                    {
                        "task_id": task_id,
                        "kind": kind,
                        "fault_code": fault_code,
                        "fault_string": fault_string,
                    },
                    now_f,
                    "acs",
                )
        return codec.task(row)

    def cancel_task(self, task_id: int, *, now: float, actor: str) -> Task:
        """Cancel a pending task; Conflict if it already started or finished."""
        now_f = _time("now", now)
        with self.transaction():
            row = self._task_transition(
                task_id, (PENDING,), "state = 'cancelled', finished = ?", (now_f,)
            )
            self._insert_history(
                row["device_id"],
                "task_cancelled",
                {"task_id": task_id, "kind": row["kind"]},
                now_f,
                actor,
            )
        return codec.task(row)

    def requeue_in_progress(
        self, device_id: int, *, now: float, kinds: Iterable[str] | None = None
    ) -> int:
        """Put tasks a dead session left in_progress back to pending; returns how many.

        `kinds` limits it to those task kinds (None = all): a reboot whose RPC the CPE
        acknowledged legitimately stays in_progress until the CPE informs `M Reboot`.
        """
        _time("now", now)
        sql = "UPDATE tasks SET state = 'pending' WHERE device_id = ? AND state = 'in_progress'"
        params: list[Any] = [device_id]
        if kinds is not None:
            wanted = list(kinds)
            if not wanted:
                return 0
            sql += f" AND kind IN ({', '.join('?' for _ in wanted)})"
            params += wanted
        # One statement is atomic by itself: no BEGIN/SAVEPOINT round trips (every Inform
        # runs this), only the lock that keeps it out of another thread's transaction.
        with self._lock:
            cur = self._conn.execute(sql, params)
        return cur.rowcount

    # --- history ------------------------------------------------------------------------

    def add_history(
        self,
        device_id: int | None,
        action: str,
        detail: dict[str, Any],
        *,
        now: float,
        actor: str = "acs",
    ) -> None:
        """Append an audit entry; device_id None = the global audit log."""
        now_f = _time("now", now)
        if not isinstance(action, str) or not action:
            raise ValueError("history action must be a non-empty string")
        if not isinstance(detail, dict):
            raise ValueError("history detail must be a dict")
        with self.transaction():
            if device_id is not None:
                self._require_device(device_id)
            self._insert_history(device_id, action, detail, now_f, actor)

    def history(
        self, device_id: int | None, limit: int = 100, offset: int = 0
    ) -> list[HistoryEntry]:
        """Entries of a device (None = global log), newest first."""
        _check_page(limit, offset)
        found = self._all(
            "SELECT * FROM history WHERE device_id IS ? ORDER BY id DESC LIMIT ? OFFSET ?",
            (device_id, limit, offset),
        )
        return [codec.history(r) for r in found]

    def count_history(self, device_id: int | None) -> int:
        return int(self._scalar("SELECT count(*) FROM history WHERE device_id IS ?", (device_id,)))

    # --- API tokens ---------------------------------------------------------------------

    def create_token(
        self, name: str, role: str, organization_ids: Sequence[int], *, now: float
    ) -> tuple[ApiToken, str]:
        """Create a token; returns the row and the plaintext (shown once, stored hashed)."""
        now_f = _time("now", now)
        if not isinstance(name, str) or not name.strip():
            raise ValueError("token name must be a non-empty string")
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        orgs = sorted(set(organization_ids))
        for org in orgs:
            if type(org) is not int:
                raise ValueError(f"organization id must be an int, not {org!r}")
        plaintext = secrets.token_urlsafe(32)
        with self.transaction():
            missing = [o for o in orgs if not self._exists("organizations", o)]
            if missing:
                raise ValueError(f"unknown organization id(s): {', '.join(map(str, missing))}")
            row = self._one(
                "INSERT INTO api_tokens (name, role, token_hash, organization_ids, created) "
                "VALUES (?, ?, ?, ?, ?) RETURNING *",
                (name, role, _hash_token(plaintext), codec.dumps(orgs), now_f),
            )
        assert row is not None
        return codec.token(row), plaintext

    def verify_token(self, token: str) -> ApiToken | None:
        """The active token matching `token`, else None. Looked up by hash, so no
        plaintext comparison leaks timing."""
        if not isinstance(token, str) or not token:
            return None
        row = self._one(
            "SELECT * FROM api_tokens WHERE token_hash = ? AND revoked = 0", (_hash_token(token),)
        )
        return None if row is None else codec.token(row)

    def get_token(self, token_id: int) -> ApiToken | None:
        row = self._one("SELECT * FROM api_tokens WHERE id = ?", (token_id,))
        return None if row is None else codec.token(row)

    def list_tokens(self) -> list[ApiToken]:
        return [codec.token(r) for r in self._all("SELECT * FROM api_tokens ORDER BY id")]

    def revoke_token(self, token_id: int) -> bool:
        """Revoke; True if an active token was revoked, False if unknown or already revoked."""
        with self.transaction():
            cur = self._conn.execute(
                "UPDATE api_tokens SET revoked = 1 WHERE id = ? AND revoked = 0", (token_id,)
            )
        return cur.rowcount == 1

    # --- device types -------------------------------------------------------------------

    def create_device_type(
        self,
        *,
        name: str,
        short_name: str | None = None,
        model: str | None = None,
        manufacturer: str | None = None,
        product_class: str | None = None,
        default_settings: dict[str, Any] | None = None,
        update_frequency: int | None = None,
    ) -> DeviceType:
        if not isinstance(name, str) or not name:
            raise ValueError("device type name must be a non-empty string")
        if update_frequency is not None and (
            type(update_frequency) is not int or update_frequency <= 0
        ):
            raise ValueError("update_frequency must be a positive int")
        settings = {} if default_settings is None else default_settings
        if not isinstance(settings, dict):
            raise ValueError("default_settings must be a dict")
        with self.transaction():
            row = self._one(
                "INSERT INTO device_types (name, short_name, model, manufacturer, product_class, "
                "default_settings, update_frequency) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *",
                (
                    name,
                    short_name,
                    model,
                    manufacturer,
                    product_class,
                    _json_text("default_settings", settings),
                    update_frequency,
                ),
            )
        assert row is not None
        return codec.device_type(row)

    def get_device_type(self, type_id: int) -> DeviceType | None:
        row = self._one("SELECT * FROM device_types WHERE id = ?", (type_id,))
        return None if row is None else codec.device_type(row)

    def find_device_type(self, manufacturer: str, product_class: str) -> int | None:
        """The type matching what a CPE reports (oldest first), for auto-registration."""
        found = self._scalar(
            "SELECT id FROM device_types WHERE manufacturer = ? AND product_class = ? "
            "ORDER BY id LIMIT 1",
            (manufacturer, product_class),
        )
        return None if found is None else int(found)

    # --- locations ----------------------------------------------------------------------

    def create_location(
        self,
        *,
        name: str,
        organization_id: int | None,
        short_name: str | None = None,
        latitude: str | None = None,
        longitude: str | None = None,
        parent_id: int | None = None,
    ) -> Location:
        if not isinstance(name, str) or not name:
            raise ValueError("location name must be a non-empty string")
        with self.transaction():
            if organization_id is not None and not self._exists("organizations", organization_id):
                raise ValueError(f"organization_id {organization_id} does not exist")
            if parent_id is not None and not self._exists("locations", parent_id):
                raise ValueError(f"parent_id {parent_id} does not exist")
            row = self._one(
                "INSERT INTO locations (name, short_name, latitude, longitude, parent_id, "
                "organization_id) VALUES (?, ?, ?, ?, ?, ?) RETURNING *",
                (name, short_name, latitude, longitude, parent_id, organization_id),
            )
        assert row is not None
        return codec.location(row)

    def get_location(self, location_id: int) -> Location | None:
        row = self._one("SELECT * FROM locations WHERE id = ?", (location_id,))
        return None if row is None else codec.location(row)

    def find_location(self, organization_id: int | None, name: str) -> Location | None:
        row = self._one(
            "SELECT * FROM locations WHERE organization_id IS ? AND name = ? ORDER BY id LIMIT 1",
            (organization_id, name),
        )
        return None if row is None else codec.location(row)

    # --- firmware images ----------------------------------------------------------------

    def create_firmware_image(
        self,
        *,
        name: str,
        version: str,
        size: int,
        sha256: str,
        filename: str,
        now: float,
        device_type_id: int | None = None,
    ) -> FirmwareImage:
        now_f = _time("now", now)
        for label, text in (("name", name), ("version", version), ("filename", filename)):
            if not isinstance(text, str) or not text:
                raise ValueError(f"firmware {label} must be a non-empty string")
        if type(size) is not int or size < 0:
            raise ValueError("firmware size must be a non-negative int")
        with self.transaction():
            if device_type_id is not None and not self._exists("device_types", device_type_id):
                raise ValueError(f"device_type_id {device_type_id} does not exist")
            row = self._one(
                "INSERT INTO firmware_images (name, version, size, sha256, device_type_id, "
                "filename, created) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *",
                (name, version, size, sha256, device_type_id, filename, now_f),
            )
        assert row is not None
        return codec.firmware_image(row)

    def get_firmware_image(self, image_id: int) -> FirmwareImage | None:
        row = self._one("SELECT * FROM firmware_images WHERE id = ?", (image_id,))
        return None if row is None else codec.firmware_image(row)

    # --- operational records ------------------------------------------------------------

    def get_operational_record(self, device_id: int) -> OperationalRecord:
        """The device's record; a blank one (from the device row) if never written."""
        row = self._one("SELECT * FROM operational_records WHERE device_id = ?", (device_id,))
        if row is not None:
            return codec.operational_record(row)
        status = self._scalar("SELECT operational_status FROM devices WHERE id = ?", (device_id,))
        if status is None:
            raise NotFound(f"device {device_id!r} not found")
        return OperationalRecord(device_id, status, {}, [], None, None)

    def save_operational_record(
        self,
        device_id: int,
        *,
        operational_status: str,
        data: dict[str, Any],
        history: list[dict[str, Any]],
        updated_by: str | None,
        now: float,
    ) -> OperationalRecord:
        """Replace the record; the device row's operational_status follows it."""
        now_f = _time("now", now)
        if operational_status not in OPERATIONAL_STATUSES:
            raise ValueError(f"operational_status must be one of {', '.join(OPERATIONAL_STATUSES)}")
        if not isinstance(data, dict) or not isinstance(history, list):
            raise ValueError("data must be a dict and history a list")
        data_text = _json_text("data", data)
        history_text = _json_text("history", history)
        with self.transaction():
            self._require_device(device_id)
            row = self._one(
                "INSERT INTO operational_records (device_id, operational_status, data, history, "
                "updated_by, last_updated) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (device_id) DO UPDATE SET operational_status = excluded."
                "operational_status, data = excluded.data, history = excluded.history, "
                "updated_by = excluded.updated_by, last_updated = excluded.last_updated "
                "RETURNING *",
                (device_id, operational_status, data_text, history_text, updated_by, now_f),
            )
            self._conn.execute(
                "UPDATE devices SET operational_status = ? WHERE id = ?",
                (operational_status, device_id),
            )
        assert row is not None
        return codec.operational_record(row)

    # --- CWMP session transcripts (debug) -----------------------------------------------

    def add_session_transcript(
        self, device_id: int, transcript: str, *, started: float
    ) -> SessionTranscript:
        started_f = _time("started", started)
        if not isinstance(transcript, str):
            raise ValueError("transcript must be a string")
        with self.transaction():
            self._require_device(device_id)
            row = self._one(
                "INSERT INTO cwmp_sessions (device_id, started, transcript) VALUES (?, ?, ?) "
                "RETURNING *",
                (device_id, started_f, transcript),
            )
        assert row is not None
        return codec.session_transcript(row)

    def session_transcripts(
        self, device_id: int, limit: int = 20, offset: int = 0
    ) -> list[SessionTranscript]:
        """The device's transcripts, newest first."""
        _check_page(limit, offset)
        found = self._all(
            "SELECT * FROM cwmp_sessions WHERE device_id = ? ORDER BY id DESC LIMIT ? OFFSET ?",
            (device_id, limit, offset),
        )
        return [codec.session_transcript(r) for r in found]

    def count_session_transcripts(self, device_id: int) -> int:
        return int(
            self._scalar("SELECT count(*) FROM cwmp_sessions WHERE device_id = ?", (device_id,))
        )

    # --- API resources: organization/type/location pages and writes, device children ---
    # Paged reads and the writes of the supporting REST resources (spec section 7). Writes of
    # organizations, device types and locations are audited in the global log (device None).

    def _audit(self, action: str, detail: dict[str, Any], now: float, actor: str) -> None:
        self._insert_history(None, action, detail, _time("now", now), actor)

    def organizations_page(
        self, organization_ids: Sequence[int] | None, *, limit: int = 20, offset: int = 0
    ) -> tuple[int, list[Organization]]:
        """(total, one page in ascending id) of the organizations in `organization_ids`
        (None = every organization)."""
        _check_page(limit, offset)
        where, params = "", []
        if organization_ids is not None:
            ids = list(organization_ids)
            if not ids:
                return 0, []
            where = f" WHERE id IN ({', '.join('?' for _ in ids)})"
            params = ids
        return self._page(
            "organizations", where, params, codec.organization, limit=limit, offset=offset
        )

    def create_organization(
        self, *, name: str, code: str | None, now: float, actor: str
    ) -> Organization:
        """Create; Conflict if the name is taken."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError("organization name must be a non-empty string")
        if code is not None and not isinstance(code, str):
            raise ValueError("organization code must be a string or None")
        with self.transaction():
            if self._scalar("SELECT 1 FROM organizations WHERE name = ?", (name,)) is not None:
                raise Conflict(f"an organization named {name!r} already exists")
            row = self._one(
                "INSERT INTO organizations (name, code) VALUES (?, ?) RETURNING *", (name, code)
            )
            assert row is not None
            created = codec.organization(row)
            self._audit(
                "organization_created", {"organization_id": created.id, "name": name}, now, actor
            )
        return created

    def update_organization(
        self, org_id: int, *, now: float, actor: str, **fields: Any
    ) -> Organization:
        """Partial update of `name` / `code`; NotFound, Conflict (name taken), ValueError."""
        unknown = set(fields) - {"name", "code"}
        if unknown:
            raise ValueError(f"unknown organization field(s): {', '.join(sorted(unknown))}")
        if "name" in fields and (not isinstance(fields["name"], str) or not fields["name"]):
            raise ValueError("organization name must be a non-empty string")
        if "code" in fields and fields["code"] is not None and not isinstance(fields["code"], str):
            raise ValueError("organization code must be a string or None")
        with self.transaction():
            current = self.get_organization(org_id)
            if current is None:
                raise NotFound(f"organization {org_id!r} not found")
            changes = {k: v for k, v in fields.items() if getattr(current, k) != v}
            if not changes:
                return current
            if "name" in changes and self._scalar(
                "SELECT 1 FROM organizations WHERE name = ? AND id <> ?", (changes["name"], org_id)
            ):
                raise Conflict(f"an organization named {changes['name']!r} already exists")
            assignments = ", ".join(f"{k} = ?" for k in changes)
            self._conn.execute(
                f"UPDATE organizations SET {assignments} WHERE id = ?", [*changes.values(), org_id]
            )
            self._audit(
                "organization_updated",
                {
                    "organization_id": org_id,
                    "changes": {
                        k: {"from": getattr(current, k), "to": v} for k, v in changes.items()
                    },
                },
                now,
                actor,
            )
            updated = self.get_organization(org_id)
        assert updated is not None
        return updated

    def delete_organization(self, org_id: int, *, now: float, actor: str) -> None:
        """Delete an organization (its locations go with it); Conflict while it has devices."""
        self._delete_unless_used(
            "organizations",
            "organization",
            org_id,
            codec.organization,
            [
                (
                    "SELECT count(*) FROM devices WHERE organization_id = ?",
                    "organization {id} still has {n} device(s)",
                )
            ],
            ("organization_deleted", lambda o: {"organization_id": org_id, "name": o.name}),
            now=now,
            actor=actor,
        )

    def device_types_page(
        self, *, limit: int = 20, offset: int = 0
    ) -> tuple[int, list[DeviceType]]:
        _check_page(limit, offset)
        return self._page("device_types", "", (), codec.device_type, limit=limit, offset=offset)

    def device_type_matching(
        self, manufacturer: str, product_class: str, *, exclude_id: int | None = None
    ) -> DeviceType | None:
        """Another type already claiming this manufacturer/product class (auto-registration
        would be ambiguous), else None."""
        row = self._one(
            "SELECT * FROM device_types WHERE manufacturer = ? AND product_class = ? "
            "AND id IS NOT ? ORDER BY id LIMIT 1",
            (manufacturer, product_class, exclude_id),
        )
        return None if row is None else codec.device_type(row)

    def update_device_type(
        self, type_id: int, *, now: float, actor: str, **fields: Any
    ) -> DeviceType:
        """Partial update; NotFound, ValueError, Conflict (manufacturer/product class taken)."""
        allowed = {
            "name",
            "short_name",
            "model",
            "manufacturer",
            "product_class",
            "default_settings",
            "update_frequency",
        }
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown device type field(s): {', '.join(sorted(unknown))}")
        if "name" in fields and (not isinstance(fields["name"], str) or not fields["name"]):
            raise ValueError("device type name must be a non-empty string")
        for key in ("short_name", "model", "manufacturer", "product_class"):
            if key in fields and fields[key] is not None and not isinstance(fields[key], str):
                raise ValueError(f"{key} must be a string or None")
        if "default_settings" in fields and not isinstance(fields["default_settings"], dict):
            raise ValueError("default_settings must be a dict")
        frequency = fields.get("update_frequency")
        if frequency is not None and (type(frequency) is not int or frequency <= 0):
            raise ValueError("update_frequency must be a positive int")
        with self.transaction():
            current = self.get_device_type(type_id)
            if current is None:
                raise NotFound(f"device type {type_id!r} not found")
            changes = {k: v for k, v in fields.items() if getattr(current, k) != v}
            if not changes:
                return current
            manufacturer = changes.get("manufacturer", current.manufacturer)
            product_class = changes.get("product_class", current.product_class)
            if (
                ("manufacturer" in changes or "product_class" in changes)
                and manufacturer is not None
                and product_class is not None
                and self.device_type_matching(manufacturer, product_class, exclude_id=type_id)
            ):
                raise Conflict(
                    f"another device type already matches {manufacturer!r}/{product_class!r}"
                )
            values = [
                _json_text("default_settings", v) if k == "default_settings" else v
                for k, v in changes.items()
            ]
            assignments = ", ".join(f"{k} = ?" for k in changes)
            self._conn.execute(
                f"UPDATE device_types SET {assignments} WHERE id = ?", [*values, type_id]
            )
            if "update_frequency" in changes:
                self._inherit_frequency(type_id, changes["update_frequency"], now, actor)
            self._audit(
                "device_type_updated",
                {"device_type_id": type_id, "fields": sorted(changes)},
                now,
                actor,
            )
            updated = self.get_device_type(type_id)
        assert updated is not None
        return updated

    def _inherit_frequency(
        self, type_id: int, frequency: int | None, now: float, actor: str
    ) -> None:
        """The type's new update_frequency reaches its devices that have none of their own
        (recorded in each one's history, like any other device update)."""
        new = frequency if frequency is not None else DEFAULT_UPDATE_FREQUENCY
        where = "type_id = ?1 AND own_update_frequency = 0 AND update_frequency != ?2"
        changed = self._conn.execute(
            f"SELECT id, update_frequency FROM devices WHERE {where}", (type_id, new)
        ).fetchall()
        self._conn.execute(
            f"UPDATE devices SET update_frequency = ?2, last_change = ?3 WHERE {where}",
            (type_id, new, now),
        )
        self._conn.executemany(
            "INSERT INTO history (device_id, time, actor, action, detail) VALUES (?, ?, ?, ?, ?)",
            [
                (
                    row[0],
                    now,
                    actor,
                    "updated",
                    _json_text(
                        "detail",
                        {
                            "fields": ["update_frequency"],
                            "changes": {"update_frequency": {"from": row[1], "to": new}},
                            "device_type_id": type_id,
                        },
                    ),
                )
                for row in changed
            ],
        )

    def delete_device_type(self, type_id: int, *, now: float, actor: str) -> None:
        """Delete a device type; Conflict while devices use it."""
        self._delete_unless_used(
            "device_types",
            "device type",
            type_id,
            codec.device_type,
            [
                (
                    "SELECT count(*) FROM devices WHERE type_id = ?",
                    "device type {id} is used by {n} device(s)",
                )
            ],
            ("device_type_deleted", lambda t: {"device_type_id": type_id, "name": t.name}),
            now=now,
            actor=actor,
        )

    def locations_page(
        self,
        organization_ids: Sequence[int] | None,
        *,
        include_shared: bool = True,
        organization_id: int | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> tuple[int, list[Location]]:
        """(total, one page in ascending id) of the locations of `organization_ids` (None =
        every organization) plus, with `include_shared`, those of no organization;
        `organization_id` narrows to one organization."""
        _check_page(limit, offset)
        clauses: list[str] = []
        params: list[Any] = []
        if organization_ids is not None:
            ids = list(organization_ids)
            scoped = f"organization_id IN ({', '.join('?' for _ in ids)})" if ids else "0"
            if include_shared:
                scoped = f"({scoped} OR organization_id IS NULL)"
            clauses.append(scoped)
            params += ids
        if organization_id is not None:
            clauses.append("organization_id = ?")
            params.append(organization_id)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        return self._page("locations", where, params, codec.location, limit=limit, offset=offset)

    def location_would_cycle(self, location_id: int, parent_id: int | None) -> bool:
        """True if making `parent_id` the parent of `location_id` closes a loop (the
        location is the parent itself or one of its ancestors)."""
        if parent_id is None:
            return False
        # UNION (not UNION ALL) stops on rows already seen, so even a loop that somehow got
        # into the table cannot make this recurse forever.
        found = self._scalar(
            "WITH RECURSIVE up(id, parent_id) AS ("
            " SELECT id, parent_id FROM locations WHERE id = ?"
            " UNION SELECT l.id, l.parent_id FROM locations l JOIN up ON l.id = up.parent_id"
            ") SELECT 1 FROM up WHERE id = ? LIMIT 1",
            (parent_id, location_id),
        )
        return found is not None

    def update_location(
        self, location_id: int, *, now: float, actor: str, **fields: Any
    ) -> Location:
        """Partial update; NotFound, ValueError (unknown reference, parent cycle)."""
        allowed = {"name", "short_name", "latitude", "longitude", "parent_id", "organization_id"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown location field(s): {', '.join(sorted(unknown))}")
        if "name" in fields and (not isinstance(fields["name"], str) or not fields["name"]):
            raise ValueError("location name must be a non-empty string")
        for key in ("short_name", "latitude", "longitude"):
            if key in fields and fields[key] is not None and not isinstance(fields[key], str):
                raise ValueError(f"{key} must be a string or None")
        with self.transaction():
            current = self.get_location(location_id)
            if current is None:
                raise NotFound(f"location {location_id!r} not found")
            changes = {k: v for k, v in fields.items() if getattr(current, k) != v}
            if not changes:
                return current
            org = changes.get("organization_id")
            if org is not None and not self._exists("organizations", org):
                raise ValueError(f"organization_id {org} does not exist")
            parent = changes.get("parent_id")
            if parent is not None:
                if not self._exists("locations", parent):
                    raise ValueError(f"parent_id {parent} does not exist")
                if self.location_would_cycle(location_id, parent):
                    raise ValueError("parent_id would make the location its own ancestor")
            assignments = ", ".join(f"{k} = ?" for k in changes)
            self._conn.execute(
                f"UPDATE locations SET {assignments} WHERE id = ?", [*changes.values(), location_id]
            )
            self._audit(
                "location_updated",
                {"location_id": location_id, "fields": sorted(changes)},
                now,
                actor,
            )
            updated = self.get_location(location_id)
        assert updated is not None
        return updated

    def delete_location(self, location_id: int, *, now: float, actor: str) -> None:
        """Delete a location; Conflict while devices or child locations use it."""
        self._delete_unless_used(
            "locations",
            "location",
            location_id,
            codec.location,
            [
                (
                    "SELECT count(*) FROM devices WHERE location_id = ?",
                    "location {id} is used by {n} device(s)",
                ),
                (
                    "SELECT count(*) FROM locations WHERE parent_id = ?",
                    "location {id} has {n} child location(s)",
                ),
            ],
            ("location_deleted", lambda loc: {"location_id": location_id, "name": loc.name}),
            now=now,
            actor=actor,
        )

    def parameters_page(
        self, device_id: int, prefix: str = "", *, limit: int = 20, offset: int = 0
    ) -> tuple[int, list[Parameter]]:
        """(total, one page in path order) of the device's cached parameters under `prefix`."""
        _check_page(limit, offset)
        where, args = self._prefix_where(prefix)
        return self._page(
            "parameters",
            f" WHERE device_id = ?{where}",
            [device_id, *args],
            codec.parameter,
            order="path",
            limit=limit,
            offset=offset,
        )

    def tasks_page(
        self,
        device_id: int,
        *,
        states: Iterable[str] | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> tuple[int, list[Task]]:
        """(total, one page in ascending id = creation order) of the device's tasks,
        optionally only those in `states`."""
        _check_page(limit, offset)
        where = " WHERE device_id = ?"
        params: list[Any] = [device_id]
        if states is not None:
            wanted = list(states)
            unknown = [s for s in wanted if s not in TASK_STATES]
            if unknown:
                raise ValueError(f"unknown task state(s): {', '.join(map(repr, unknown))}")
            if not wanted:
                return 0, []
            where += f" AND state IN ({', '.join('?' for _ in wanted)})"
            params += wanted
        return self._page("tasks", where, params, codec.task, limit=limit, offset=offset)

    def count_tasks_by_state(self) -> dict[str, int]:
        """Every task state (zeros included) -> number of tasks in it, across all devices."""
        counts = dict.fromkeys(TASK_STATES, 0)
        for state, count in self._conn.execute(
            "SELECT state, count(*) FROM tasks GROUP BY state"
        ).fetchall():
            counts[state] = int(count)
        return counts

    def count_active_tokens(self) -> int:
        return int(self._scalar("SELECT count(*) FROM api_tokens WHERE revoked = 0"))

    # --- settings: desired CPE settings (the operator's intent; the CPE confirms it) ---------

    # Longest parameter name cwmp-1-2.xsd allows; values get the same cap as task arguments.
    _SETTING_PATH_MAX = 256
    _SETTING_VALUE_MAX = 65535
    _SETTING_ROOTS = ("Device.", "InternetGatewayDevice.")
    _UNSIGNED_INT_MAX = 2**32 - 1

    @staticmethod
    def infer_setting_type(value: str) -> str:
        """The xsd type of a desired value whose parameter the cache does not know yet."""
        if value.isascii() and value.isdigit() and int(value) <= Store._UNSIGNED_INT_MAX:
            return "xsd:unsignedInt"
        if value in ("true", "false"):
            return "xsd:boolean"
        return "xsd:string"

    def setting_type(self, device_id: int, path: str, value: str) -> str:
        """The one rule for a desired setting's type: the cached parameter's type when the
        CPE told us, else inferred from the value."""
        cached = self._scalar(
            "SELECT type FROM parameters WHERE device_id = ? AND path = ?", (device_id, path)
        )
        return cached if isinstance(cached, str) and cached else self.infer_setting_type(value)

    @classmethod
    def is_setting_path(cls, path: Any) -> bool:
        """A full TR-069 parameter name (root prefix, no trailing '.', no empty segment)."""
        if not isinstance(path, str) or not path.startswith(cls._SETTING_ROOTS):
            return False
        if len(path) > cls._SETTING_PATH_MAX or path.endswith("."):
            return False
        return all(
            seg and seg.isascii() and seg.isprintable() and " " not in seg
            for seg in path.split(".")
        )

    def _check_setting(self, path: Any, value: Any) -> tuple[str, str]:
        if not self.is_setting_path(path):
            raise ValueError(f"{path!r} is not a full TR-069 parameter name")
        if not isinstance(value, str):
            raise ValueError(f"the value of {path} must be a string, not {value!r}")
        if len(value) > self._SETTING_VALUE_MAX:
            raise ValueError(f"the value of {path} is longer than {self._SETTING_VALUE_MAX}")
        return path, value

    def _desired_rows(self, device_id: int, extra: str = "") -> list[DesiredSetting]:
        # The type is resolved against the cache at read time: a sync after the setting was
        # stored may have taught us the real type of the parameter.
        found = self._all(
            "SELECT d.path, d.value, coalesce(nullif(p.type, ''), d.type) AS type, "
            "d.confirmed, d.updated FROM desired_settings d LEFT JOIN parameters p "
            "ON p.device_id = d.device_id AND p.path = d.path "
            f"WHERE d.device_id = ?{extra} ORDER BY d.path",
            (device_id,),
        )
        return [
            DesiredSetting(
                path=r["path"],
                value=r["value"],
                type=r["type"],
                confirmed=bool(r["confirmed"]),
                updated=float(r["updated"]),
            )
            for r in found
        ]

    def set_desired_settings(
        self, device_id: int, values: Mapping[str, str], *, now: float, actor: str
    ) -> int:
        """Upsert desired settings; a new or changed value becomes unconfirmed (pending).
        Values equal to the stored ones are left alone. Returns how many changed."""
        now_f = _time("now", now)
        if not isinstance(values, Mapping):
            raise ValueError("desired settings must be a mapping of path -> value")
        wanted = dict(self._check_setting(p, v) for p, v in values.items())
        with self.transaction():
            self._require_device(device_id)
            current = {
                r["path"]: r["value"]
                for r in self._all(
                    "SELECT path, value FROM desired_settings WHERE device_id = ?", (device_id,)
                )
            }
            changed = sorted(p for p, v in wanted.items() if current.get(p) != v)
            self._conn.executemany(
                "INSERT INTO desired_settings (device_id, path, value, type, confirmed, updated) "
                "VALUES (?, ?, ?, ?, 0, ?) ON CONFLICT (device_id, path) DO UPDATE SET "
                "value = excluded.value, type = excluded.type, confirmed = 0, "
                "updated = excluded.updated",
                [
                    (device_id, p, wanted[p], self.setting_type(device_id, p, wanted[p]), now_f)
                    for p in changed
                ],
            )
            if changed:
                # Paths only: values may be secrets (Wi-Fi keys, passwords).
                self._insert_history(
                    device_id, "settings_changed", {"paths": changed}, now_f, actor
                )
        return len(changed)

    def desired_settings(self, device_id: int) -> list[DesiredSetting]:
        """Every desired setting of the device, by path."""
        return self._desired_rows(device_id)

    def unconfirmed_settings_count(self, device_id: int) -> int:
        return int(
            self._scalar(
                "SELECT count(*) FROM desired_settings WHERE device_id = ? AND confirmed = 0",
                (device_id,),
            )
        )

    def confirm_settings(self, device_id: int, paths: Iterable[str], *, now: float) -> None:
        """The CPE applied these paths (SetParameterValues status 0 or 1)."""
        now_f = _time("now", now)
        batch = [(now_f, device_id, p) for p in paths]
        with self.transaction():
            self._conn.executemany(
                "UPDATE desired_settings SET confirmed = 1, updated = ? "
                "WHERE device_id = ? AND path = ? AND confirmed = 0",
                batch,
            )

    def unconfirm_all_settings(self, device_id: int, *, now: float) -> None:
        """Make every stored setting pending again (reconf, re-apply after a factory reset)."""
        now_f = _time("now", now)
        with self.transaction():
            self._conn.execute(
                "UPDATE desired_settings SET confirmed = 0, updated = ? "
                "WHERE device_id = ? AND confirmed = 1",
                (now_f, device_id),
            )

    def remove_desired_settings(
        self, device_id: int, paths: Iterable[str], *, now: float, actor: str
    ) -> int:
        """Stop managing these paths (the CPE keeps its values); returns how many existed."""
        now_f = _time("now", now)
        wanted = sorted(set(paths))
        with self.transaction():
            self._require_device(device_id)
            removed = [
                p
                for p in wanted
                if self._conn.execute(
                    "DELETE FROM desired_settings WHERE device_id = ? AND path = ?",
                    (device_id, p),
                ).rowcount
            ]
            if removed:
                self._insert_history(
                    device_id, "settings_removed", {"paths": removed}, now_f, actor
                )
        return len(removed)

    def clear_desired_settings(self, device_id: int, *, now: float, actor: str) -> None:
        """Forget every desired setting of the device (factory reset wipes them)."""
        now_f = _time("now", now)
        with self.transaction():
            self._require_device(device_id)
            count = self._conn.execute(
                "DELETE FROM desired_settings WHERE device_id = ?", (device_id,)
            ).rowcount
            if count:
                self._insert_history(device_id, "settings_cleared", {"count": count}, now_f, actor)

    def set_last_configuration(self, device_id: int, *, now: float) -> None:
        """Settings were applied to the CPE now (no history entry: the task has one)."""
        now_f = _time("now", now)
        with self.transaction():
            self._conn.execute(
                "UPDATE devices SET last_configuration = ? WHERE id = ?", (now_f, device_id)
            )

    # --- bulk seeding (bench) -----------------------------------------------------------

    def bulk_seed_devices(
        self, devices: Iterable[Mapping[str, Any]], *, now: float, actor: str
    ) -> int:
        """Insert many devices in one transaction and return how many (benchmarks, imports).

        Each mapping holds ``create_device``'s fields (``serial_number``, ``name``,
        ``organization_id`` required) plus an optional ``status`` and ``status_change``,
        checked like ``create_device`` does (references once per distinct value). One
        ``bulk_seeded`` history entry stands for all of them: per-device rows would double
        the work for data no operator wrote. A serial already taken fails the whole batch.
        """
        now_f = _time("now", now)
        allowed = _CREATE_FIELDS | {"serial_number", "name", "organization_id", "status"}
        checked_refs: set[tuple[str, Any]] = set()
        batch: list[dict[str, Any]] = []
        for raw in devices:
            fields = dict(raw)
            status_change = _time("status_change", fields.pop("status_change", now_f))
            values: dict[str, Any] = {}
            for key, value in fields.items():
                if key not in allowed:
                    raise ValueError(f"unknown or read-only device field {key!r}")
                values[key] = _check_device_value(key, value)
            for key in ("serial_number", "name", "organization_id"):
                if values.get(key) is None:
                    raise ValueError(f"{key} is required")
            for key, table in _DEVICE_REFERENCES.items():
                ref = values.get(key)
                if ref is not None and (key, ref) not in checked_refs:
                    if not self._exists(table, ref):
                        raise ValueError(f"{key} {ref} does not exist")
                    checked_refs.add((key, ref))
            values.update(
                self._frequency_fields(values.get("update_frequency"), values.get("type_id"))
            )
            values.setdefault("operational_status", "provisioning")
            values.setdefault("status", DOWN)
            values.update(
                uuid=str(uuid.uuid4()),
                status_change=status_change,
                created=now_f,
                last_change=now_f,
            )
            batch.append(values)
        if not batch:
            return 0
        # One statement per distinct column set (callers usually send one shape).
        shapes: dict[tuple[str, ...], list[list[Any]]] = {}
        for values in batch:
            columns = tuple(sorted(values))
            shapes.setdefault(columns, []).append([values[c] for c in columns])
        with self.transaction():
            try:
                for columns, params in shapes.items():
                    self._conn.executemany(
                        f"INSERT INTO devices ({', '.join(columns)}) "
                        f"VALUES ({', '.join('?' for _ in columns)})",
                        params,
                    )
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"a seeded device conflicts with an existing one: {exc}") from exc
            self._insert_history(None, "bulk_seeded", {"count": len(batch)}, now_f, actor)
        return len(batch)

    def count_by_serial_prefix(self, prefix: str) -> tuple[int, int]:
        """(devices, provisioned devices) whose serial starts with ``prefix`` (bench checks)."""
        low, high = _prefix_bounds(prefix)
        where = "serial_number >= ?" + ("" if high is None else " AND serial_number < ?")
        params = [low] if high is None else [low, high]
        row = self._one(
            f"SELECT count(*) AS n, coalesce(sum(provisioned), 0) AS p FROM devices WHERE {where}",
            params,
        )
        assert row is not None
        return int(row["n"]), int(row["p"])

    # --- backups and firmware images ----------------------------------------------------
    # Firmware image pages/deletes, configuration backups (Upload RPC), and persistent server
    # secrets (the signed-URL key). Files on disk are acs.files' business: these methods only
    # keep the rows, and callers remove a file after its row is gone.

    def firmware_images_page(
        self, *, limit: int = 20, offset: int = 0
    ) -> tuple[int, list[FirmwareImage]]:
        """(total, one page in ascending id) of the firmware images."""
        _check_page(limit, offset)
        return self._page(
            "firmware_images", "", (), codec.firmware_image, limit=limit, offset=offset
        )

    def delete_firmware_image(self, image_id: int, *, now: float, actor: str) -> FirmwareImage:
        """Delete the row and return it (the caller removes the file); NotFound if unknown,
        Conflict while a pending or in-progress firmware_update task uses it. Devices naming
        it as their target lose it (ON DELETE SET NULL)."""
        return self._delete_unless_used(
            "firmware_images",
            "firmware image",
            image_id,
            codec.firmware_image,
            [
                (
                    "SELECT count(*) FROM tasks WHERE kind = 'firmware_update'"
                    " AND state IN ('pending', 'in_progress')"
                    " AND json_extract(args, '$.firmware_image') = ?",
                    "firmware image {id} is used by {n} pending or in-progress"
                    " firmware transfer(s)",
                )
            ],
            (
                "firmware_image_deleted",
                lambda f: {"firmware_image_id": image_id, "name": f.name, "version": f.version},
            ),
            now=now,
            actor=actor,
        )

    def create_backup(
        self,
        device_id: int,
        *,
        task_id: int | None,
        filename: str,
        size: int,
        sha256: str,
        now: float,
        actor: str = "acs",
    ) -> Backup:
        """Record a stored configuration backup of `device_id` (history: backup_stored)."""
        now_f = _time("now", now)
        if not isinstance(filename, str) or not filename:
            raise ValueError("backup filename must be a non-empty string")
        if type(size) is not int or size < 0:
            raise ValueError("backup size must be a non-negative int")
        if not isinstance(sha256, str) or not sha256:
            raise ValueError("backup sha256 must be a non-empty string")
        with self.transaction():
            self._require_device(device_id)
            row = self._one(
                "INSERT INTO backups (device_id, task_id, filename, size, sha256, created) "
                "VALUES (?, ?, ?, ?, ?, ?) RETURNING *",
                (device_id, task_id, filename, size, sha256, now_f),
            )
            assert row is not None
            backup = codec.backup(row)
            self._insert_history(
                device_id,
                "backup_stored",
                {"backup_id": backup.id, "task_id": task_id, "size": size, "sha256": sha256},
                now_f,
                actor,
            )
        return backup

    def get_backup(self, backup_id: int) -> Backup | None:
        row = self._one("SELECT * FROM backups WHERE id = ?", (backup_id,))
        return None if row is None else codec.backup(row)

    def list_backups(self, device_id: int) -> list[Backup]:
        """Every backup of the device, oldest first."""
        found = self._all("SELECT * FROM backups WHERE device_id = ? ORDER BY id", (device_id,))
        return [codec.backup(r) for r in found]

    def backups_page(
        self, device_id: int, *, limit: int = 20, offset: int = 0
    ) -> tuple[int, list[Backup]]:
        """(total, one page in ascending id) of the device's backups."""
        _check_page(limit, offset)
        return self._page(
            "backups",
            " WHERE device_id = ?",
            (device_id,),
            codec.backup,
            limit=limit,
            offset=offset,
        )

    def backups_for_task(self, task_id: int) -> list[Backup]:
        """The backups a task stored (normally zero or one), oldest first."""
        found = self._all("SELECT * FROM backups WHERE task_id = ? ORDER BY id", (task_id,))
        return [codec.backup(r) for r in found]

    def delete_backup(self, backup_id: int, *, now: float, actor: str = "acs") -> Backup:
        """Delete the row and return it (the caller removes the file); NotFound if unknown."""
        now_f = _time("now", now)
        with self.transaction():
            current = self.get_backup(backup_id)
            if current is None:
                raise NotFound(f"backup {backup_id!r} not found")
            self._conn.execute("DELETE FROM backups WHERE id = ?", (backup_id,))
            self._insert_history(
                current.device_id, "backup_deleted", {"backup_id": backup_id}, now_f, actor
            )
        return current

    def server_secret(self, name: str) -> bytes:
        """The persistent secret called `name`: 32 random bytes made and stored on first use,
        the same bytes on every later call and after a restart."""
        if not isinstance(name, str) or not name:
            raise ValueError("secret name must be a non-empty string")
        with self.transaction():
            self._conn.execute(
                "INSERT OR IGNORE INTO server_secrets (name, value) VALUES (?, ?)",
                (name, secrets.token_bytes(32)),
            )
            value = self._scalar("SELECT value FROM server_secrets WHERE name = ?", (name,))
        return bytes(value)

    # --- transfers ----------------------------------------------------------------------
    # What the task engine keeps about Download/Upload tasks between sessions: notes in the
    # task's result (acknowledged, expected firmware version), overdue and unchecked ones.

    def update_task_result(self, task_id: int, changes: dict[str, Any]) -> Task:
        """Merge `changes` into the task's result (any state; no history entry: the task's
        own transitions have one). NotFound if the task is gone."""
        if not isinstance(changes, dict):
            raise ValueError("task result changes must be a dict")
        with self.transaction():
            current = self.get_task(task_id)
            if current is None:
                raise NotFound(f"task {task_id!r} not found")
            merged = {**(current.result or {}), **changes}
            row = self._one(
                "UPDATE tasks SET result = ? WHERE id = ? RETURNING *",
                (_json_text("task result", merged), task_id),
            )
        assert row is not None
        return codec.task(row)

    def overdue_transfers(
        self, kinds: Iterable[str], *, started_before: float, device_id: int | None = None
    ) -> list[Task]:
        """In-progress tasks of `kinds` started before `started_before` (one device or all),
        oldest first."""
        before = _time("started_before", started_before)
        wanted = list(kinds)
        if not wanted:
            return []
        marks = ", ".join("?" for _ in wanted)
        params: list[Any] = [*wanted, before]
        one_device = ""
        if device_id is not None:
            one_device = "AND device_id = ? "
            params.append(device_id)
        found = self._all(
            f"SELECT * FROM tasks WHERE state = 'in_progress' AND kind IN ({marks}) "
            f"AND started < ? {one_device}ORDER BY id",
            params,
        )
        return [codec.task(r) for r in found]

    def firmware_version_checks(self, device_id: int) -> list[Task]:
        """Completed firmware_update tasks of the device whose installed version is still to
        be checked against the next Inform (result version_check = "pending")."""
        found = self._all(
            "SELECT * FROM tasks WHERE device_id = ? AND kind = 'firmware_update' "
            "AND state = 'done' AND json_extract(result, '$.version_check') = 'pending' "
            "ORDER BY id",
            (device_id,),
        )
        return [codec.task(r) for r in found]

    # --- effective settings -----------------------------------------------------------------
    # Effective settings = the device type's default_settings overlaid by the device's own
    # desired settings; the engine compares them with the parameter cache after every Inform.

    def effective_setting_rows(
        self, device_id: int
    ) -> list[tuple[str, DesiredSetting, Parameter | None]]:
        """(source, setting, cached parameter or None) per effective path, by path.

        source is "device" (a desired_settings row) or "type" (the device type's
        default_settings, for paths the device does not override; `confirmed` is True and
        `type` empty for those: the cache alone says whether they are applied). One query:
        this runs after every Inform. Type defaults that are not strings, numbers or
        booleans are skipped (the API never stores them).
        """
        found = self._all(
            "WITH eff(path, value, vtype, source, stype, confirmed, updated) AS ("
            " SELECT d.path, d.value, 'text', 'device', d.type, d.confirmed, d.updated"
            " FROM desired_settings d WHERE d.device_id = ?"
            " UNION ALL"
            " SELECT j.key, j.value, j.type, 'type', '', 1, 0.0"
            " FROM devices v JOIN device_types t ON t.id = v.type_id,"
            " json_each(t.default_settings) j"
            " WHERE v.id = ? AND j.type IN ('text', 'integer', 'real', 'true', 'false')"
            " AND NOT EXISTS (SELECT 1 FROM desired_settings o"
            "  WHERE o.device_id = ? AND o.path = j.key)"
            ") SELECT eff.*, p.value AS cvalue, p.type AS ctype, p.writable AS cwritable,"
            " p.updated AS cupdated, p.path AS cpath FROM eff LEFT JOIN parameters p"
            " ON p.device_id = ? AND p.path = eff.path ORDER BY eff.path",
            (device_id,) * 4,
        )
        out: list[tuple[str, DesiredSetting, Parameter | None]] = []
        for r in found:
            raw, vtype = r["value"], r["vtype"]
            value = vtype if vtype in ("true", "false") else str(raw)
            setting = DesiredSetting(
                path=r["path"],
                value=value,
                type=r["stype"] or "",
                confirmed=bool(r["confirmed"]),
                updated=float(r["updated"]),
            )
            cached = None
            if r["cpath"] is not None:
                cached = Parameter(
                    path=r["cpath"],
                    value=r["cvalue"],
                    type=r["ctype"],
                    writable=None if r["cwritable"] is None else bool(r["cwritable"]),
                    updated=float(r["cupdated"]),
                )
            out.append((r["source"], setting, cached))
        return out

    def refused_settings(self, device_id: int) -> dict[str, tuple[str, int | None, str | None]]:
        """path -> (value fingerprint, fault code, fault string) of the settings the CPE
        refused for good, as remembered by the device's latest finished settings push (a
        configuration_update or reconf whose result is recorded)."""
        found = self._all(
            "SELECT j.key AS path, json_extract(j.value, '$.fp') AS fp,"
            " json_extract(j.value, '$.code') AS code, json_extract(j.value, '$.string') AS msg"
            " FROM (SELECT result FROM tasks WHERE device_id = ? AND state IN ('done', 'failed')"
            " AND kind IN ('configuration_update', 'reconf') AND result IS NOT NULL"
            " ORDER BY id DESC LIMIT 1) t, json_each(t.result, '$.refused') j",
            (device_id,),
        )
        return {
            r["path"]: (
                str(r["fp"]),
                r["code"] if isinstance(r["code"], int) else None,
                r["msg"] if isinstance(r["msg"], str) else None,
            )
            for r in found
        }

    def adopt_cpe_settings(
        self, device_id: int, values: Mapping[str, str], *, now: float, actor: str
    ) -> int:
        """sync (ACS <- CPE): existing desired settings take the CPE's values and are
        confirmed. Paths the device has no desired setting for are ignored. Returns how many
        values changed (audited by path only: values may be secrets)."""
        now_f = _time("now", now)
        with self.transaction():
            current = {
                r["path"]: r["value"]
                for r in self._all(
                    "SELECT path, value FROM desired_settings WHERE device_id = ?", (device_id,)
                )
            }
            wanted = {p: v for p, v in values.items() if p in current}
            changed = sorted(p for p, v in wanted.items() if current[p] != v)
            self._conn.executemany(
                "UPDATE desired_settings SET value = ?, confirmed = 1, updated = ? "
                "WHERE device_id = ? AND path = ?",
                [(v, now_f, device_id, p) for p, v in wanted.items()],
            )
            if changed:
                self._insert_history(device_id, "settings_synced", {"paths": changed}, now_f, actor)
        return len(changed)

    # Scheduling: pending tasks whose scheduled_at falls in a window (acs.scheduler).

    def tasks_coming_due(self, *, after: float | None, until: float) -> list[tuple[int, int]]:
        """(task id, device id) of tasks whose device needs a connection request, in due order.

        ``after`` None (the first look since the appliance started): every pending task
        runnable at ``until`` and every in_progress one (its session died with the previous
        process). Otherwise the pending tasks that became runnable in (after, until]: their
        ``scheduled_at`` or retry time (``next_attempt_at``) fell in it, the other one passed.
        """
        until_f = _time("until", until)
        if after is None:
            found = self._conn.execute(
                "SELECT id, device_id FROM tasks WHERE state = 'in_progress'"
                " OR (state = 'pending' AND coalesce(scheduled_at, 0) <= ?1"
                " AND coalesce(next_attempt_at, 0) <= ?1)"
                " ORDER BY max(coalesce(scheduled_at, 0), coalesce(next_attempt_at, 0)), id",
                (until_f,),
            ).fetchall()
        else:
            # Two index range scans (tasks_scheduled, tasks_retry), not one scan of the table.
            found = self._conn.execute(
                "SELECT id, device_id, scheduled_at AS due FROM tasks WHERE state = 'pending'"
                " AND scheduled_at > ?2 AND scheduled_at <= ?1"
                " AND (next_attempt_at IS NULL OR next_attempt_at <= ?1)"
                " UNION ALL SELECT id, device_id, next_attempt_at FROM tasks"
                " WHERE state = 'pending' AND next_attempt_at > ?2 AND next_attempt_at <= ?1"
                " AND (scheduled_at IS NULL OR scheduled_at <= ?1)"
                " ORDER BY due, id",
                (until_f, _time("after", after)),
            ).fetchall()
        seen: set[int] = set()
        due: list[tuple[int, int]] = []
        for row in found:
            if int(row[0]) not in seen:
                seen.add(int(row[0]))
                due.append((int(row[0]), int(row[1])))
        return due

    # --- storage upkeep (acs.maintenance) -----------------------------------------------
    # Retention deletes at most `limit` rows per call, in one short transaction: the job
    # calls these every few seconds, so pruning never holds the reactor for long.

    def prune_history(self, *, before: float, limit: int) -> int:
        """Delete the history rows older than ``before`` among the ``limit`` oldest; returns
        how many went. Rows are appended as time goes, so the oldest are the first ids: a
        walk from the start of the primary key, with no time index on the busiest table."""
        return self._prune_oldest("history", "time", before, limit)

    def prune_transcripts(self, *, before: float, limit: int) -> int:
        """Delete debug transcripts of sessions started before ``before`` among the
        ``limit`` oldest; returns how many went."""
        return self._prune_oldest("cwmp_sessions", "started", before, limit)

    def _prune_oldest(self, table: str, column: str, before: float, limit: int) -> int:
        before_f = _time("before", before)
        _check_page(limit, 0)
        # `table` and `column` are always our literals, never caller input.
        with self.transaction():
            cur = self._conn.execute(
                f"DELETE FROM {table} WHERE id IN (SELECT id FROM"
                f" (SELECT id, {column} AS t FROM {table} ORDER BY id LIMIT ?) WHERE t < ?)",
                (limit, before_f),
            )
        return cur.rowcount

    def prune_finished_tasks(
        self, *, before: float, limit: int, after: tuple[float, int] | None = None
    ) -> tuple[int, tuple[float, int] | None]:
        """Delete done, failed and cancelled tasks finished before ``before``, looking at no
        more than ``limit`` of them (oldest first, from the position ``after``); returns (how
        many went, the position to go on from, None once the scan reached ``before``).

        Pending and in_progress tasks are never touched, and finished tasks that the engine or
        the API still read stay whatever their age: a done firmware_update whose version is
        still to be checked at the next Inform (``firmware_version_checks``); a device's
        newest firmware_update and newest configuration_update (the API's pending_settings
        shows ``firmware_update:failed`` and a failed settings push from them); and a
        device's newest settings push with a result, which remembers the settings the CPE
        refused (``refused_settings``). That is at most a few per device; the position lets
        a scan step over them instead of looking at them again on every call."""
        before_f = _time("before", before)
        _check_page(limit, 0)
        start, last_id = after if after is not None else (float("-inf"), 0)
        with self.transaction():
            found = self._conn.execute(
                "SELECT id, finished, NOT ("
                " (kind = 'firmware_update' AND state = 'done'"
                "  AND json_extract(result, '$.version_check') = 'pending')"
                " OR (kind IN ('firmware_update', 'configuration_update') AND id = (SELECT"
                "  max(k.id) FROM tasks k WHERE k.device_id = t.device_id AND k.kind = t.kind))"
                " OR (kind IN ('configuration_update', 'reconf') AND state IN ('done', 'failed')"
                "  AND result IS NOT NULL AND id = (SELECT max(l.id) FROM tasks l"
                "   WHERE l.device_id = t.device_id AND l.state IN ('done', 'failed')"
                "   AND l.kind IN ('configuration_update', 'reconf') AND l.result IS NOT NULL)))"
                " FROM tasks t INDEXED BY tasks_finished"
                " WHERE state IN ('done', 'failed', 'cancelled') AND finished < ?"
                " AND finished >= ? AND NOT (finished = ? AND id <= ?)"
                " ORDER BY finished, id LIMIT ?",
                (before_f, start, start, last_id, limit),
            ).fetchall()
            doomed = [row[0] for row in found if row[2]]
            if doomed:
                self._conn.execute(
                    f"DELETE FROM tasks WHERE id IN ({', '.join('?' for _ in doomed)})", doomed
                )
        if len(found) < limit:
            return len(doomed), None
        return len(doomed), (float(found[-1][1]), int(found[-1][0]))

    def cap_device_history(
        self, *, after_device: int, devices: int, keep: int, limit: int
    ) -> tuple[int, int]:
        """Trim the history of up to ``devices`` devices (in id order after
        ``after_device``) to their ``keep`` newest rows, deleting at most ``limit`` rows;
        returns (how many went, the device id to go on after: 0 once the last device was
        checked). Each check walks at most ``keep`` entries of ``history_by_device``."""
        for name, value in (("devices", devices), ("keep", keep), ("after_device", after_device)):
            if type(value) is not int or value < 0:
                raise ValueError(f"{name} must be a non-negative int, not {value!r}")
        _check_page(limit, 0)
        ids = [
            r[0]
            for r in self._conn.execute(
                "SELECT id FROM devices WHERE id > ? ORDER BY id LIMIT ?", (after_device, devices)
            )
        ]
        cursor = 0 if len(ids) < devices else (ids[-1] if ids else 0)
        deleted = 0
        with self.transaction():
            for device_id in ids:
                edge = self._scalar(
                    "SELECT id FROM history WHERE device_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
                    (device_id, keep),
                )
                if edge is None:
                    continue
                budget = limit - deleted
                deleted += self._conn.execute(
                    "DELETE FROM history WHERE id IN (SELECT id FROM history"
                    " WHERE device_id = ? AND id <= ? ORDER BY id LIMIT ?)",
                    (device_id, edge, budget),
                ).rowcount
                if deleted >= limit:
                    # Out of budget: this device may have more; the next call starts with it.
                    cursor = device_id - 1
                    break
        return deleted, cursor

    def probe_write(self) -> bool:
        """Write and delete ``PROBE_BYTES`` in one transaction: True (and the database no
        longer counts as full) if that worked, False if storage is still full. Not counted
        as a refused write: nobody's data was refused."""
        with self._lock:
            if self._depth:
                raise StoreError("probe_write inside a transaction")
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.execute(
                        "INSERT INTO storage_probe (data) VALUES (zeroblob(?))", (PROBE_BYTES,)
                    )
                    self._conn.execute("DELETE FROM storage_probe")
                    self._conn.execute("COMMIT")
                finally:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                if is_storage_full(exc):
                    return False
                raise
        self.health.wrote(DATABASE)
        return True

    def checkpoint(self) -> tuple[int, int]:
        """A passive WAL checkpoint (never waits for readers or writers): (WAL frames, frames
        copied into the database). Once every frame is copied, the next write starts the WAL
        over and SQLite cuts the file to ``JOURNAL_SIZE_LIMIT``."""
        with self._lock:
            row = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(row[1]), int(row[2])
