"""Webhook deliveries: the events (:mod:`acs.events`) each webhook asked for, POSTed to its
URL from the persistent outbox (:mod:`acs.store.webhooks`).

Every ``interval`` seconds, for each webhook: the events after its cursor are queued (body
fixed then), and its oldest pending delivery is sent when due, one at a time per webhook, so
a receiver gets its events in order. The body is the event's JSON; ``X-ACS-Event-ID`` is its
id (the idempotency key: a delivery whose 2xx was lost is sent again), ``X-ACS-Event`` its
type and ``X-ACS-Signature`` ``sha256=<hex HMAC-SHA256 of the body with the webhook's
secret>``. Anything but 2xx within ``timeout`` seconds is retried after ``retry_base`` x 2^n
seconds (at most ``MAX_BACKOFF``), for good: the outbox survives restarts.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import partial
from typing import Any

import treq
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool

from acs.clock import Reactor
from acs.events import ACTIONS, EVENT_TYPES, event, event_json
from acs.periodic import PeriodicService
from acs.store import Store
from acs.store.models import Delivery, Webhook

log = Logger(namespace="acs.webhooks")

BATCH = 500  # events queued per webhook and round
MAX_BACKOFF = 3600.0


def _drop(_data: bytes) -> None:
    """A receiver's answer body matters not, however big it is."""


def signature(secret: str, body: bytes) -> str:
    """The ``X-ACS-Signature`` of ``body``: what a receiver recomputes to trust it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookDelivery(PeriodicService):
    """Queues and sends every webhook's events (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        reactor: Reactor,
        *,
        interval: float = 1.0,
        timeout: float = 10.0,
        retry_base: float = 5.0,
        observe: Any = None,
    ) -> None:
        super().__init__(reactor, interval, self.tick)
        self.setName("webhooks")
        self.store = store
        self.reactor = reactor
        self.timeout = timeout
        self.retry_base = retry_base
        self._observe = observe  # (outcome) for metrics, or None
        self._pool = HTTPConnectionPool(reactor, persistent=False)
        self._agent: Any = Agent(reactor, pool=self._pool)
        self._sending: dict[int, Deferred[Any]] = {}  # webhook id -> its POST in flight

    def tick(self) -> Deferred[None]:
        """Queue every webhook's new events and send each its next due delivery; the store's
        part is a unit of work (on PostgreSQL off the reactor thread), the POSTs are not."""
        due = self.store.read(self._due, frozenset(self._sending), self.reactor.seconds())
        return due.addCallbacks(self._send_all, self._unread)

    def _due(self, sending: frozenset[int], now: float) -> list[tuple[Webhook, Delivery]]:
        """Queue the new events; the next delivery of each webhook not sending now, if due."""
        try:
            hooks = self.store.webhooks()
        except Exception:
            log.failure("webhooks: cannot read the webhooks")
            return []
        due = []
        for hook in hooks:
            try:
                self._enqueue(hook)
                if hook.id in sending:
                    continue
                delivery = self.store.next_delivery(hook.id)
                if delivery is not None and delivery.next_attempt_at <= now:
                    due.append((hook, delivery))
            except Exception:
                log.failure("webhooks: webhook {id} failed a round", id=hook.id)
        return due

    def _unread(self, failure: Failure) -> None:
        log.failure("webhooks: cannot read the deliveries", failure)

    def _enqueue(self, hook: Webhook) -> None:
        upto = self.store.last_history_id()
        if upto <= hook.cursor:
            return
        rows = self.store.device_events(hook.cursor, upto, ACTIONS, limit=BATCH)
        reached = rows[-1][0].id if len(rows) == BATCH else upto
        wanted = set(hook.event_types)
        events = [
            (entry.id, EVENT_TYPES[entry.action], event_json(event(entry, org)))
            for entry, org in rows
            if EVENT_TYPES[entry.action] in wanted
        ]
        self.store.enqueue_deliveries(hook.id, reached, events, now=self.reactor.seconds())

    def _send_all(self, due: list[tuple[Webhook, Delivery]]) -> None:
        for hook, delivery in due:
            if hook.id in self._sending or not self.running:
                continue  # stopped, or sending since the unit began
            d = Deferred.fromCoroutine(self._post(hook, delivery))
            d.addErrback(lambda f: (None, f"{type(f.value).__name__}: {f.getErrorMessage()}"))
            d.addCallback(self._attempted, hook, delivery)
            d.addBoth(self._sent, hook.id)
            if not d.called:
                self._sending[hook.id] = d

    def _sent(self, _: object, webhook_id: int) -> None:
        self._sending.pop(webhook_id, None)

    async def _post(self, hook: Webhook, delivery: Delivery) -> tuple[int | None, str | None]:
        body = delivery.payload.encode()
        headers: dict[bytes | str, bytes | str] = {
            "Content-Type": "application/json",
            "User-Agent": "acs-webhook",
            "X-ACS-Event": delivery.event_type,
            "X-ACS-Event-ID": str(delivery.event_id),
            "X-ACS-Signature": signature(hook.secret, body),
        }
        response = await treq.post(
            hook.url, body, headers=headers, agent=self._agent, timeout=self.timeout
        )
        await treq.collect(response, _drop)  # the answer, read and dropped as it comes
        code = int(response.code)
        return code, None if 200 <= code < 300 else f"HTTP {code}"

    def _attempted(
        self, outcome: tuple[int | None, str | None], hook: Webhook, delivery: Delivery
    ) -> Deferred[None] | None:
        if not self.running:  # stopped meanwhile: the delivery stays pending, for next time
            return None
        status, error = outcome
        now = self.reactor.seconds()
        retry = None
        if error is not None:
            retry = now + min(self.retry_base * 2**delivery.attempts, MAX_BACKOFF)
            log.info(
                "webhook {id}: event {event} not delivered ({error}), again in {delay:.0f}s",
                id=hook.id, event=delivery.event_id, error=error, delay=retry - now,
            )  # fmt: skip
        if self._observe is not None:
            self._observe("delivered" if error is None else "failed")
        recorded = self.store.run(
            partial(
                self.store.delivery_attempted,
                delivery.id,
                status=status,
                error=error,
                retry_at=retry,
                now=now,
            )
        )
        return recorded.addErrback(
            lambda failure: log.failure("webhooks: cannot record a delivery attempt", failure)
        )

    def stopService(self) -> Any:
        super().stopService()
        for sending in list(self._sending.values()):
            sending.cancel()  # its delivery stays pending: sent again after a restart
        return self._pool.closeCachedConnections()
