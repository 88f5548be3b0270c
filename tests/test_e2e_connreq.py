"""End to end, in process: connection requests from the real appliance to simulated CPEs.

A real ``Appliance`` on loopback and a fleet with periodic informs off, so a session can only
come from a connection request. Synchronisation is by events (the CPE's ``next_session()``
and the outcome Deferred of ``connreq.wake``), every wait bounded.
"""

from __future__ import annotations

from typing import Any

from e2eharness import ApplianceWithFleet
from twisted.internet import defer

from acs.store.models import DOWN, UP
from cpe_sim.fleet import SimulatedCPE

CONNECTION_REQUEST = "6 CONNECTION REQUEST"


class ConnectionRequestTests(ApplianceWithFleet):
    COUNT = 2  # periodic informs off (the harness's default): sessions only on request

    def setUp(self) -> defer.Deferred[None]:  # type: ignore[override]
        return defer.Deferred.fromCoroutine(self.start_and_alias())

    async def start_and_alias(self) -> None:
        await self.start(self.tempdir())
        self.store = self.appliance.store

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
