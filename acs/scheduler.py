"""The task scheduler: connection requests for tasks that can run now but would otherwise wait.

Three kinds of task have nobody to wake their device: one queued with ``scheduled_at`` (the
API's ``schedule_at``, held by ``Store.next_task`` until then), one whose retry time
(``next_attempt_at``) just passed after a failure, and, after a crash or restart, every task
whose connection request was lost with the previous process. Without a wake they would wait
for the CPE's next periodic Inform (hours on real CPEs). So every ``interval`` seconds this
service asks the store which tasks became runnable since its last look
(``Store.tasks_coming_due``: index range scans over a time window); the first look after a
start has no lower bound and takes every runnable pending task and every stranded
in_progress one. Each window starts where the previous one ended, so a task is woken once.

One connection request per device, at most ``max_wakes`` per tick: a restart with work
queued for a whole fleet is paced (the rest wait for the next ticks, in due order) instead
of thrown at the connection requester at once. Recent wakes are remembered (``recent``) and
written to the device's history (``scheduled_wake``), so an operator can see the request
went out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from acs.clock import Clock
from acs.periodic import PeriodicService
from acs.store import NotFound, Store

RECENT_WAKES = 1000
MAX_WAKES_PER_TICK = 200


class Scheduler(PeriodicService):
    """Every ``interval`` s, one connection request per device with a task that came due."""

    log = Logger()

    def __init__(
        self,
        store: Store,
        reactor: Clock,
        *,
        wake: Callable[[int], Deferred[Any] | None],
        interval: float = 5.0,
        max_wakes: int = MAX_WAKES_PER_TICK,
    ) -> None:
        """``reactor``: the reactor's clock (a task.Clock in tests). ``wake(device_id)``
        sends the connection request (``ConnectionRequester.wake``). A wake is at most
        ``interval`` s late."""
        super().__init__(reactor, interval, self.tick, store=store)
        self.setName("scheduler")
        self._store = store
        self._reactor = reactor
        self._wake = wake
        if max_wakes < 1:
            raise ValueError("max_wakes must be >= 1")
        self._max_wakes = max_wakes
        # Upper bound of the last window looked at; None = nothing looked at since start.
        self._last: float | None = None
        # Devices to wake (task ids of each), in due order, beyond one tick's max_wakes.
        self._backlog: dict[int, list[int]] = {}
        # (time, device id, task ids) of the latest wakes, newest last.
        self.recent: deque[tuple[float, int, tuple[int, ...]]] = deque(maxlen=RECENT_WAKES)

    def tick(self) -> list[int]:
        """Wake the devices whose tasks came due since the last tick (up to ``max_wakes``,
        the backlog first); returns the device ids woken, in due order."""
        now = float(self._reactor.seconds())
        try:
            due = self._store.tasks_coming_due(after=self._last, until=now)
        except Exception:
            # A failing query (e.g. the database is locked): the same window is tried again.
            self.log.failure("scheduler: cannot list due tasks")
            due = None
        if due is not None:
            self._last = now
            for task_id, device_id in due:
                self._backlog.setdefault(device_id, []).append(task_id)
        woken = list(self._backlog)[: self._max_wakes]
        for device_id in woken:
            self._send(device_id, tuple(self._backlog.pop(device_id)), now)
        if self._backlog:
            self.log.info(
                "scheduler: {count} more device(s) to wake at the next ticks",
                count=len(self._backlog),
            )
        return woken

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
        self._store.after_commit(self._send_now, device_id)  # on the reactor thread

    def _send_now(self, device_id: int) -> None:
        def failed(failure: Failure) -> None:
            self.log.failure("waking device {device_id} failed", failure, device_id=device_id)

        try:
            d = self._wake(device_id)
        except Exception:
            self.log.failure("waking device {device_id} failed", device_id=device_id)
            return
        if isinstance(d, Deferred):
            d.addErrback(failed)
