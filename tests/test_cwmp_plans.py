"""No CWMP session visits the rows of other devices, whatever SQLite's statistics say.

`Store.close` runs ``PRAGMA optimize``, so a long-lived appliance file carries ANALYZE
statistics, and with them SQLite may plan a query differently than on a fresh file: the
serial-number triggers' OR across two columns became a scan of the whole fleet once
ANALYZE had counted the alt serial, NULL on nearly every device (migration 23). These
tests count SQLite's virtual machine steps of whole sessions over a fleet: a scan of the
fleet's rows costs several steps a row, so a session within the bound visited none of them.
"""

from __future__ import annotations

import pytest
from cwmpharness import T0, CwmpResourceCase, make_inform, wire

from acs.cwmp import rpc

pytestmark = pytest.mark.sqlite_only  # SQLite's planner and virtual machine

FLEET = 20_000
EVERY = 10  # the progress handler is called every EVERY steps


class SessionsOverAnalyzedFleet(CwmpResourceCase):
    def setUp(self) -> None:
        super().setUp()
        org = self.store.ensure_organization("Default").id
        self.store.bulk_seed_devices(
            (
                {"serial_number": f"F{i:06d}", "name": "n", "organization_id": org}
                for i in range(FLEET)
            ),
            now=T0,
            actor="t",
        )
        self.store.db.execute("ANALYZE")
        self.steps = 0

    def _step(self) -> int:
        self.steps += 1
        return 0

    async def session(self, serial: str, *events: str) -> list[str]:
        """A whole session of ``serial``, answering the ACS's requests; their names."""
        self.store.db.set_progress_handler(self._step, EVERY)
        self.addCleanup(self.store.db.set_progress_handler, None, 0)
        inform = await self.request(wire(make_inform(serial, events=events)))
        assert inform.code == 200, inform.body
        asked: list[str] = []
        reply = await self.request(b"", cookie=inform.cookie)
        while reply.code == 200:
            sent = reply.envelope()
            asked.append(type(sent.message).__name__)
            assert isinstance(sent.message, rpc.SetParameterValues), sent.message
            reply = await self.request(
                wire(rpc.SetParameterValuesResponse(0), sent.header.id), cookie=inform.cookie
            )
        assert reply.code == 204, reply.body
        self.store.db.set_progress_handler(None, 0)
        return asked

    async def test_a_new_cpe_registered_and_provisioned(self) -> None:
        asked = await self.session("NEW-1", "0 BOOTSTRAP")
        assert asked == ["SetParameterValues"]  # its management-server settings
        device = self.store.find_device_by_serial("NEW-1")
        assert device is not None and device.provisioned
        assert self.steps * EVERY < FLEET, self.steps

    async def test_a_periodic_inform_of_a_provisioned_cpe(self) -> None:
        await self.session("NEW-2", "0 BOOTSTRAP")
        self.steps = 0
        assert await self.session("NEW-2", "2 PERIODIC") == []
        assert self.steps * EVERY < FLEET, self.steps
