"""The CWMP resource over a store whose units of work run later (what PostgreSQL's pool of
threads does): each request is answered once its unit ran, a device's units run in order
whatever ends its session meanwhile, and Informs under way count against max_sessions.

`LaterStore` is SQLite whose `run`/`read` run the unit in a later reactor turn, or hold it
until the test releases it; the PostgreSQL pass runs every CwmpResourceCase over the real
pool instead (tests/cwmpharness.py), so these are SQLite's alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cwmpharness import REACTOR, T0, CwmpResourceCase, make_inform, wire
from twisted.internet import defer, task
from twisted.trial import unittest

from acs.config import CwmpConfig
from acs.cwmp import rpc
from acs.periodic import PeriodicService
from acs.store import IN_PROGRESS, PENDING, Store
from acs.store.errors import StorageUnavailable

pytestmark = pytest.mark.sqlite_only


class LaterStore(Store):
    """SQLite whose units run in a later reactor turn; while `hold` is on, they wait for
    `release`."""

    runs_inline = False

    def __init__(self, conn: Any) -> None:
        super().__init__(conn)
        self.ran: list[str] = []  # the names of the units, in the order they ran
        self._holding = False
        self._held: list[defer.Deferred[None]] = []
        self._arrivals: list[defer.Deferred[None]] = []

    def run(self, unit: Callable[..., Any], *args: Any, rerun: bool = True) -> Any:
        return self._later(lambda: Store.run(self, unit, *args, rerun=rerun), unit)

    def read(self, unit: Callable[..., Any], *args: Any) -> Any:
        return self._later(lambda: Store.read(self, unit, *args), unit)

    def _later(self, go: Callable[[], Any], unit: Callable[..., Any]) -> Any:
        def now(_: object) -> Any:
            self.ran.append(unit.__name__)
            return go()

        if not self._holding:
            return task.deferLater(REACTOR, 0, lambda: None).addCallback(now)
        held: defer.Deferred[None] = defer.Deferred()
        self._held.append(held)
        arrivals, self._arrivals = self._arrivals, []
        for arrival in arrivals:
            arrival.callback(None)
        return held.addCallback(now)

    def hold(self) -> None:
        self._holding = True

    def arrival(self) -> defer.Deferred[None]:
        """Fires when the next unit is held (at once if one is already)."""
        if self._held:
            return defer.succeed(None)
        waiting: defer.Deferred[None] = defer.Deferred()
        self._arrivals.append(waiting)
        return waiting

    def release(self) -> None:
        """Run the held units in order; units from now on run in the next turn again."""
        self._holding = False
        held, self._held = self._held, []
        for unit in held:
            unit.callback(None)


class UnitsRunLater(CwmpResourceCase):
    store_class = LaterStore
    store: LaterStore

    async def test_each_answer_waits_for_its_unit_and_the_session_runs_whole(self) -> None:
        device = self.provisioned_device()
        reboot = self.engine.queue(device.id, "reboot", actor="test", wake=False, now=T0)
        self.store.hold()
        inform = defer.ensureDeferred(self.request(wire(make_inform())))
        await self.store.arrival()  # the device's lookup
        self.assertFalse(inform.called)
        self.store.release()
        cookie = (await inform).cookie
        request = (await self.request(b"", cookie=cookie)).envelope()
        self.assertIsInstance(request.message, rpc.Reboot)
        done = await self.request(
            wire(rpc.RebootResponse(), cwmp_id=request.header.id), cookie=cookie
        )
        self.assertEqual(done.code, 204)
        self.assertEqual(self.store.ran, ["admission", "_open", "_advance", "_advance"])
        row = self.store.get_task(reboot.id)
        assert row is not None
        self.assertNotEqual(row.state, PENDING)
        self.assertEqual(self.resource.active_sessions(), 0)
        self.assertIsNone(self.store.device_session_node(device.id, now=T0))

    async def test_a_session_that_times_out_during_its_unit_is_aborted_after_it(self) -> None:
        device = self.provisioned_device()
        reboot = self.engine.queue(device.id, "reboot", actor="test", wake=False, now=T0)
        cookie = (await self.start_session()).cookie
        self.store.hold()
        empty = defer.ensureDeferred(self.request(b"", cookie=cookie))
        await self.store.arrival()  # the unit that starts the reboot
        self.clock.advance(self.config.session_timeout + 1)  # the session times out meanwhile
        self.assertEqual(self.resource.active_sessions(), 0)
        self.store.release()
        reply = await empty
        self.assertEqual(reply.code, 204)  # the session is over: nothing more is asked
        # Its abort ran after the unit that started the task, so the task is not left in
        # progress and the device's session lease is given back.
        await self.store.run(lambda: None)
        self.assertEqual(self.store.ran[-3:], ["_advance", "_abort", "<lambda>"])
        row = self.store.get_task(reboot.id)
        assert row is not None
        self.assertNotEqual(row.state, IN_PROGRESS)
        self.assertIn("session aborted: timeout", str(row.fault_string))
        self.assertIsNone(self.store.device_session_node(device.id, now=self.clock.seconds()))

    async def test_informs_under_way_count_against_max_sessions(self) -> None:
        self.serve(CwmpConfig(max_sessions=1))
        self.store.hold()
        first = defer.ensureDeferred(self.request(wire(make_inform("SN0001"))))
        await self.store.arrival()
        busy = await self.request(wire(make_inform("SN0002")))
        self.assertEqual(busy.code, 503)
        self.assertIsNotNone(busy.header("retry-after"))
        self.store.release()
        self.assertEqual((await first).code, 200)
        self.assertEqual(self.store.count_devices(), 1)

    async def test_a_unit_that_fails_later_is_answered_and_stores_nothing(self) -> None:
        self.provisioned_device()
        before = self.snapshot()

        def unreachable(*args: Any, **kwargs: Any) -> Any:
            raise StorageUnavailable("the connection to PostgreSQL was lost in a transaction")

        self.patch(self.store, "record_inform_leased", unreachable)
        reply = await self.request(wire(make_inform()))
        self.assertEqual(reply.code, 503)
        self.assertIsNotNone(reply.header("retry-after"))
        self.assertIsNone(reply.header("set-cookie"))
        self.assertEqual(self.snapshot(), before)
        self.assertEqual(self.resource.active_sessions(), 0)
        self.flushLoggedErrors()


class JobLeasesLater(unittest.TestCase):
    """Periodic jobs over units that run later: a shared one runs once its lease's unit came
    back, and not at all when it stopped meanwhile (the store may be closed by then); a
    job's work is a unit itself, and stopping the job waits for the one under way."""

    async def test_a_job_runs_after_its_lease_unit_unless_it_stopped_meanwhile(self) -> None:
        store = LaterStore.open(":memory:")
        self.addCleanup(store.close)
        clock = task.Clock()
        clock.advance(T0)
        runs: list[str] = []
        for name, stop in (("a", False), ("b", True)):
            job = PeriodicService(clock, 5.0, lambda name=name: runs.append(name))
            job.setName(f"job-{name}")
            job.share(store, "node-1")
            store.hold()
            job.startService()  # its first run asks for the lease
            await store.arrival()
            self.assertEqual(runs, [] if name == "a" else ["a"])
            if stop:
                job.stopService()
            store.release()
            await store.run(lambda: None)  # after the lease's unit and what it fired
            self.assertEqual(store.lease_holder(f"job-{name}", now=T0), "node-1")
            if not stop:
                job.stopService()
        self.assertEqual(runs, ["a"])

    async def test_a_jobs_work_is_a_unit_and_its_stop_waits_for_the_run_under_way(self) -> None:
        store = LaterStore.open(":memory:")
        self.addCleanup(store.close)
        clock = task.Clock()
        clock.advance(T0)
        runs: list[float] = []

        def work() -> None:
            runs.append(clock.seconds())

        job = PeriodicService(clock, 5.0, work, store=store)
        store.hold()
        job.startService()
        await store.arrival()  # the first run waits for its unit
        self.assertEqual((runs, store.ran), ([], []))
        stopped = defer.maybeDeferred(job.stopService)
        self.assertFalse(stopped.called)  # the run under way is waited for
        store.release()
        await stopped
        self.assertEqual((runs, store.ran), ([T0], ["work"]))
        clock.advance(10)
        self.assertEqual(runs, [T0])  # stopped: no further run
