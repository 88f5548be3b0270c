"""Campaigns (``campaigns``, ``campaign_devices``): one task kind over a fleet.

Starting a campaign copies the devices its filter selects into ``campaign_devices`` (in id
order), in the transaction that makes it running; from then on the set is fixed. A device's
row gets its task in the transaction that queues it (``queue_campaign_task``), so no device
is ever given two, restarts or not, and its outcome in the transaction that finishes the
task (``Tasks._campaign_outcome``). Pacing, windows and the stop rule are the runner's
(:mod:`acs.campaigns`); this module only stores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from acs.store import codec
from acs.store.checks import check_page, epoch, json_text
from acs.store.devices import device_clauses
from acs.store.errors import Conflict, NotFound
from acs.store.models import (
    CAMPAIGN_ENDED,
    CAMPAIGN_STATES,
    DOWN,
    TASK_STATES,
    Campaign,
    DeviceFilter,
    Task,
)
from acs.store.tasks import Tasks

# Progress counts: devices not given their task yet, then by their task's state.
PROGRESS = ("waiting", *TASK_STATES)


def _visible(scope: Sequence[int] | None) -> tuple[str, list[Any]]:
    """A token sees the campaigns whose organizations are all among its own (every one
    without a scope)."""
    if scope is None:
        return "", []
    marks = ", ".join("?" for _ in scope) or "NULL"
    return (
        " WHERE organization_ids IS NOT NULL AND NOT EXISTS (SELECT 1 FROM"
        f" json_each(organization_ids) j WHERE j.value NOT IN ({marks}))",
        list(scope),
    )


class Campaigns(Tasks):
    """The `campaigns` and `campaign_devices` tables (SQLite), over the task queue."""

    def create_campaign(self, values: Mapping[str, Any], *, now: float, actor: str) -> Campaign:
        """A draft from checked ``values``: name, filter, organization_ids, kind, args,
        windows, rate, max_in_flight, stop_rule."""
        now_f = epoch("now", now)
        scope = values["organization_ids"]
        with self.transaction():
            row = self._insert(
                "campaigns",
                "name, filter, organization_ids, kind, args, windows, rate, max_in_flight, "
                "stop_rule, actor, created",
                (
                    values["name"],
                    json_text("filter", values["filter"]),
                    None if scope is None else json_text("scope", list(scope)),
                    values["kind"],
                    json_text("args", values["args"]),
                    json_text("windows", list(values["windows"])),
                    float(values["rate"]),
                    int(values["max_in_flight"]),
                    json_text("stop_rule", values["stop_rule"]),
                    actor,
                    now_f,
                ),
            )
            self._audit("campaign_created", {"id": row["id"], "name": row["name"]}, now_f, actor)
        return codec.campaign(row)

    def get_campaign(self, campaign_id: int) -> Campaign | None:
        row = self._one("SELECT * FROM campaigns WHERE id = ?", (campaign_id,))
        return None if row is None else codec.campaign(row)

    def campaigns_page(
        self, scope: Sequence[int] | None, *, limit: int, offset: int
    ) -> tuple[int, list[Campaign]]:
        """The campaigns a token of ``scope`` sees, newest first."""
        check_page(limit, offset)
        where, params = _visible(scope)
        return self._page(
            "campaigns", where, params, codec.campaign, order="id DESC", limit=limit, offset=offset
        )

    def active_campaigns(self) -> list[Campaign]:
        """Running and paused campaigns, oldest first (what the runner looks after)."""
        found = self._all(
            "SELECT * FROM campaigns WHERE state IN ('running', 'paused') ORDER BY id"
        )
        return [codec.campaign(r) for r in found]

    def delete_campaign(self, campaign_id: int, *, now: float, actor: str) -> None:
        """Delete a draft or ended campaign (its tasks stay, unlinked); Conflict while it
        runs or is paused."""
        with self.transaction():
            state = self._scalar("SELECT state FROM campaigns WHERE id = ?", (campaign_id,))
            if state is None:
                raise NotFound(f"campaign {campaign_id!r} not found")
            if state in ("running", "paused"):
                raise Conflict(f"campaign {campaign_id} is {state}: cancel it first")
            self._conn.execute("DELETE FROM campaigns WHERE id = ?", (campaign_id,))
            self._audit("campaign_deleted", {"id": campaign_id}, epoch("now", now), actor)

    def start_campaign(
        self, campaign_id: int, filters: DeviceFilter, *, now: float, actor: str
    ) -> tuple[Campaign, int]:
        """Draft -> running: the devices ``filters`` select become the campaign's, once
        and for all; returns the campaign and how many devices it got."""
        now_f = epoch("now", now)
        clauses, params = device_clauses(filters)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        with self.transaction():
            campaign = self._campaign_move(campaign_id, ("draft",), "running", now_f)
            count = self._conn.execute(
                "INSERT INTO campaign_devices (campaign_id, device_id) "
                f"SELECT ?, id FROM devices{where} ORDER BY id",
                [campaign_id, *params],
            ).rowcount
            self._conn.execute(
                "UPDATE campaigns SET started = ? WHERE id = ?", (now_f, campaign_id)
            )
            self._audit("campaign_started", {"id": campaign_id, "devices": count}, now_f, actor)
        return campaign, int(count)

    def move_campaign(
        self,
        campaign_id: int,
        from_states: tuple[str, ...],
        to_state: str,
        *,
        now: float,
        actor: str,
        reason: str | None = None,
    ) -> Campaign:
        """A state change (Conflict unless the campaign is in one of ``from_states``). An
        ended campaign's tasks that did not start are cancelled, in the same transaction;
        a paused one's wait (``hold``)."""
        if to_state not in CAMPAIGN_STATES:
            raise ValueError(f"unknown campaign state {to_state!r}")
        now_f = epoch("now", now)
        with self.transaction():
            self._campaign_move(campaign_id, from_states, to_state, now_f, reason)
            if to_state in CAMPAIGN_ENDED:
                for (task_id,) in self._conn.execute(
                    "SELECT id FROM tasks WHERE campaign_id = ? AND state = 'pending' ORDER BY id",
                    (campaign_id,),
                ).fetchall():
                    self.cancel_task(task_id, now=now_f, actor=actor)
            self._audit(
                f"campaign_{to_state}",
                {"id": campaign_id, **({"reason": reason} if reason else {})},
                now_f,
                actor,
            )
            campaign = self.get_campaign(campaign_id)
        assert campaign is not None
        return campaign

    def _campaign_move(
        self,
        campaign_id: int,
        from_states: tuple[str, ...],
        to_state: str,
        now: float,
        reason: str | None = None,
    ) -> Campaign:
        marks = ", ".join("?" for _ in from_states)
        row = self._one(
            "UPDATE campaigns SET state = ?1, reason = coalesce(?2, reason),"
            " hold = CASE WHEN ?1 = 'running' THEN hold ELSE ?1 = 'paused' END,"
            " finished = CASE WHEN ?1 IN ('done', 'stopped', 'cancelled') THEN ?3 END"
            f" WHERE id = ?4 AND state IN ({marks}) RETURNING *",
            (to_state, reason, now, campaign_id, *from_states),
        )
        if row is None:
            state = self._scalar("SELECT state FROM campaigns WHERE id = ?", (campaign_id,))
            if state is None:
                raise NotFound(f"campaign {campaign_id!r} not found")
            raise Conflict(f"campaign {campaign_id} is {state}, not {' or '.join(from_states)}")
        return codec.campaign(row)

    def hold_campaign(self, campaign_id: int, hold: bool) -> bool:
        """Hold (or release) a running campaign's pending tasks; True when it changed."""
        with self.transaction():
            changed = self._conn.execute(
                "UPDATE campaigns SET hold = ? WHERE id = ? AND state = 'running' AND hold <> ?",
                (int(hold), campaign_id, int(hold)),
            ).rowcount
        return bool(changed)

    def campaign_progress(self, campaign_id: int) -> tuple[dict[str, int], dict[str, int]]:
        """(devices by ``PROGRESS`` state, failed devices by fault code ("none" without
        one)) of the campaign."""
        counts = dict.fromkeys(PROGRESS, 0)
        failures: dict[str, int] = {}
        with self.transaction():
            for task_id, outcome, code, n in self._conn.execute(
                "SELECT task_id IS NOT NULL, outcome, fault_code, count(*) FROM campaign_devices"
                " WHERE campaign_id = ? GROUP BY 1, 2, 3",
                (campaign_id,),
            ).fetchall():
                if not task_id:
                    counts["waiting"] += n
                elif outcome is not None:
                    counts[outcome] += n
                    if outcome == "failed":
                        key = "none" if code is None else str(code)
                        failures[key] = failures.get(key, 0) + n
            for state, n in self._conn.execute(
                "SELECT t.state, count(*) FROM campaign_devices c JOIN tasks t ON t.id = c.task_id"
                " WHERE c.campaign_id = ? AND c.task_id IS NOT NULL AND c.outcome IS NULL"
                " GROUP BY 1",
                (campaign_id,),
            ).fetchall():
                counts[state] += n
        return counts, failures

    def campaign_in_flight(self, campaign_id: int) -> int:
        """Devices with a campaign task that has not ended, Down ones aside (their task
        waits for their next Inform)."""
        return int(
            self._scalar(
                "SELECT count(*) FROM campaign_devices c JOIN devices d ON d.id = c.device_id"
                " WHERE c.campaign_id = ? AND c.task_id IS NOT NULL AND c.outcome IS NULL"
                " AND d.status <> ?",
                (campaign_id, DOWN),
            )
        )

    def campaign_waiting(self, campaign_id: int, limit: int) -> list[int]:
        """The next ``limit`` devices still to be given their task, in order."""
        check_page(limit, 0)
        return [
            r[0]
            for r in self._conn.execute(
                "SELECT device_id FROM campaign_devices WHERE campaign_id = ? AND task_id IS NULL"
                " ORDER BY device_id LIMIT ?",
                (campaign_id, limit),
            )
        ]

    def campaign_pending_devices(self, campaign_id: int, limit: int) -> list[int]:
        """Up devices whose campaign task is pending (to wake when a hold ends)."""
        check_page(limit, 0)
        return [
            r[0]
            for r in self._conn.execute(
                "SELECT t.device_id FROM tasks t JOIN devices d ON d.id = t.device_id"
                " WHERE t.campaign_id = ? AND t.state = 'pending' AND d.status <> ?"
                " ORDER BY t.id LIMIT ?",
                (campaign_id, DOWN, limit),
            )
        ]

    def queue_campaign_task(
        self, campaign_id: int, device_id: int, queue: Callable[[], Task]
    ) -> Task | None:
        """Give the device its campaign task (``queue()`` queues it) in one transaction
        with marking it given; None when it has one already or left the campaign."""
        with self.transaction():
            waiting = self._scalar(
                "SELECT 1 FROM campaign_devices WHERE campaign_id = ? AND device_id = ?"
                " AND task_id IS NULL",
                (campaign_id, device_id),
            )
            if waiting is None:
                return None
            task = queue()
            if task.campaign_id != campaign_id or task.device_id != device_id:
                raise ValueError(f"task {task.id} is not campaign {campaign_id}'s for the device")
            self._conn.execute(
                "UPDATE campaign_devices SET task_id = ? WHERE campaign_id = ? AND device_id = ?",
                (task.id, campaign_id, device_id),
            )
        return task

    def campaign_devices_page(
        self, campaign_id: int, *, limit: int, offset: int
    ) -> tuple[int, list[dict[str, Any]]]:
        """The campaign's devices in order: device, serial, task, its state, fault."""
        check_page(limit, offset)
        with self.transaction():
            total = int(
                self._scalar(
                    "SELECT count(*) FROM campaign_devices WHERE campaign_id = ?", (campaign_id,)
                )
            )
            rows = self._all(
                "SELECT c.device_id, d.serial_number, c.task_id,"
                " coalesce(c.outcome, t.state, CASE WHEN c.task_id IS NULL THEN 'waiting' END)"
                " AS state, c.fault_code, c.fault_string"
                " FROM campaign_devices c JOIN devices d ON d.id = c.device_id"
                " LEFT JOIN tasks t ON t.id = c.task_id"
                " WHERE c.campaign_id = ? ORDER BY c.device_id LIMIT ? OFFSET ?",
                (campaign_id, limit, offset),
            )
        return total, [dict(r) for r in rows]
