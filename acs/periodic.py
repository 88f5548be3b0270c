"""Services that do one thing every few seconds on the injected clock.

The liveness sweep, the scheduler and the transfer watch all run a ``LoopingCall`` while their
service runs; this owns that lifecycle once. Time comes from the reactor handed in, so tests
drive a ``task.Clock``.

A job that must run once however many ACS processes share the database is ``share``d: it
then runs only while this process holds its lease in the store (acs.store.leases), named
after the service and renewed at every run; another process takes it over once a holder
that stopped renewing has let it expire (``lease_seconds``); at once after a clean stop
(the appliance gives its leases up as it closes the store), or when the holder was a
process of this host that is gone (:func:`node_gone`: a restart after a crash).
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable
from typing import Any, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from acs.clock import Clock
from acs.store import Store

log = Logger(namespace="acs.periodic")
# The shortest lease: a few missed runs (a long transaction, a busy reactor) must not hand
# the job to another process, which would then run it alongside for a while.
MIN_LEASE_SECONDS = 15.0


def node_name() -> str:
    """A name for this process among all that share the database: ``host-pid-random``."""
    return f"{socket.gethostname()[:64]}-{os.getpid()}-{secrets.token_hex(3)}"


def node_gone(node: str) -> bool:
    """Whether ``node`` (a :func:`node_name`) was a process of this host that no longer
    runs: an appliance restarted after a crash takes its own jobs back at once instead of
    waiting for their leases to expire. A live process of the same pid (reused) only makes
    it wait, the safe way."""
    parts = node.rsplit("-", 2)
    if len(parts) != 3:
        return False
    host, pid, _random = parts
    if host != socket.gethostname()[:64] or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists (another user's): alive
        return False
    return False


def lease_seconds(interval: float) -> float:
    """How long a job run every ``interval`` seconds holds its lease: three runs, and at
    least ``MIN_LEASE_SECONDS`` (clock skew and a slow run must not hand it over)."""
    return max(3 * interval, MIN_LEASE_SECONDS)


class JobLease:
    """Whether ``holder`` (this process) runs the cluster-wide job ``name`` now: asked at
    each run, which takes the lease or renews it for ``seconds``. A lease whose holder was
    a process of this host that is gone is taken over at once; a change of hands is logged.
    The holder gives its leases up when it closes the store (``Store.drop_leases``)."""

    def __init__(self, store: Store, holder: str, name: str, seconds: float) -> None:
        self._store = store
        self.holder = holder
        self.name = name
        self.seconds = seconds
        self._holding = False  # whether the last ask found the lease this process's

    def held(self, now: float) -> bool:
        """Take or renew the lease: whether this process holds it (False when the store
        failed: the job waits for its next run)."""
        try:
            held = self._take(now)
        except Exception:
            return self._failed(Failure())
        return self._changed(held)

    def later(self, now: float) -> Deferred[bool]:
        """`held`, as a unit of work of the store (off the reactor thread on PostgreSQL)."""
        taken: Deferred[bool] = self._store.run(self._take, now)
        return taken.addCallbacks(self._changed, self._failed)

    def _take(self, now: float) -> bool:
        store, name = self._store, self.name
        held = store.take_lease(name, self.holder, now=now, seconds=self.seconds)
        if not held:
            current = store.lease_holder(name, now=now)
            if current is not None and node_gone(current):
                held = store.take_lease(
                    name, self.holder, now=now, seconds=self.seconds, replaces=current
                )
        return held

    def _failed(self, failure: Failure) -> bool:
        log.failure("{name}: cannot take its lease", failure, name=self.name)
        return False

    def _changed(self, held: bool) -> bool:
        if held != self._holding:
            self._holding = held
            log.info(
                "{name}: {what} node={node}",
                name=self.name,
                what="this node runs it now" if held else "another node runs it now",
                node=self.holder,
            )
        return held


class PeriodicService(Service):
    """Calls ``work()`` every ``interval`` seconds while running (first call at start when
    ``run_at_start``). ``work`` must not raise: a periodic job logs its own failures and tries
    again next time, so the loop only ends through ``stopService``, which waits for a run
    under way."""

    def __init__(
        self,
        clock: Clock,
        interval: float,
        work: Callable[[], object],
        *,
        run_at_start: bool = True,
        store: Store | None = None,
    ) -> None:
        """``clock``: the reactor, or a task.Clock in tests. ``store``: ``work`` is made of
        calls to this store (its own transactions) and touches the reactor only through
        `Store.after_commit`, so each run is a unit of work of it (`Store.read`: on
        PostgreSQL in the store's pool, not on the reactor thread)."""
        if interval <= 0:
            raise ValueError("interval must be > 0")
        self.clock = clock
        self.interval = interval
        self._work = work
        self._run_at_start = run_at_start
        self._units = store
        self._loop: LoopingCall | None = None
        self._ended: Deferred[Any] | None = None
        self._lease: JobLease | None = None
        self.lease_seconds = lease_seconds(interval)

    def share(self, store: Store, holder: str) -> None:
        """Run only while ``holder`` (this process) holds the job's lease in ``store``, the
        lease named after the service. The holder gives its leases up when it closes the
        store (``Store.drop_leases``)."""
        if not self.name:
            raise ValueError("a shared job needs a name (its lease's)")
        self._lease = JobLease(store, holder, self.name, self.lease_seconds)

    def _tick(self) -> object:
        if self._lease is None:
            return self._once()
        held = self._lease.later(self.clock.seconds())
        # On PostgreSQL the lease's unit may come back after the service stopped (and the
        # store closed): then the job does not run.
        return held.addCallback(lambda mine: self._once() if mine and self.running else None)

    def _once(self) -> object:
        if self._units is None:
            return self._work()
        return self._units.read(self._work).addErrback(self._once_failed)

    def _once_failed(self, failure: Failure) -> None:
        # `work` logs its own failures; one that escapes must not end the loop.
        log.failure("{name} failed a run", failure, name=self.name)

    def startService(self) -> None:
        super().startService()
        loop = LoopingCall(self._tick)
        loop.clock = cast(IReactorTime, self.clock)  # the zope interface mypy cannot match
        self._loop = loop
        # Fires once the loop stopped and the run under way (if any) is over.
        self._ended = loop.start(self.interval, now=self._run_at_start).addErrback(
            lambda failure: log.failure("{name} stopped", failure, name=self.name)
        )

    def stopService(self) -> Any:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        ended, self._ended = self._ended, None
        super().stopService()
        return ended
