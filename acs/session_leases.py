"""The session leases of a node's ended sessions that ran no task, given up together.

A session that ran no task (a periodic Inform with nothing queued: nearly all of them) has
nothing to write at its end but the release of its device's session lease. Released in a
write transaction of its own, that was a third of the session's statements and half its
commits (and, with several workers on one SQLite file, half of what makes the others drop
their page caches). So the release waits ``RELEASE_DELAY`` seconds and goes with the others
of that moment, one transaction for all (``Store.end_device_sessions``). Meanwhile the lease
still names this node: a new Inform of the device on another node is sent on here (or told
to retry), as for a session under way; a new session of the device here takes the lease
over and its release is dropped. Each release is of the exact lease the session held (its
``until``), so it can never free a newer session's.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.logger import Logger

from acs.clock import Clock
from acs.store import Store

log = Logger(namespace="acs.cwmp")

# How long an ended session's lease outlives it, at most.
RELEASE_DELAY = 0.05


class LeaseReleases:
    """This node's ended sessions whose leases are yet to be given up (pure bookkeeping
    plus one timer; the store's work runs as a unit of work)."""

    def __init__(
        self, store: Store, reactor: Clock, node_id: int, *, delay: float = RELEASE_DELAY
    ) -> None:
        self._store = store
        self._reactor = reactor
        self._node_id = node_id
        self._delay = delay
        self._pending: dict[int, float] = {}  # device id -> the until of its ended lease
        self._timer: Any = None
        self._running: set[Deferred[None]] = set()  # flushes whose unit has not run yet

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._pending

    def add(self, device_id: int, until: float) -> None:
        """The session of ``device_id`` holding the lease until ``until`` has ended."""
        self._pending[device_id] = until
        if self._timer is None:
            self._timer = self._reactor.callLater(self._delay, self.flush)

    def discard(self, device_id: int) -> None:
        """A new session of ``device_id`` on this node takes its lease over."""
        self._pending.pop(device_id, None)

    def flush(self) -> Deferred[None]:
        """Give up every pending lease now, in one unit of work; fires once it ran. A
        failure is logged only: those leases run out by themselves."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        leases, self._pending = list(self._pending.items()), {}
        if not leases:
            return succeed(None)
        ran = self._store.run(self._store.end_device_sessions, self._node_id, leases)

        def failed(failure: Any) -> None:
            log.failure(
                "Giving up {count} session leases failed (they run out by themselves)",
                failure=failure,
                count=len(leases),
            )

        ran.addErrback(failed)
        if not ran.called:  # on PostgreSQL, in the pool's threads
            self._running.add(ran)
            ran.addBoth(lambda _: self._running.discard(ran))
        return ran

    def settled(self) -> Deferred[None]:
        """Fires once every flush under way has run (before the store closes)."""
        return DeferredList(list(self._running)).addCallback(lambda _: None)
