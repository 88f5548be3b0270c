"""Tasks: the per-device queue, state transitions, what an Inform has to look at, transfer
notes (Download/Upload between sessions), scheduling windows and retention of finished
tasks.

`inform_work`, `next_task` and `requeue_in_progress` run at every Inform: one statement each.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from acs.store import codec
from acs.store.checks import (
    check_page,
    epoch,
    json_text,
    opt_epoch,
)
from acs.store.db import Database
from acs.store.errors import Conflict, NotFound
from acs.store.models import (
    DONE,
    FAILED,
    FINISHED_STATES,
    FRONT_PRIORITY,
    IN_PROGRESS,
    NORMAL_PRIORITY,
    OPEN_STATES,
    PENDING,
    TASK_STATES,
    Task,
)


class InformWork(NamedTuple):
    """Which of an Inform's checks can find anything for a device (``Store.inform_work``)."""

    active_tasks: bool  # a pending or in_progress task
    version_checks: bool  # a completed firmware_update whose version is still unchecked
    settings: bool  # desired settings of its own, or defaults of its device type
    # Provisioned, and the cached PeriodicInformInterval is not its update_frequency (unless
    # a desired setting or a type default governs that parameter).
    interval_drift: bool


class Tasks(Database):
    """The `tasks` table (SQLite)."""

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
        campaign_id: int | None = None,
    ) -> Task:
        now_f = epoch("now", now)
        when = opt_epoch("scheduled_at", scheduled_at)
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"task kind must be a non-empty string, not {kind!r}")
        if not isinstance(args, dict):
            raise ValueError(f"task args must be a dict, not {type(args).__name__}")
        args_text = json_text("task args", args)
        priority = FRONT_PRIORITY if front else NORMAL_PRIORITY
        with self.transaction():
            self._require_device(device_id)
            row = self._insert(
                "tasks",
                "device_id, kind, args, state, priority, created, scheduled_at, actor, campaign_id",
                (device_id, kind, args_text, PENDING, priority, now_f, when, actor, campaign_id),
            )
            detail: dict[str, Any] = {"task_id": row["id"], "kind": kind}
            if when is not None:
                detail["scheduled_at"] = when
            if campaign_id is not None:
                detail["campaign"] = campaign_id
            # Args stay out of history: SetParameterValues args may carry passwords.
            self._insert_history(device_id, "task_queued", detail, now_f, actor)
        return codec.task(row)

    def next_task(self, device_id: int, *, now: float) -> Task | None:
        """First pending task in queue order that is due (scheduled/retry time reached) and
        not held by its campaign (paused, or outside its windows)."""
        row = self._one(
            "SELECT * FROM tasks WHERE device_id = ?1 AND state = 'pending' "
            "AND (scheduled_at IS NULL OR scheduled_at <= ?2) "
            "AND (next_attempt_at IS NULL OR next_attempt_at <= ?2) "
            "AND (campaign_id IS NULL OR campaign_id NOT IN (SELECT id FROM campaigns WHERE hold)) "
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
        check_page(limit, offset)
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

    def count_open_tasks(self) -> dict[str, int]:
        """Pending and in-progress tasks (zeros included), across all devices: a scan of the
        open ones only (index ``tasks_open``), however many finished tasks are kept."""
        counts = dict.fromkeys(OPEN_STATES, 0)
        for state, count in self._conn.execute(
            "SELECT state, count(*) FROM tasks WHERE state IN ('pending', 'in_progress')"
            " GROUP BY state"
        ).fetchall():
            counts[state] = int(count)
        return counts

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
        if row["campaign_id"] is not None:
            self._campaign_outcome(row)
        if row["state"] in FINISHED_STATES:
            self._finished(task_id)
        return row

    def _campaign_outcome(self, row: sqlite3.Row) -> None:
        """Keep a campaign task's device row in step with the task: its outcome once it
        finished (a ``campaign_progress`` entry tells of it), none while it may run again."""
        finished = row["state"] in FINISHED_STATES
        outcome = row["state"] if finished else None
        self._conn.execute(
            "UPDATE campaign_devices SET outcome = ?, fault_code = ?, fault_string = ? "
            "WHERE campaign_id = ? AND device_id = ? AND task_id = ?",
            (
                outcome,
                row["fault_code"] if finished else None,
                row["fault_string"] if finished else None,
                row["campaign_id"],
                row["device_id"],
                row["id"],
            ),
        )
        if finished:
            detail = {"campaign": row["campaign_id"], "task_id": row["id"], "outcome": outcome}
            if row["fault_code"] is not None:
                detail["fault_code"] = row["fault_code"]
            self._insert_history(
                row["device_id"], "campaign_progress", detail, float(row["finished"]), "acs"
            )

    def start_task(self, task_id: int, *, now: float) -> Task:
        now_f = epoch("now", now)
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
        now_f = epoch("now", now)
        result_text = None if result is None else json_text("task result", result)
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
        now_f = epoch("now", now)
        retry = opt_epoch("retry_at", retry_at)
        result_text = None if result is None else json_text("task result", result)
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

    def cancel_task(self, task_id: int, *, now: float, actor: str, started: bool = False) -> Task:
        """Cancel a pending task (``started``: or one in progress, a transfer the CPE agreed
        to cancel); Conflict if it already started (unless ``started``) or finished."""
        now_f = epoch("now", now)
        states = (PENDING, IN_PROGRESS) if started else (PENDING,)
        with self.transaction():
            row = self._task_transition(
                task_id, states, "state = 'cancelled', finished = ?", (now_f,)
            )
            self._insert_history(
                row["device_id"],
                "task_cancelled",
                {"task_id": task_id, "kind": row["kind"]},
                now_f,
                actor,
            )
        return codec.task(row)

    def fail_done_task(self, task_id: int, *, now: float, fault_string: str) -> Task:
        """A done task turns out to have failed after all (a firmware upgrade the CPE
        reported complete but did not install): failed for good, with the reason."""
        now_f = epoch("now", now)
        with self.transaction():
            row = self._task_transition(
                task_id,
                (DONE,),
                "state = 'failed', fault_code = NULL, fault_string = ?, finished = ?",
                (fault_string, now_f),
            )
            self._insert_history(
                row["device_id"],
                "task_failed",
                {"task_id": task_id, "kind": row["kind"], "fault_string": fault_string},
                now_f,
                "acs",
            )
        return codec.task(row)

    def retry_task(self, task_id: int, *, now: float, actor: str) -> Task:
        """Queue a failed task again as it was first queued (its attempts, fault and result
        forgotten); Conflict unless it failed."""
        now_f = epoch("now", now)
        with self.transaction():
            row = self._task_transition(
                task_id,
                (FAILED,),
                "state = 'pending', started = NULL, finished = NULL, fault_code = NULL, "
                "fault_string = NULL, attempts = 0, next_attempt_at = NULL, result = NULL",
                (),
            )
            self._insert_history(
                row["device_id"],
                "task_retried",
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
        epoch("now", now)
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

    def resume_task(self, task_id: int, changes: dict[str, Any]) -> Task:
        """An in-progress task whose confirming Inform came goes back to pending to finish
        in this session (diagnostics: read the results), its result merged with
        ``changes``; the same attempt continues (attempts is not counted up again)."""
        with self.transaction():
            self.update_task_result(task_id, changes)
            row = self._task_transition(
                task_id, (IN_PROGRESS,), "state = 'pending', attempts = attempts - 1", ()
            )
        return codec.task(row)

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
                (json_text("task result", merged), task_id),
            )
        assert row is not None
        return codec.task(row)

    def overdue_transfers(
        self, kinds: Iterable[str], *, started_before: float, device_id: int | None = None
    ) -> list[Task]:
        """In-progress tasks of `kinds` started before `started_before` (one device or all),
        oldest first; a task's own delay_seconds or the end of its last time window (the CPE
        may wait that long before it starts) counts on top."""
        before = epoch("started_before", started_before)
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
            "AND started + coalesce(json_extract(args, '$.delay_seconds'),"
            " json_extract(args, '$.time_windows[#-1].window_end'), 0) < ? "
            f"{one_device}ORDER BY id",
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

    def tasks_coming_due(self, *, after: float | None, until: float) -> list[tuple[int, int]]:
        """(task id, device id) of tasks whose device needs a connection request, in due order.

        ``after`` None (the first look since the appliance started): every pending task
        runnable at ``until`` and every in_progress one (its session died with the previous
        process) of a device no session runs now (another process's, or one this process
        began before the look: it runs them itself; a crashed process's lease runs out, and
        a restart on its host frees its devices at once). Otherwise the pending tasks that
        became runnable in (after, until]: their ``scheduled_at`` or retry time
        (``next_attempt_at``) fell in it, the other one passed.
        """
        until_f = epoch("until", until)
        if after is None:
            found = self._conn.execute(
                "SELECT t.id, t.device_id FROM tasks t JOIN devices d ON d.id = t.device_id"
                " WHERE (d.session_node IS NULL OR d.session_until <= ?1)"
                " AND (t.state = 'in_progress' OR (t.state = 'pending'"
                " AND coalesce(t.scheduled_at, 0) <= ?1 AND coalesce(t.next_attempt_at, 0) <= ?1))"
                " ORDER BY max(coalesce(t.scheduled_at, 0), coalesce(t.next_attempt_at, 0)), t.id",
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
                (until_f, epoch("after", after)),
            ).fetchall()
        seen: set[int] = set()
        due: list[tuple[int, int]] = []
        for row in found:
            if int(row[0]) not in seen:
                seen.add(int(row[0]))
                due.append((int(row[0]), int(row[1])))
        return due

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
        before_f = epoch("before", before)
        check_page(limit, 0)
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
