"""Services that do one thing every few seconds on the injected clock.

The liveness sweep, the scheduler and the transfer watch all run a ``LoopingCall`` while their
service runs; this owns that lifecycle once. Time comes from the reactor handed in, so tests
drive a ``task.Clock``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from acs.clock import Clock

log = Logger(namespace="acs.periodic")


class PeriodicService(Service):
    """Calls ``work()`` every ``interval`` seconds while running (first call at start when
    ``run_at_start``). ``work`` must not raise: a periodic job logs its own failures and tries
    again next time, so the loop only ends through ``stopService``."""

    def __init__(
        self,
        clock: Clock,
        interval: float,
        work: Callable[[], object],
        *,
        run_at_start: bool = True,
    ) -> None:
        """``clock``: the reactor, or a task.Clock in tests."""
        if interval <= 0:
            raise ValueError("interval must be > 0")
        self.clock = clock
        self.interval = interval
        self._work = work
        self._run_at_start = run_at_start
        self._loop: LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        loop = LoopingCall(self._work)
        loop.clock = cast(IReactorTime, self.clock)  # the zope interface mypy cannot match
        self._loop = loop
        loop.start(self.interval, now=self._run_at_start).addErrback(
            lambda failure: log.failure("{name} stopped", failure, name=self.name)
        )

    def stopService(self) -> Any:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        return super().stopService()
