"""The catalog devices refer to: organizations, device types and locations (spec section 7).
Their writes are audited in the global log (device None); a delete is refused while
devices (or child locations) still use the row. The `*_by_id` lookups serve a page of
devices: one query per kind of related row instead of one per device.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from acs.store import codec
from acs.store.checks import (
    check_page,
    json_text,
)
from acs.store.db import Database
from acs.store.errors import Conflict, NotFound
from acs.store.models import (
    CONNECTION_REQUEST_METHODS,
    DEFAULT_UPDATE_FREQUENCY,
    DeviceType,
    Location,
    Organization,
)


class Catalog(Database):
    """The `organizations`, `device_types` and `locations` tables (SQLite)."""

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

    def organization_named(self, name: str) -> Organization | None:
        """The organization of this exact name (names are unique)."""
        row = self._one("SELECT * FROM organizations WHERE name = ?", (name,))
        return None if row is None else codec.organization(row)

    def organizations_by_id(self, ids: Iterable[int]) -> dict[int, Organization]:
        return {r["id"]: codec.organization(r) for r in self._rows_by_id("organizations", ids)}

    def organizations_page(
        self, organization_ids: Sequence[int] | None, *, limit: int = 20, offset: int = 0
    ) -> tuple[int, list[Organization]]:
        """(total, one page in ascending id) of the organizations in `organization_ids`
        (None = every organization)."""
        check_page(limit, offset)
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
            row = self._insert("organizations", "name, code", (name, code))
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
        connection_request_order: Sequence[str] | None = None,
        now: float,
        actor: str,
    ) -> DeviceType:
        """Create; the audit log records who did."""
        if not isinstance(name, str) or not name:
            raise ValueError("device type name must be a non-empty string")
        if update_frequency is not None and (
            type(update_frequency) is not int or update_frequency <= 0
        ):
            raise ValueError("update_frequency must be a positive int")
        settings = {} if default_settings is None else default_settings
        if not isinstance(settings, dict):
            raise ValueError("default_settings must be a dict")
        order = _method_order(connection_request_order)
        with self.transaction():
            row = self._insert(
                "device_types",
                "name, short_name, model, manufacturer, product_class, default_settings, "
                "update_frequency, connection_request_order",
                (
                    name,
                    short_name,
                    model,
                    manufacturer,
                    product_class,
                    json_text("default_settings", settings),
                    update_frequency,
                    _order_text(order),
                ),
            )
            created = codec.device_type(row)
            self._audit(
                "device_type_created", {"device_type_id": created.id, "name": name}, now, actor
            )
        return created

    def get_device_type(self, type_id: int) -> DeviceType | None:
        row = self._one("SELECT * FROM device_types WHERE id = ?", (type_id,))
        return None if row is None else codec.device_type(row)

    def device_types_named(self, name: str) -> list[DeviceType]:
        """Device types of this exact name (names need not be unique), oldest first."""
        rows = self._all("SELECT * FROM device_types WHERE name = ? ORDER BY id", (name,))
        return [codec.device_type(r) for r in rows]

    def device_types_by_id(self, ids: Iterable[int]) -> dict[int, DeviceType]:
        return {r["id"]: codec.device_type(r) for r in self._rows_by_id("device_types", ids)}

    def find_device_type(self, manufacturer: str, product_class: str) -> int | None:
        """The type matching what a CPE reports (oldest first), for auto-registration."""
        found = self._scalar(
            "SELECT id FROM device_types WHERE manufacturer = ? AND product_class = ? "
            "ORDER BY id LIMIT 1",
            (manufacturer, product_class),
        )
        return None if found is None else int(found)

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

    def device_types_page(
        self, *, limit: int = 20, offset: int = 0
    ) -> tuple[int, list[DeviceType]]:
        check_page(limit, offset)
        return self._page("device_types", "", (), codec.device_type, limit=limit, offset=offset)

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
            "connection_request_order",
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
        if "connection_request_order" in fields:
            fields["connection_request_order"] = _method_order(fields["connection_request_order"])
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
                json_text("default_settings", v)
                if k == "default_settings"
                else _order_text(v)
                if k == "connection_request_order"
                else v
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
                    json_text(
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

    def create_location(
        self,
        *,
        name: str,
        organization_id: int | None,
        short_name: str | None = None,
        latitude: str | None = None,
        longitude: str | None = None,
        parent_id: int | None = None,
        now: float,
        actor: str,
    ) -> Location:
        """Create; the audit log records who did."""
        if not isinstance(name, str) or not name:
            raise ValueError("location name must be a non-empty string")
        with self.transaction():
            if organization_id is not None and not self._exists("organizations", organization_id):
                raise ValueError(f"organization_id {organization_id} does not exist")
            if parent_id is not None and not self._exists("locations", parent_id):
                raise ValueError(f"parent_id {parent_id} does not exist")
            row = self._insert(
                "locations",
                "name, short_name, latitude, longitude, parent_id, organization_id",
                (name, short_name, latitude, longitude, parent_id, organization_id),
            )
            created = codec.location(row)
            detail = {"location_id": created.id, "name": name, "organization_id": organization_id}
            self._audit("location_created", detail, now, actor)
        return created

    def get_location(self, location_id: int) -> Location | None:
        row = self._one("SELECT * FROM locations WHERE id = ?", (location_id,))
        return None if row is None else codec.location(row)

    def locations_by_id(self, ids: Iterable[int]) -> dict[int, Location]:
        return {r["id"]: codec.location(r) for r in self._rows_by_id("locations", ids)}

    def find_location(self, organization_id: int | None, name: str) -> Location | None:
        row = self._one(
            "SELECT * FROM locations WHERE organization_id IS ? AND name = ? ORDER BY id LIMIT 1",
            (organization_id, name),
        )
        return None if row is None else codec.location(row)

    def location_named(self, organization_id: int, name: str, *, now: float, actor: str) -> int:
        """The id of the location called ``name`` in the organization, created if absent."""
        with self.transaction():
            found = self.find_location(organization_id, name)
            if found is not None:
                return found.id
            return self.create_location(
                name=name, organization_id=organization_id, now=now, actor=actor
            ).id

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
        check_page(limit, offset)
        clauses: list[str] = []
        params: list[Any] = []
        if organization_ids is not None:
            ids = list(organization_ids)
            scoped = f"organization_id IN ({', '.join('?' for _ in ids)})" if ids else "FALSE"
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


def _method_order(order: Sequence[str] | None) -> tuple[str, ...] | None:
    """``order`` as stored: None, or distinct CONNECTION_REQUEST_METHODS (ValueError)."""
    if order is None:
        return None
    if isinstance(order, str) or not all(isinstance(m, str) for m in order):
        raise ValueError("connection_request_order must be a list of method names")
    methods = tuple(order)
    unknown = [m for m in methods if m not in CONNECTION_REQUEST_METHODS]
    if unknown or not methods or len(set(methods)) != len(methods):
        raise ValueError(
            "connection_request_order must name each of "
            f"{', '.join(CONNECTION_REQUEST_METHODS)} at most once, and at least one"
        )
    return methods


def _order_text(order: tuple[str, ...] | None) -> str | None:
    return None if order is None else json.dumps(list(order))
