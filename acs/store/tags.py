"""Device tags: one set of short labels per device (``device_tags``), what the operator
groups devices by. The device lists filter on them (every tag given must be there); the
operation endpoint's ``tags`` and the tag routes are the same set.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from acs.store.checks import MAX_TAGS, check_tag, epoch, json_text
from acs.store.db import Database
from acs.store.devices import device_clauses
from acs.store.errors import Conflict
from acs.store.models import DeviceFilter


def _clean(tags: Iterable[Any]) -> list[str]:
    return list(dict.fromkeys(check_tag(t) for t in tags))


class Tags(Database):
    """The `device_tags` table (SQLite)."""

    def device_tags(self, device_id: int) -> list[str]:
        """The device's tags, in the order they were given."""
        rows = self._conn.execute(
            "SELECT tag FROM device_tags WHERE device_id = ? ORDER BY rowid", (device_id,)
        ).fetchall()
        return [r[0] for r in rows]

    def tags_by_device(self, device_ids: Iterable[int]) -> dict[int, list[str]]:
        """Tags of many devices (a list page), in order; devices without tags are absent."""
        ids = list(dict.fromkeys(device_ids))
        out: dict[int, list[str]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = self._conn.execute(
                "SELECT device_id, tag FROM device_tags WHERE device_id IN "
                f"({', '.join('?' for _ in chunk)}) ORDER BY device_id, rowid",
                chunk,
            ).fetchall()
            for device_id, tag in rows:
                out.setdefault(device_id, []).append(tag)
        return out

    def set_tags(
        self, device_id: int, tags: Iterable[Any], *, add: bool = False, now: float, actor: str
    ) -> list[str]:
        """Replace the device's tags (``add``: append these to them), keeping their order;
        the resulting tags. ValueError for a bad tag, Conflict past MAX_TAGS; a history
        entry names what was added and removed."""
        wanted = _clean(tags)
        now_f = epoch("now", now)
        with self.transaction():
            self._require_device(device_id)
            current = self.device_tags(device_id)
            result = list(dict.fromkeys([*current, *wanted])) if add else wanted
            if len(result) > MAX_TAGS:
                raise Conflict(f"a device has at most {MAX_TAGS} tags")
            if result == current:
                return current
            self._conn.execute("DELETE FROM device_tags WHERE device_id = ?", (device_id,))
            self._conn.executemany(
                "INSERT INTO device_tags (device_id, tag) VALUES (?, ?)",
                [(device_id, t) for t in result],
            )
            added = [t for t in result if t not in current]
            removed = [t for t in current if t not in result]
            if added or removed:  # else only their order changed
                detail = {"added": added, "removed": removed}
                self._insert_history(device_id, "tags_changed", detail, now_f, actor)
        return result

    def remove_tags(
        self, device_id: int, tags: Iterable[Any], *, now: float, actor: str
    ) -> list[str]:
        """Remove these tags (absent ones are no error); the resulting tags."""
        gone = set(_clean(tags))
        with self.transaction():
            current = self.device_tags(device_id)
            return self.set_tags(
                device_id, [t for t in current if t not in gone], now=now, actor=actor
            )

    def tag_devices(
        self,
        filters: DeviceFilter,
        tags: Iterable[Any],
        *,
        remove: bool = False,
        now: float,
        actor: str,
    ) -> dict[str, int]:
        """Add (or ``remove``) tags on every device the filters select, in one transaction:
        ``matched`` devices, ``changed`` ones, and ``at_limit`` ones that already had
        MAX_TAGS tags and got none added. One history entry per device and tag changed."""
        wanted = _clean(tags)
        now_f = epoch("now", now)
        clauses, params = device_clauses(filters)
        where = " AND ".join(clauses) if clauses else "TRUE"
        selected = f"SELECT id FROM devices WHERE {where}"
        changed: set[int] = set()
        full = 0
        with self.transaction():
            matched = int(self._scalar(f"SELECT count(*) FROM ({selected}) AS selected", params))
            for tag in wanted:
                if remove:
                    hit = f"id IN (SELECT device_id FROM device_tags WHERE tag = ?) AND {where}"
                    args = [tag, *params]
                else:
                    hit = (
                        f"id NOT IN (SELECT device_id FROM device_tags WHERE tag = ?) AND {where}"
                        " AND (SELECT count(*) FROM device_tags t WHERE t.device_id = devices.id)"
                        " < ?"
                    )
                    args = [tag, *params, MAX_TAGS]
                ids = [
                    r[0] for r in self._conn.execute(f"SELECT id FROM devices WHERE {hit}", args)
                ]
                if remove:
                    self._conn.executemany(
                        "DELETE FROM device_tags WHERE device_id = ? AND tag = ?",
                        [(i, tag) for i in ids],
                    )
                else:
                    self._conn.executemany(
                        "INSERT INTO device_tags (device_id, tag) VALUES (?, ?)",
                        [(i, tag) for i in ids],
                    )
                change = (
                    {"added": [], "removed": [tag]} if remove else {"added": [tag], "removed": []}
                )
                text = json_text("detail", change)
                self._conn.executemany(
                    "INSERT INTO history (device_id, time, actor, action, detail) "
                    "VALUES (?, ?, ?, 'tags_changed', ?)",
                    [(i, now_f, actor, text) for i in ids],
                )
                changed.update(ids)
            if not remove and wanted:
                full = int(
                    self._scalar(
                        f"SELECT count(*) FROM devices WHERE {where} AND (SELECT count(*) FROM "
                        "device_tags t WHERE t.device_id = devices.id) >= ? AND id NOT IN "
                        f"(SELECT device_id FROM device_tags WHERE tag IN "
                        f"({', '.join('?' for _ in wanted)}) GROUP BY device_id "
                        "HAVING count(*) = ?)",
                        [*params, MAX_TAGS, *wanted, len(wanted)],
                    )
                )
        return {"matched": matched, "changed": len(changed), "at_limit": full}
