"""Devices: registration, identity and serials, updates, Up/Down, every Inform's record, the
operational record, and bulk seeding (bench, imports).

The hot paths (`record_inform`, `find_device_by_serial`, `devices_due_down`) are a couple
of indexed statements each: they run thousands of times a second on large fleets.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from acs.store import codec
from acs.store.checks import (
    CREATE_FIELDS,
    DEVICE_REFERENCES,
    SECRET_FIELDS,
    UPDATE_FIELDS,
    check_device_value,
    check_page,
    check_tag,
    epoch,
    json_text,
    normalise_status,
    prefix_bounds,
)
from acs.store.db import Database
from acs.store.errors import Conflict, NotFound
from acs.store.models import (
    DEFAULT_UPDATE_FREQUENCY,
    DOWN,
    OPERATIONAL_STATUSES,
    UP,
    Device,
    DeviceFilter,
    DeviceOrder,
    InformRecord,
    OperationalRecord,
    ParameterMatch,
)

BOOTSTRAP = "0 BOOTSTRAP"


def device_clauses(filters: DeviceFilter | None) -> tuple[list[str], list[Any]]:
    """The list filters as AND-ed SQL clauses and their parameters."""
    if filters is None:
        return [], []
    clauses: list[str] = []
    params: list[Any] = []
    if filters.organization_ids is not None:
        orgs = list(filters.organization_ids)
        if not orgs:
            return ["FALSE"], []
        clauses.append(f"organization_id IN ({', '.join('?' for _ in orgs)})")
        params += orgs
    if filters.ids is not None:
        ids = list(dict.fromkeys(filters.ids))
        if not ids:
            return ["FALSE"], []
        clauses.append(f"devices.id IN ({', '.join('?' for _ in ids)})")
        params += ids
    if filters.type_id is not None:
        clauses.append("type_id = ?")
        params.append(filters.type_id)
    if filters.status is not None:
        clauses.append("status = ?")
        params.append(normalise_status(filters.status))
    if filters.status_change_from is not None:
        clauses.append("status_change >= ?")
        params.append(epoch("status_change_from", filters.status_change_from))
    for column in ("software_version", "hardware_version", "product_class", "manufacturer"):
        value = getattr(filters, column)
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if filters.text is not None:
        # ASCII case-insensitive substring (SQLite's lower() folds ASCII only).
        clauses.append(
            "("
            + " OR ".join(f"instr(lower(coalesce({c}, '')), ?) > 0" for c in _TEXT_COLUMNS)
            + ")"
        )
        params += [filters.text.lower()] * len(_TEXT_COLUMNS)
    for tag in dict.fromkeys(filters.tags):  # each on the (tag, device_id) index
        clauses.append("id IN (SELECT device_id FROM device_tags WHERE tag = ?)")
        params.append(check_tag(tag))
    for match in filters.parameters:
        sql, args = _match_sql(match)
        clauses.append(f"id IN (SELECT device_id FROM parameters WHERE {sql})")
        params += args
    return clauses, params


def _match_sql(match: ParameterMatch, table: str = "") -> tuple[str, list[Any]]:
    """A stored-tree filter on the (path, value) index: one seek to the path, then the
    value or its prefix range."""
    t = f"{table}." if table else ""
    if not match.prefix:
        return f"{t}path = ? AND {t}value = ?", [match.path, match.value]
    low, high = prefix_bounds(match.value)
    if high is None:
        return f"{t}path = ? AND {t}value >= ?", [match.path, low]
    return f"{t}path = ? AND {t}value >= ? AND {t}value < ?", [match.path, low, high]


def _search(filters: DeviceFilter | None) -> tuple[str, list[Any]] | None:
    """The ``FROM ... WHERE`` of a list with tag or stored-tree filters, driven by one of
    their indexes (``d.device_id`` in id order; an exact value's, else a tag's, else a
    prefix's, which needs a sort): the others are seeks on their table's primary key for
    each candidate, and the device row is joined only for the other filters. Counting
    20,000 tagged devices this way reads the tag index alone; None without such filters."""
    if filters is None or not (filters.tags or filters.parameters):
        return None
    tags = [check_tag(t) for t in dict.fromkeys(filters.tags)]
    exact = [m for m in filters.parameters if not m.prefix]
    prefixes = [m for m in filters.parameters if m.prefix]
    probes: list[str] = []
    params: list[Any] = []
    if exact or not tags:
        driver, *rest = exact + prefixes
        rest_exact = [m for m in rest if not m.prefix]
        rest_prefix = [m for m in rest if m.prefix]
        condition, driver_params = _match_sql(driver, "d")
        source = "parameters d"
    else:
        tag, *tags = tags
        rest_exact, rest_prefix = exact, prefixes
        condition, driver_params = "d.tag = ?", [tag]
        source = "device_tags d"
    for tag in tags:
        probes.append(
            "EXISTS (SELECT 1 FROM device_tags t WHERE t.device_id = d.device_id AND t.tag = ?)"
        )
        params.append(tag)
    for match in (*rest_exact, *rest_prefix):
        sql, args = _match_sql(match, "p")
        probes.append(
            f"EXISTS (SELECT 1 FROM parameters p WHERE p.device_id = d.device_id AND {sql})"
        )
        params += args
    device, device_params = device_clauses(replace(filters, tags=(), parameters=()))
    join = " JOIN devices ON devices.id = d.device_id" if device else ""
    where = " AND ".join([condition, *device, *probes])
    return f"FROM {source}{join} WHERE {where}", [*driver_params, *device_params, *params]


# What the ``text`` filter searches.
_TEXT_COLUMNS = ("serial_number", "name", "unique_identifier", "description")


def _device_where(filters: DeviceFilter | None) -> tuple[str, list[Any]]:
    clauses, params = device_clauses(filters)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _offset_index(filters: DeviceFilter | None) -> str:
    """The index hint for skipping `offset` matching devices in id order.

    One equality filter (one organization, a type or a status) has its own index, whose
    entries for one key are in id order: SQLite picks it. (Tag and stored-tree filters take
    another path: `_search`.) Anything else (no filter, a
    status_change range, several organizations, combined filters) would scan whole device
    rows or sort; the narrow id-ordered devices_list holds the columns most filters name.
    """
    if filters is not None and filters == DeviceFilter(
        organization_ids=filters.organization_ids, type_id=filters.type_id, status=filters.status
    ):
        orgs = filters.organization_ids
        single = [
            orgs is not None and len(orgs) == 1,
            filters.type_id is not None,
            filters.status is not None,
        ]
        if sum(single) == 1 and (orgs is None or len(orgs) <= 1):
            return ""
    return " INDEXED BY devices_list"


# record_inform's UPDATE. Every index over a column in the SET list is rewritten even when
# the value stays the same, so the status columns (four indexes) are set only when the
# device was not Up already: an Up device's Inform writes about a third fewer pages.
_INFORM_SET = """
    UPDATE devices SET
        manufacturer = ?, oui = ?, product_class = ?, unique_identifier = ?,
        software_version = coalesce(?, software_version),
        hardware_version = coalesce(?, hardware_version),
        connection_request_url = coalesce(nullif(?, ''), connection_request_url),
        data_model_root = coalesce(?, data_model_root),
        address = coalesce(?, address),
        last_connection = ?, last_contact = ?,
        provisioned = CASE WHEN ? THEN 0 ELSE provisioned END"""
_INFORM_UP = _INFORM_SET + " WHERE id = ? AND status = 'Up' RETURNING *"
# The same, taking the device's session lease for a node (as Nodes.take_device_session
# does when it is free, expired or already the node's).
_INFORM_UP_LEASED = (
    _INFORM_SET + ", session_node = ?, session_until = ? WHERE id = ? AND status = 'Up'"
    " AND (session_node IS NULL OR session_node = ? OR session_until <= ?) RETURNING *"
)
_INFORM_NOW_UP = _INFORM_SET + ", status = 'Up', status_change = ? WHERE id = ? RETURNING *"


class Devices(Database):
    """The `devices` and `operational_records` tables (SQLite)."""

    def _clean_device_fields(
        self, fields: dict[str, Any], allowed: frozenset[str]
    ) -> dict[str, Any]:
        clean: dict[str, Any] = {}
        for key, value in fields.items():
            if key not in allowed:
                raise ValueError(f"unknown or read-only device field {key!r}")
            clean[key] = check_device_value(key, value)
        for key, table in DEVICE_REFERENCES.items():
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
        # One lookup per column, not an OR of both: see migration 23.
        row = self._one(
            f"SELECT id, serial_number, serial_number_alt FROM devices "
            f"WHERE serial_number IN ({marks}) AND id IS NOT ? "
            f"UNION ALL SELECT id, serial_number, serial_number_alt FROM devices "
            f"WHERE serial_number_alt IN ({marks}) AND id IS NOT ? LIMIT 1",
            (*wanted, exclude_id, *wanted, exclude_id),
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
        now_f = epoch("now", now)
        values = self._clean_device_fields(
            {
                **fields,
                "serial_number": serial_number,
                "name": name,
                "organization_id": organization_id,
            },
            CREATE_FIELDS | {"serial_number", "name", "organization_id"},
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
        with self.transaction():
            # The unique indexes and the serial triggers enforce the rule; the lookup that
            # names the device in the way only runs once they refused (auto-registration
            # of a whole boot storm must not pay it for every new CPE).
            try:
                row = self._insert("devices", ", ".join(values), list(values.values()))
            except self.IntegrityError as exc:
                self._check_serials(values["serial_number"], values.get("serial_number_alt"), None)
                raise Conflict(f"device conflicts with an existing one: {exc}") from exc
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
        search = _search(filters)
        if search is not None:
            return int(self._scalar(f"SELECT count(*) {search[0]}", search[1]))
        where, params = _device_where(filters)
        return int(self._scalar(f"SELECT count(*) FROM devices{where}", params))

    def device_overview(
        self, organization_ids: tuple[int, ...] | None, *, top: int, recent: int
    ) -> dict[str, Any]:
        """The fleet at a glance, within ``organization_ids`` (None: all): the total, the
        count by status, the ``top`` commonest product classes and software versions (a
        NULL one is ``None``) with their counts, and the ``recent`` devices that went Down
        last after having been
        in contact (id, serial, name, status_change). Each a GROUP BY over an indexed column."""
        check_page(top, 0)
        check_page(recent, 0)
        where, params = _device_where(DeviceFilter(organization_ids=organization_ids))
        with self.transaction():
            by_status = dict(
                self._conn.execute(
                    f"SELECT status, count(*) FROM devices{where} GROUP BY status", params
                ).fetchall()
            )
            groups = {
                column: [
                    (r[0], int(r[1]))
                    for r in self._conn.execute(
                        f"SELECT {column}, count(*) AS n FROM devices{where} GROUP BY {column}"
                        " ORDER BY n DESC, 1 LIMIT ?",
                        [*params, top],
                    )
                ]
                for column in ("product_class", "software_version")
            }
            # Down after a contact: a registered device that never informed is no outage.
            down_where = (where + " AND" if where else " WHERE") + (
                " status = ? AND last_contact IS NOT NULL"
            )
            down = self._all(
                "SELECT id, serial_number, name, status_change FROM devices"
                f"{down_where} ORDER BY status_change DESC, id DESC LIMIT ?",
                [*params, DOWN, recent],
            )
        return {
            "total": sum(by_status.values()),
            "by_status": {status: int(n) for status, n in by_status.items()},
            **groups,
            "recently_down": [dict(r) for r in down],
        }

    def devices_page(
        self,
        filters: DeviceFilter | None = None,
        *,
        limit: int = 20,
        offset: int = 0,
        order: DeviceOrder | None = None,
    ) -> tuple[int, list[Device]]:
        """(total matching, one page of devices) for list endpoints: in ascending id order
        unless ``order`` says otherwise."""
        check_page(limit, offset)
        if order is not None and order != DeviceOrder():
            return self._ordered_page(filters, order, limit, offset)
        search = _search(filters)
        if search is not None:
            return self._searched_page(search, limit, offset)
        clauses, params = device_clauses(filters)
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

    def _ordered_page(
        self, filters: DeviceFilter | None, order: DeviceOrder, limit: int, offset: int
    ) -> tuple[int, list[Device]]:
        """A page sorted on a device column, then by id; a NULL sorts last both ways. The
        matching rows are sorted for every page (no index covers each column and filter):
        the price of an operator's click, not of the CWMP path."""
        search = _search(filters)
        if search is not None:
            clauses, params = [f"devices.id IN (SELECT d.device_id {search[0]})"], search[1]
        else:
            clauses, params = device_clauses(filters)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        way = "DESC" if order.descending else "ASC"
        with self.transaction():
            total = int(self._scalar(f"SELECT count(*) FROM devices{where}", params))
            if offset >= total or limit == 0:
                return total, []
            found = self._all(
                f"SELECT * FROM devices{where} ORDER BY {order.column} {way} NULLS LAST, "
                f"id {way} LIMIT ? OFFSET ?",
                [*params, limit, offset],
            )
        return total, [codec.device(r) for r in found]

    def devices_after(
        self, filters: DeviceFilter | None, after_id: int, *, limit: int
    ) -> list[Device]:
        """The next ``limit`` devices the filters select with ids above ``after_id``, in id
        order: a walk over any number of devices that rows added or removed meanwhile
        cannot make skip or repeat one (an export)."""
        check_page(limit, 0)
        clauses, params = device_clauses(filters)
        where = " AND ".join(["id > ?", *clauses])
        rows = self._all(
            f"SELECT * FROM devices WHERE {where} ORDER BY id LIMIT ?", [after_id, *params, limit]
        )
        return [codec.device(r) for r in rows]

    def _searched_page(
        self, search: tuple[str, list[Any]], limit: int, offset: int
    ) -> tuple[int, list[Device]]:
        source, params = search
        with self.transaction():
            total = int(self._scalar(f"SELECT count(*) {source}", params))
            if offset >= total or limit == 0:
                return total, []
            ids = [
                r[0]
                for r in self._conn.execute(
                    f"SELECT d.device_id {source} ORDER BY d.device_id LIMIT ? OFFSET ?",
                    [*params, limit, offset],
                )
            ]
            found = self._all(
                f"SELECT * FROM devices WHERE id IN ({', '.join('?' for _ in ids)}) ORDER BY id",
                ids,
            )
        return total, [codec.device(r) for r in found]

    def update_device(self, device_id: int, *, now: float, actor: str, **fields: Any) -> Device:
        """Partial update. Only values that differ are written and recorded; a `status` change
        is recorded as a transition like `set_status`."""
        now_f = epoch("now", now)
        clean = self._clean_device_fields(fields, UPDATE_FIELDS)
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
            except self.IntegrityError as exc:
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
                            if k not in SECRET_FIELDS
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
        now_f = epoch("now", now)
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
        new = normalise_status(status)
        now_f = epoch("now", now)
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
        return self.record_inform_leased(device_id, info, now=now, lease=None)[0]

    def record_inform_leased(
        self,
        device_id: int,
        info: InformRecord,
        *,
        now: float,
        lease: tuple[int, float] | None,
    ) -> tuple[Device, bool]:
        """`record_inform`, taking the device's session lease ``(node_id, until)`` in the
        same statement when the device is Up and its lease free, expired or already the
        node's (nearly every Inform): (the device, whether the lease was taken). Else the
        caller takes it, or learns who holds it (`Nodes.take_device_session`)."""
        now_f = epoch("now", now)
        if info.product_class:
            unique = f"{info.oui}-{info.product_class}-{info.serial_number}"
        else:
            unique = f"{info.oui}-{info.serial_number}"
        events = list(info.event_codes)
        bootstrap = BOOTSTRAP in events
        with self._atomic():
            params = [
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
                bootstrap,
            ]
            # Nearly every Inform is an Up device's: one statement (on PostgreSQL one round
            # trip) when it is; its status read only when it is not. The transaction holds
            # the write lock, so the status cannot change between the two.
            row = None
            if lease is not None:
                node_id, until = lease[0], epoch("until", lease[1])
                row = self._one(
                    _INFORM_UP_LEASED, (*params, node_id, until, device_id, node_id, now_f)
                )
            leased = row is not None
            if row is None:
                row = self._one(_INFORM_UP, (*params, device_id))
            old = UP
            if row is None:
                old = self._scalar("SELECT status FROM devices WHERE id = ?", (device_id,))
                if old is None:
                    raise NotFound(f"device {device_id!r} not found")
                row = self._one(_INFORM_NOW_UP, (*params, now_f, device_id))
                assert row is not None
            history = "INSERT INTO history (device_id, time, actor, action, detail) VALUES "
            inform = codec.dumps({"events": events})
            if old == UP:
                self._conn.execute(
                    history + "(?, ?, 'cpe', 'inform', ?)", (device_id, now_f, inform)
                )
            else:
                status = codec.dumps({"from": old, "to": UP, "reason": "inform"})
                self._conn.execute(
                    history + "(?, ?, 'cpe', 'status', ?), (?, ?, 'cpe', 'inform', ?)",
                    (device_id, now_f, status, device_id, now_f, inform),
                )
            if bootstrap:
                # A factory-fresh CPE: whatever we cached about its tree is stale.
                self._conn.execute("DELETE FROM parameters WHERE device_id = ?", (device_id,))
        return codec.device(row), leased

    def devices_due_down(self, now: float) -> list[int]:
        """Up devices whose liveness window (2 x update_frequency + 60 s after the last
        contact) ended strictly before `now`."""
        cur = self._conn.execute(
            "SELECT id FROM devices WHERE status = 'Up' AND liveness_deadline < ?", (now,)
        )
        # Sorted here: an ORDER BY id would add a temp B-tree sort to the indexed scan.
        return sorted(r[0] for r in cur.fetchall())

    def set_last_configuration(self, device_id: int, *, now: float) -> None:
        """Settings were applied to the CPE now (no history entry: the task has one)."""
        now_f = epoch("now", now)
        with self.transaction():
            self._conn.execute(
                "UPDATE devices SET last_configuration = ? WHERE id = ?", (now_f, device_id)
            )

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
        now_f = epoch("now", now)
        if operational_status not in OPERATIONAL_STATUSES:
            raise ValueError(f"operational_status must be one of {', '.join(OPERATIONAL_STATUSES)}")
        if not isinstance(data, dict) or not isinstance(history, list):
            raise ValueError("data must be a dict and history a list")
        data_text = json_text("data", data)
        history_text = json_text("history", history)
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
        now_f = epoch("now", now)
        allowed = CREATE_FIELDS | {"serial_number", "name", "organization_id", "status"}
        checked_refs: set[tuple[str, Any]] = set()
        batch: list[dict[str, Any]] = []
        for raw in devices:
            fields = dict(raw)
            status_change = epoch("status_change", fields.pop("status_change", now_f))
            values: dict[str, Any] = {}
            for key, value in fields.items():
                if key not in allowed:
                    raise ValueError(f"unknown or read-only device field {key!r}")
                values[key] = check_device_value(key, value)
            for key in ("serial_number", "name", "organization_id"):
                if values.get(key) is None:
                    raise ValueError(f"{key} is required")
            for key, table in DEVICE_REFERENCES.items():
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
            except self.IntegrityError as exc:
                raise Conflict(f"a seeded device conflicts with an existing one: {exc}") from exc
            self._insert_history(None, "bulk_seeded", {"count": len(batch)}, now_f, actor)
        return len(batch)

    def count_by_serial_prefix(self, prefix: str) -> tuple[int, int]:
        """(devices, provisioned devices) whose serial starts with ``prefix`` (bench checks)."""
        low, high = prefix_bounds(prefix)
        where = "serial_number >= ?" + ("" if high is None else " AND serial_number < ?")
        params = [low] if high is None else [low, high]
        row = self._one(
            f"SELECT count(*) AS n, coalesce(sum(provisioned), 0) AS p FROM devices WHERE {where}",
            params,
        )
        assert row is not None
        return int(row["n"]), int(row["p"])
