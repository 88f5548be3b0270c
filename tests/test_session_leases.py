"""A session that ran no task gives its device's lease up with others', a moment after it
ended (acs.session_leases): its end writes nothing, the lease is free RELEASE_DELAY later,
and no release ever frees a newer session's lease."""

from __future__ import annotations

import pytest
from cwmpharness import T0, CwmpResourceCase, wire

from acs.cwmp import rpc
from acs.session_leases import RELEASE_DELAY


class QuietSessions(CwmpResourceCase):
    def lease(self, device_id: int) -> int | None:
        return self.store.device_session_node(device_id, now=self.clock.seconds())

    async def released(self) -> None:
        """The release timer's moment, and its unit run (PostgreSQL: in the pool)."""
        self.clock.advance(RELEASE_DELAY)
        await self.resource.settled()

    async def test_the_lease_of_a_quiet_session_is_given_up_a_moment_after_its_end(self) -> None:
        device = self.provisioned_device()
        cookie = (await self.start_session()).cookie
        self.assertEqual(self.lease(device.id), self.resource.node_id)
        done = await self.request(b"", cookie=cookie)
        self.assertEqual(done.code, 204)
        self.assertFalse(self.resource.in_session(device.id))  # over, whatever the lease says
        self.assertEqual(self.lease(device.id), self.resource.node_id)  # not given up yet
        await self.released()
        self.assertIsNone(self.lease(device.id))

    async def test_one_release_gives_up_the_leases_of_every_session_ended_meanwhile(self) -> None:
        devices = [self.provisioned_device(f"SN{i}") for i in range(3)]
        for device in devices:
            cookie = (await self.start_session(device.serial_number)).cookie
            self.assertEqual((await self.request(b"", cookie=cookie)).code, 204)
        self.assertEqual([self.lease(d.id) for d in devices], [self.resource.node_id] * 3)
        await self.released()
        self.assertEqual([self.lease(d.id) for d in devices], [None] * 3)

    async def test_a_new_session_of_the_device_keeps_its_lease(self) -> None:
        """The next session starts before the release (same moment, so its lease runs until
        the same time as the old one's): the release of the old one must not free it."""
        device = self.provisioned_device()
        first = (await self.start_session()).cookie
        self.assertEqual((await self.request(b"", cookie=first)).code, 204)
        second = (await self.start_session()).cookie
        await self.released()
        self.assertEqual(self.lease(device.id), self.resource.node_id)
        self.assertTrue(self.resource.in_session(device.id))
        self.assertEqual((await self.request(b"", cookie=second)).code, 204)
        await self.released()
        self.assertIsNone(self.lease(device.id))

    async def test_a_task_queued_during_a_quiet_session_runs_in_it(self) -> None:
        device = self.provisioned_device()
        cookie = (await self.start_session()).cookie
        self.engine.queue(device.id, "reboot", actor="test", wake=False, now=T0)
        asked = await self.request(b"", cookie=cookie)
        self.assertIsInstance(asked.envelope().message, rpc.Reboot)
        done = await self.request(
            wire(rpc.RebootResponse(), cwmp_id=asked.envelope().header.id), cookie=cookie
        )
        self.assertEqual(done.code, 204)
        self.assertIsNone(self.lease(device.id))  # given up in the last request's unit

    async def test_stopping_gives_up_the_leases_of_ended_sessions(self) -> None:
        device = self.provisioned_device()
        cookie = (await self.start_session()).cookie
        self.assertEqual((await self.request(b"", cookie=cookie)).code, 204)
        self.resource.stop()
        await self.resource.settled()
        self.assertIsNone(self.lease(device.id))

    @pytest.mark.sqlite_only  # SQLite's statements, as the trace callback sees them
    async def test_a_quiet_session_writes_once(self) -> None:
        """Its Inform's transaction (the record and the lease one statement, the history
        entry, the look for work); its end only reads the queue."""
        self.provisioned_device()
        first = (await self.start_session()).cookie  # the device is Up from now on
        self.assertEqual((await self.request(b"", cookie=first)).code, 204)
        statements: list[str] = []
        self.store.db.set_trace_callback(statements.append)
        self.addCleanup(self.store.db.set_trace_callback, None)
        cookie = (await self.start_session()).cookie
        self.assertEqual(statements.count("BEGIN IMMEDIATE"), 1)
        begin, commit = statements.index("BEGIN IMMEDIATE"), statements.index("COMMIT")
        written = [s for s in statements[begin + 1 : commit] if not s.startswith("PRAGMA")]
        self.assertEqual(len(written), 3, written)
        statements.clear()
        self.assertEqual((await self.request(b"", cookie=cookie)).code, 204)
        self.assertNotIn("BEGIN IMMEDIATE", statements)
        self.assertEqual(len(statements), 1, statements)  # the look at its queue
