"""The task scheduler: wakes devices whose scheduled tasks have come due.

A task queued with ``scheduled_at`` (the API's ``schedule_at``) is held by the store until that
time (``Store.next_task`` skips it) and then runs in the device's first session at or after
it. Nothing would open that session before the CPE's next periodic Inform, so this service
asks the store every ``interval`` seconds which pending tasks became due since its last look
(``Store.scheduled_tasks_due``: one query over a time window) and sends one connection request
per device of that batch. Each window starts where the previous one ended, so a task is woken
once; the first look after a start has no lower bound, so tasks that came due while the
appliance was down are woken too. Recent wakes are remembered (``recent``) and written to the
device's history (``scheduled_wake``), so an operator can see the request went out on time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from acs.periodic import PeriodicService
from acs.store import NotFound, Store

RECENT_WAKES = 1000


class Scheduler(PeriodicService):
    """Every ``interval`` s, one connection request per device with a task that came due."""

    log = Logger()

    def __init__(
        self,
        store: Store,
        reactor: Any,
        *,
        wake: Callable[[int], Deferred[Any] | None],
        interval: float = 5.0,
    ) -> None:
        """``reactor``: an IReactorTime (a task.Clock in tests); typed Any because mypy cannot
        match classes to zope interfaces. ``wake(device_id)`` sends the connection request
        (``ConnectionRequester.wake``). A wake is at most ``interval`` s late."""
        super().__init__(reactor, interval, self.tick)
        self.setName("scheduler")
        self._store = store
        self._reactor = reactor
        self._wake = wake
        # Upper bound of the last window looked at; None = nothing looked at since start.
        self._last: float | None = None
        # (time, device id, task ids) of the latest wakes, newest last.
        self.recent: deque[tuple[float, int, tuple[int, ...]]] = deque(maxlen=RECENT_WAKES)

    def tick(self) -> list[int]:
        """Wake every device with a pending task that came due since the last tick; returns
        the device ids woken, in due order."""
        now = float(self._reactor.seconds())
        try:
            due = self._store.scheduled_tasks_due(after=self._last, until=now)
        except Exception:
            # A failing query (e.g. the database is locked): the same window is tried again.
            self.log.failure("scheduler: cannot list due tasks")
            return []
        self._last = now
        by_device: dict[int, list[int]] = {}
        for task_id, device_id in due:
            by_device.setdefault(device_id, []).append(task_id)
        for device_id, task_ids in by_device.items():
            self._send(device_id, tuple(task_ids), now)
        return list(by_device)

    def _send(self, device_id: int, task_ids: tuple[int, ...], now: float) -> None:
        self.recent.append((now, device_id, task_ids))
        try:
            self._store.add_history(
                device_id, "scheduled_wake", {"task_ids": list(task_ids)}, now=now
            )
        except NotFound:
            return  # deleted meanwhile: nothing to wake
        except Exception:
            self.log.failure(
                "scheduler: cannot record the wake of device {device_id}", device_id=device_id
            )
        self.log.info(
            "scheduler: waking device {device_id} for task(s) {task_ids}",
            device_id=device_id,
            task_ids=list(task_ids),
        )

        def failed(failure: Failure) -> None:
            self.log.failure("waking device {device_id} failed", failure, device_id=device_id)

        try:
            d = self._wake(device_id)
        except Exception:
            self.log.failure("waking device {device_id} failed", device_id=device_id)
            return
        if isinstance(d, Deferred):
            d.addErrback(failed)
