"""Soak (`make test-slow`): a thousand simulated CPEs of both roots against one appliance.

Every CPE must bootstrap, be registered and provisioned, and then a round of connection
requests must reach all of them. Waits are on CPE session events, bounded, never sleeps.

CPEs and appliance share one reactor here, so a boot storm of 100 CPEs a second can fill
``[cwmp] max_sessions`` on a slow box: the ACS then answers 503 with Retry-After and the CPE
comes back, as a real one would. That is admission control working, not a failed bootstrap,
so the test waits for each CPE's first successful session and checks that every failed one
was such a 503.
"""

from __future__ import annotations

import pytest
from e2eharness import ApplianceWithFleet
from twisted.internet import defer

from acs.store.models import UP

pytestmark = pytest.mark.slow

COUNT = 1000
BOUND = 240.0  # seconds for the whole fleet to finish a round; reached only when broken


class ThousandCpes(ApplianceWithFleet):
    async def test_a_thousand_cpes_bootstrap_are_provisioned_and_answer_connection_requests(
        self,
    ) -> None:
        await self.start_appliance(self.tempdir())
        await self.start_fleet(count=COUNT, start_spread=10.0)
        await self.bounded(defer.Deferred.fromCoroutine(self.until_all_had_a_good_session()), BOUND)
        failed = sum(c.sessions_failed for c in self.fleet.cpes)
        self.assertEqual(failed, self.appliance.cwmp.busy_rejections)
        for cpe in self.fleet.cpes:
            device = self.device(cpe)
            self.assertEqual(device.status, UP)
            self.assertTrue(device.provisioned, cpe.serial)

        woken = [cpe.next_session() for cpe in self.fleet.cpes]
        wakes = [self.appliance.connreq.wake(self.device(cpe).id) for cpe in self.fleet.cpes]
        outcomes = await self.bounded(defer.gatherResults(wakes), BOUND)
        self.assertEqual(set(outcomes), {"answered"})
        await self.bounded(defer.gatherResults(woken), BOUND)

    async def until_all_had_a_good_session(self) -> None:
        """Fires once every CPE has completed a session successfully (each retries a 503)."""
        for cpe in self.fleet.cpes:
            while cpe.sessions_ok == 0:
                await cpe.next_session()
