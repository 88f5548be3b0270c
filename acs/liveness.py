"""The Up/Down sweep: marks devices Down once their liveness window has passed.

A device is Up while it has had contact (a CWMP session or an answered connection request)
within ``2 x update_frequency + 60 s``. Going Up happens where the contact happens (the store's
``record_inform`` / ``set_status``); going Down has no event to hang off, so this service asks
the store every ``interval`` seconds which Up devices are overdue and marks them Down. With the
default 5 s interval a transition is recorded at most ~5 s late (the spec allows 10 s).
"""

from __future__ import annotations

from twisted.logger import Logger

from acs.clock import Clock
from acs.periodic import PeriodicService
from acs.store import NotFound, Store
from acs.store.models import DOWN

DOWN_REASON = "no contact within 2 x update_frequency + 60 s"
_CHUNK = 500


class LivenessSweep(PeriodicService):
    """Periodically marks overdue Up devices Down (one history entry per transition)."""

    log = Logger()

    def __init__(self, store: Store, reactor: Clock, *, interval: float = 5.0) -> None:
        super().__init__(reactor, interval, self.sweep, store=store)
        self.setName("liveness")
        self._store = store
        self._reactor = reactor

    def sweep(self) -> list[int]:
        """Mark every overdue Up device Down; return the ids that changed."""
        now = self._reactor.seconds()
        changed: list[int] = []
        try:
            due = self._store.devices_due_down(now)
        except Exception:
            # A failing query (e.g. the database is locked) must not stop future sweeps.
            self.log.failure("liveness sweep: cannot list overdue devices")
            return changed
        # One transaction per chunk: after a long outage thousands of devices can be due at
        # once, and one commit per device would hold the reactor for seconds.
        for start in range(0, len(due), _CHUNK):
            chunk = due[start : start + _CHUNK]
            try:
                with self._store.transaction():
                    marked = [d for d in chunk if self._mark_down(d, now)]
            except Exception:
                self.log.failure(
                    "liveness sweep: cannot mark {count} device(s) Down", count=len(chunk)
                )
                continue
            changed.extend(marked)
        if changed:
            self.log.info("liveness: {count} device(s) marked Down", count=len(changed))
        return changed

    def _mark_down(self, device_id: int, now: float) -> bool:
        try:
            return self._store.set_status(device_id, DOWN, now=now, reason=DOWN_REASON)
        except NotFound:
            return False  # deleted between the query and the update: nothing to mark
