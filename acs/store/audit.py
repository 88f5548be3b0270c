"""History (the audit log), API tokens, CWMP session transcripts (debug) and persistent
server secrets, with the retention of history and transcripts (acs.maintenance).

Retention deletes at most `limit` rows per call, in one short transaction: the job calls
these every few seconds, so pruning never holds the reactor for long.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from acs.store import codec
from acs.store.checks import (
    check_page,
    epoch,
    hash_token,
)
from acs.store.db import Database
from acs.store.models import (
    USER_ACTOR,
    ApiToken,
    HistoryEntry,
    SessionTranscript,
)

# The actors the ACS writes as itself and for CPEs; token names may not be these.
OWN_ACTORS = ("acs", "cpe")
AUDITED = "actor NOT IN ('acs', 'cpe')"


class Audit(Database):
    """The `history`, `api_tokens`, `cwmp_sessions` and `server_secrets` tables (SQLite)."""

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
        now_f = epoch("now", now)
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
        check_page(limit, offset)
        found = self._all(
            "SELECT * FROM history WHERE device_id IS ? ORDER BY id DESC LIMIT ? OFFSET ?",
            (device_id, limit, offset),
        )
        return [codec.history(r) for r in found]

    def count_history(self, device_id: int | None) -> int:
        return int(self._scalar("SELECT count(*) FROM history WHERE device_id IS ?", (device_id,)))

    def audit_page(
        self,
        *,
        organization_ids: Sequence[int] | None = None,
        actor: str | None = None,
        action: str | None = None,
        device_id: int | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> tuple[int, list[HistoryEntry]]:
        """(matching, a page newest first) of the audit entries: those written by an actor
        other than the ACS itself and the CPEs (API tokens, the CLI). ``organization_ids``
        (None: all) keeps the entries of those organizations' devices only."""
        check_page(limit, offset)
        clauses = [AUDITED]  # the history_audit index's own condition
        params: list[Any] = []
        if organization_ids is not None:
            orgs = list(organization_ids)
            clauses.append(
                "device_id IN (SELECT id FROM devices WHERE organization_id IN "
                f"({', '.join('?' for _ in orgs) or 'NULL'}))"
            )
            params += orgs
        for column, value in (("actor", actor), ("action", action), ("device_id", device_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            clauses.append("time >= ?")
            params.append(epoch("since", since))
        if until is not None:
            clauses.append("time < ?")
            params.append(epoch("until", until))
        where = " WHERE " + " AND ".join(clauses)
        return self._page(
            "history INDEXED BY history_audit",
            where,
            params,
            codec.history,
            order="id DESC",
            limit=limit,
            offset=offset,
        )

    def device_events(
        self, after_id: int, up_to: int, actions: Sequence[str], *, limit: int
    ) -> list[tuple[HistoryEntry, int]]:
        """Device history entries of these ``actions`` with ids in (``after_id``,
        ``up_to``], oldest first, each with its device's organization (the event stream
        reads these)."""
        check_page(limit, 0)
        marks = ", ".join("?" for _ in actions) or "NULL"
        rows = self._all(
            "SELECT h.*, d.organization_id AS organization_id FROM history h "
            "JOIN devices d ON d.id = h.device_id "
            f"WHERE h.id > ? AND h.id <= ? AND h.action IN ({marks}) ORDER BY h.id LIMIT ?",
            [after_id, up_to, *actions, limit],
        )
        return [(codec.history(r), int(r["organization_id"])) for r in rows]

    def last_history_id(self) -> int:
        """The newest history entry's id (0: none)."""
        return int(self._scalar("SELECT coalesce(max(id), 0) FROM history"))

    def prune_history(self, *, before: float, limit: int) -> int:
        """Delete the history rows older than ``before`` among the ``limit`` oldest; returns
        how many went. Rows are appended as time goes, so the oldest are the first ids: a
        walk from the start of the primary key, with no time index on the busiest table."""
        return self._prune_oldest("history", "time", before, limit)

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
        check_page(limit, 0)
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

    def create_token(
        self, name: str, role: str, organization_ids: Sequence[int], *, now: float
    ) -> tuple[ApiToken, str]:
        """Create a token; returns the row and the plaintext (shown once, stored hashed)."""
        now_f = epoch("now", now)
        if not isinstance(name, str) or not name.strip():
            raise ValueError("token name must be a non-empty string")
        if name.strip() in OWN_ACTORS:
            raise ValueError(f"token names {' and '.join(OWN_ACTORS)} are the ACS's own actors")
        if name.strip().startswith(USER_ACTOR):
            raise ValueError(f"token names may not start with {USER_ACTOR!r} (web UI users)")
        plaintext = secrets.token_urlsafe(32)
        with self.transaction():
            orgs = self._role_and_scope(role, organization_ids)
            row = self._insert(
                "api_tokens",
                "name, role, token_hash, organization_ids, created",
                (name, role, hash_token(plaintext), codec.dumps(orgs), now_f),
            )
        return codec.token(row), plaintext

    def verify_token(self, token: str) -> ApiToken | None:
        """The active token matching `token`, else None. Looked up by hash, so no
        plaintext comparison leaks timing."""
        if not isinstance(token, str) or not token:
            return None
        row = self._one(
            "SELECT * FROM api_tokens WHERE token_hash = ? AND revoked = 0", (hash_token(token),)
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

    def count_active_tokens(self) -> int:
        return int(self._scalar("SELECT count(*) FROM api_tokens WHERE revoked = 0"))

    def add_session_transcript(
        self, device_id: int, transcript: str, *, started: float
    ) -> SessionTranscript:
        started_f = epoch("started", started)
        if not isinstance(transcript, str):
            raise ValueError("transcript must be a string")
        with self.transaction():
            self._require_device(device_id)
            row = self._insert(
                "cwmp_sessions",
                "device_id, started, transcript",
                (device_id, started_f, transcript),
            )
        return codec.session_transcript(row)

    def session_transcripts(
        self, device_id: int, limit: int = 20, offset: int = 0
    ) -> list[SessionTranscript]:
        """The device's transcripts, newest first."""
        check_page(limit, offset)
        found = self._all(
            "SELECT * FROM cwmp_sessions WHERE device_id = ? ORDER BY id DESC LIMIT ? OFFSET ?",
            (device_id, limit, offset),
        )
        return [codec.session_transcript(r) for r in found]

    def count_session_transcripts(self, device_id: int) -> int:
        return int(
            self._scalar("SELECT count(*) FROM cwmp_sessions WHERE device_id = ?", (device_id,))
        )

    def prune_transcripts(self, *, before: float, limit: int) -> int:
        """Delete debug transcripts of sessions started before ``before`` among the
        ``limit`` oldest; returns how many went."""
        return self._prune_oldest("cwmp_sessions", "started", before, limit)

    def _prune_oldest(self, table: str, column: str, before: float, limit: int) -> int:
        before_f = epoch("before", before)
        check_page(limit, 0)
        # `table` and `column` are always our literals, never caller input.
        with self.transaction():
            cur = self._conn.execute(
                f"DELETE FROM {table} WHERE id IN (SELECT id FROM"
                f" (SELECT id, {column} AS t FROM {table} ORDER BY id LIMIT ?) AS oldest"
                " WHERE t < ?)",
                (limit, before_f),
            )
        return cur.rowcount

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
