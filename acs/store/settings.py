"""Settings: the parameter cache (what the CPE last reported) and the desired settings (the
operator's intent, confirmed by the CPE), and the effective settings the engine compares
with the cache after every Inform: the device type's default_settings overlaid by the
device's own desired settings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from acs.cwmp.paths import is_setting_name
from acs.cwmp.values import MAX_VALUE, infer_type
from acs.store import codec
from acs.store.checks import (
    check_page,
    epoch,
    prefix_bounds,
)
from acs.store.db import Database
from acs.store.models import (
    DesiredSetting,
    Parameter,
)


class Settings(Database):
    """The `parameters` and `desired_settings` tables (SQLite)."""

    def upsert_parameters(
        self,
        device_id: int,
        params: Iterable[tuple[str, str | None, str | None, bool | None]],
        *,
        now: float,
    ) -> None:
        """Insert or update cached parameters; None leaves value/type/writable as they are."""
        now_f = epoch("now", now)
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
                    value = coalesce(excluded.value, parameters.value),
                    type = coalesce(excluded.type, parameters.type),
                    writable = coalesce(excluded.writable, parameters.writable),
                    updated = excluded.updated
                """,
                batch,
            )

    def bulk_seed_parameters(self, rows: Iterable[tuple[int, str, str, str]], *, now: float) -> int:
        """Insert stored-tree values of many devices in one transaction (benchmarks):
        ``(device_id, path, value, xsd type)`` each, read-only; returns how many."""
        now_f = epoch("now", now)
        batch = [(d, p, v, t, now_f) for d, p, v, t in rows]
        with self.transaction():
            self._conn.executemany(
                "INSERT INTO parameters (device_id, path, value, type, writable, updated) "
                "VALUES (?, ?, ?, ?, 0, ?)",
                batch,
            )
        return len(batch)

    def _prefix_where(self, prefix: str) -> tuple[str, list[Any]]:
        if not isinstance(prefix, str):
            raise ValueError(f"prefix must be a string, not {prefix!r}")
        if not prefix:
            return "", []
        low, high = prefix_bounds(prefix)
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

    def parameters_page(
        self, device_id: int, prefix: str = "", *, limit: int = 20, offset: int = 0
    ) -> tuple[int, list[Parameter]]:
        """(total, one page in path order) of the device's cached parameters under `prefix`."""
        check_page(limit, offset)
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

    def delete_parameters(self, device_id: int, prefix: str = "") -> int:
        """Delete cached parameters under `prefix` ("" = all); returns how many."""
        where, args = self._prefix_where(prefix)
        with self.transaction():
            cur = self._conn.execute(
                f"DELETE FROM parameters WHERE device_id = ?{where}", [device_id, *args]
            )
        return cur.rowcount

    def setting_type(self, device_id: int, path: str, value: str) -> str:
        """The one rule for a desired setting's type: the cached parameter's type when the
        CPE told us, else inferred from the value."""
        cached = self._scalar(
            "SELECT type FROM parameters WHERE device_id = ? AND path = ?", (device_id, path)
        )
        return cached if isinstance(cached, str) and cached else infer_type(value)

    def _check_setting(self, path: Any, value: Any) -> tuple[str, str]:
        if not is_setting_name(path):
            raise ValueError(f"{path!r} is not a full TR-069 parameter name")
        if not isinstance(value, str):
            raise ValueError(f"the value of {path} must be a string, not {value!r}")
        if len(value) > MAX_VALUE:
            raise ValueError(f"the value of {path} is longer than {MAX_VALUE}")
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
        now_f = epoch("now", now)
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

    def confirm_settings(self, device_id: int, paths: Iterable[str], *, now: float) -> None:
        """The CPE applied these paths (SetParameterValues status 0 or 1)."""
        now_f = epoch("now", now)
        batch = [(now_f, device_id, p) for p in paths]
        with self.transaction():
            self._conn.executemany(
                "UPDATE desired_settings SET confirmed = 1, updated = ? "
                "WHERE device_id = ? AND path = ? AND confirmed = 0",
                batch,
            )

    def unconfirm_all_settings(self, device_id: int, *, now: float) -> None:
        """Make every stored setting pending again (reconf, re-apply after a factory reset)."""
        now_f = epoch("now", now)
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
        now_f = epoch("now", now)
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
        now_f = epoch("now", now)
        with self.transaction():
            self._require_device(device_id)
            count = self._conn.execute(
                "DELETE FROM desired_settings WHERE device_id = ?", (device_id,)
            ).rowcount
            if count:
                self._insert_history(device_id, "settings_cleared", {"count": count}, now_f, actor)

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
        now_f = epoch("now", now)
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
