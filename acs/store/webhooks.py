"""Webhooks and their outbox (``webhooks``, ``webhook_deliveries``).

A webhook's ``cursor`` is the last history entry considered for it: ``enqueue`` copies the
events after it (each with its JSON body) into pending deliveries and moves the cursor, in
one transaction, so an event is queued exactly once even across a crash; a delivery stays
pending, and the ones after it wait, until the receiver answers 2xx (``delivered``), so
each webhook gets its events in order, at least once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from acs.store import codec
from acs.store.checks import check_page, epoch
from acs.store.db import Database
from acs.store.models import Delivery, Webhook

MAX_ERROR = 300


class Webhooks(Database):
    """The `webhooks` and `webhook_deliveries` tables (SQLite)."""

    def create_webhook(
        self, url: str, secret: str, event_types: Sequence[str], *, now: float, actor: str
    ) -> Webhook:
        """A webhook hearing of events from now on (its cursor: the newest entry)."""
        now_f = epoch("now", now)
        if not isinstance(url, str) or not url:
            raise ValueError("a webhook needs a URL")
        with self.transaction():
            start = int(self._scalar("SELECT coalesce(max(id), 0) FROM history"))
            row = self._insert(
                "webhooks",
                "url, secret, event_types, cursor, created",
                (url, secret, codec.dumps(list(event_types)), start, now_f),
            )
            hook = codec.webhook(row)
            self._audit("webhook_created", {"id": hook.id, "url": url}, now_f, actor)
        return hook

    def get_webhook(self, webhook_id: int) -> Webhook | None:
        row = self._one("SELECT * FROM webhooks WHERE id = ?", (webhook_id,))
        return None if row is None else codec.webhook(row)

    def webhooks(self) -> list[Webhook]:
        return [codec.webhook(r) for r in self._all("SELECT * FROM webhooks ORDER BY id")]

    def delete_webhook(self, webhook_id: int, *, now: float, actor: str) -> bool:
        """Delete it and its outbox; False when there was none."""
        with self.transaction():
            gone = self._conn.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,))
            if gone.rowcount:
                self._audit("webhook_deleted", {"id": webhook_id}, epoch("now", now), actor)
        return bool(gone.rowcount)

    def enqueue_deliveries(
        self, webhook_id: int, cursor: int, events: Iterable[tuple[int, str, str]], *, now: float
    ) -> int:
        """Queue ``(event id, type, body)`` for the webhook and move its cursor to
        ``cursor``, atomically; returns how many were queued."""
        now_f = epoch("now", now)
        batch = [(webhook_id, i, t, body, now_f, now_f) for i, t, body in events]
        with self.transaction():
            self._conn.executemany(
                "INSERT OR IGNORE INTO webhook_deliveries (webhook_id, event_id, event_type, "
                "payload, next_attempt_at, created) VALUES (?, ?, ?, ?, ?, ?)",
                batch,
            )
            self._conn.execute(
                "UPDATE webhooks SET cursor = max(cursor, ?) WHERE id = ?", (cursor, webhook_id)
            )
        return len(batch)

    def next_delivery(self, webhook_id: int) -> Delivery | None:
        """The webhook's oldest pending delivery (every later one waits for it)."""
        row = self._one(
            "SELECT * FROM webhook_deliveries WHERE webhook_id = ? AND state = 'pending' "
            "ORDER BY id LIMIT 1",
            (webhook_id,),
        )
        return None if row is None else codec.delivery(row)

    def delivery_attempted(
        self,
        delivery_id: int,
        *,
        status: int | None,
        error: str | None,
        retry_at: float | None,
        now: float,
    ) -> None:
        """Record an attempt: delivered (``retry_at`` None), or pending until ``retry_at``."""
        now_f = epoch("now", now)
        values: list[Any] = [status, (error or "")[:MAX_ERROR] or None]
        if retry_at is None:
            sql = "state = 'delivered', delivered = ?"
            values.append(now_f)
        else:
            sql = "next_attempt_at = ?"
            values.append(epoch("retry_at", retry_at))
        with self.transaction():
            self._conn.execute(
                f"UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = ?, "
                f"last_error = ?, {sql} WHERE id = ?",
                [*values, delivery_id],
            )

    def deliveries_page(
        self, webhook_id: int, *, limit: int, offset: int
    ) -> tuple[int, list[Delivery]]:
        """The webhook's delivery log, newest first."""
        check_page(limit, offset)
        return self._page(
            "webhook_deliveries",
            " WHERE webhook_id = ?",
            [webhook_id],
            codec.delivery,
            order="id DESC",
            limit=limit,
            offset=offset,
        )
