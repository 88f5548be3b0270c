"""End to end, in process: connection requests from the real appliance to simulated CPEs.

A real ``Appliance`` on loopback and a fleet with periodic informs off, so a session can only
come from a connection request. Synchronisation is by events (the CPE's ``next_session()``
and the outcome Deferred of ``connreq.wake``), every wait bounded.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial import unittest

from acs.config import ApiConfig, Config, CwmpConfig, FilesConfig, StorageConfig
from acs.service import Appliance
from acs.store.models import DOWN, UP, Device
from cpe_sim.fleet import Fleet, SimulatedCPE

LOOPBACK = "tcp:0:interface=127.0.0.1"
WAIT = 10.0  # bound on every wait; reached only when something is broken
CONNECTION_REQUEST = "6 CONNECTION REQUEST"


class ConnectionRequestTests(unittest.TestCase):
    def setUp(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self.start())

    async def start(self) -> None:
        tmp = Path(tempfile.mkdtemp(prefix="acs-connreq-"))
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        config = Config(
            storage=StorageConfig(database=str(tmp / "acs.db"), files=str(tmp / "files")),
            cwmp=CwmpConfig(listen=LOOPBACK, connection_request_timeout=2),
            api=ApiConfig(listen=LOOPBACK),
            files=FilesConfig(listen=LOOPBACK),
        )
        self.appliance = Appliance(config, reactor)
        self.appliance.service.startService()
        self.addCleanup(self.appliance.service.stopService)
        port = (await self.bounded(self.appliance.when_listening()))["cwmp"]
        self.fleet = Fleet(
            reactor,
            acs_url=f"http://127.0.0.1:{port.getHost().port}/",
            count=2,
            model="mixed",
            periodic=False,  # no session unless a connection request asks for one
        )
        bootstraps = [cpe.next_session() for cpe in self.fleet.cpes]
        await self.bounded(self.fleet.start())
        self.addCleanup(self.fleet.stop)
        await self.bounded(defer.gatherResults(bootstraps))
        self.store = self.appliance.store

    @staticmethod
    async def bounded(d: defer.Deferred[Any]) -> Any:
        d.addTimeout(WAIT, reactor)
        return await d

    def device(self, cpe: SimulatedCPE) -> Device:
        device = self.store.find_device_by_serial(cpe.serial)
        assert device is not None, f"{cpe.serial} not registered"
        return device

    def history(self, cpe: SimulatedCPE, action: str) -> list[dict[str, Any]]:
        """``action`` entries of the CPE's device, oldest first."""
        entries = self.store.history(self.device(cpe).id)
        return [e.detail for e in reversed(entries) if e.action == action]

    async def test_wake_is_answered_and_the_cpe_informs_connection_request_at_once(
        self,
    ) -> None:
        for cpe in self.fleet.cpes:  # one of each data-model root
            self.assertTrue(self.device(cpe).provisioned, cpe.root)
            informs_before = len(self.history(cpe, "inform"))
            woken = cpe.next_session()

            outcome = await self.bounded(self.appliance.connreq.wake(self.device(cpe).id))

            self.assertEqual(outcome, "answered", cpe.root)
            await self.bounded(woken)
            self.assertEqual(cpe.sessions_failed, 0, cpe.last_error)
            informs = self.history(cpe, "inform")
            self.assertEqual(len(informs), informs_before + 1, cpe.root)
            self.assertEqual(informs[-1]["events"], [CONNECTION_REQUEST], cpe.root)
            [request] = self.history(cpe, "connection_request")
            self.assertEqual(request["outcome"], "answered", cpe.root)
            self.assertEqual(self.device(cpe).status, UP, cpe.root)

    async def test_stopped_cpe_is_unreachable_and_goes_down(self) -> None:
        cpe, other = self.fleet.cpes
        await self.bounded(cpe.stop())
        self.assertEqual(self.device(cpe).status, UP)

        outcome = await self.bounded(self.appliance.connreq.wake(self.device(cpe).id))

        self.assertIn(outcome, ("refused", "timeout"))
        self.assertEqual(self.device(cpe).status, DOWN)
        [request] = self.history(cpe, "connection_request")
        self.assertEqual(request["outcome"], outcome)
        self.assertEqual(len(self.history(cpe, "inform")), 1)  # the bootstrap only
        # The rest of the fleet is untouched.
        self.assertEqual(self.device(other).status, UP)

    async def test_stopped_fleet_refuses_the_connection_and_the_device_goes_down(self) -> None:
        await self.bounded(self.fleet.stop())  # the connection-request listener is closed
        cpe = self.fleet.cpes[1]

        outcome = await self.bounded(self.appliance.connreq.wake(self.device(cpe).id))

        self.assertEqual(outcome, "refused")
        self.assertEqual(self.device(cpe).status, DOWN)
