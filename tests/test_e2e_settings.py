"""End to end: a desired setting written through the REST API reaches a simulated CPE.

A real appliance on loopback, a simulated TR-181 CPE over real HTTP, and treq against the API
listener with a store-created token. The PUT's connection request is held back until the test
has seen the setting pending (otherwise a fast CPE could confirm it before the first GET, and
the test would race); then the real connection request is sent and the test waits, one CPE
session at a time, for the confirmation.
"""

from __future__ import annotations

from e2eharness import ApplianceWithFleet, until
from twisted.internet import defer

PII = "Device.ManagementServer.PeriodicInformInterval"


class DesiredSettingEndToEnd(ApplianceWithFleet):
    COUNT = 1  # model "mixed": the first CPE is TR-181 ("Device.")

    def setUp(self) -> defer.Deferred[None]:  # type: ignore[override]
        return defer.ensureDeferred(self.set_up())

    async def set_up(self) -> None:
        await self.start(self.tempdir())

    async def test_configuration_setting_is_pending_until_the_cpe_confirms_it(self) -> None:
        cpe = self.fleet.cpes[0]
        self.assertEqual(cpe.root, "Device.")
        device = self.device(cpe)
        self.assertNotEqual(cpe.value(PII), "600")

        held: list[int] = []
        connreq = self.appliance.connreq
        real_wake = connreq.wake

        def hold(device_id: int) -> defer.Deferred[str]:
            held.append(device_id)
            return defer.succeed("held")

        connreq.wake = hold  # type: ignore[method-assign]
        code, body = await self.api(
            "PUT", f"/inventory_device_operation/{device.id}/", {"configuration": {PII: 600}}
        )
        self.assertEqual(code, 200, body)
        self.assertEqual(body["configuration"][PII], "600")
        self.assertEqual(held, [device.id])

        code, body = await self.api("GET", f"/inventory_device/{device.id}/")
        self.assertEqual(code, 200, body)
        self.assertEqual(body["pending_settings"], "configuration_update")
        code, body = await self.api("GET", f"/inventory_device/{device.id}/?pending=true")
        self.assertEqual(body["pending_settings"], "configuration_update:pending")

        connreq.wake = real_wake  # type: ignore[method-assign]
        await self.bounded(real_wake(device.id))
        store = self.appliance.store
        await until(cpe, lambda: store.unconfirmed_settings_count(device.id) == 0)

        self.assertEqual(cpe.value(PII), "600")
        code, body = await self.api("GET", f"/inventory_device/{device.id}/")
        self.assertEqual(code, 200, body)
        self.assertIsNone(body["pending_settings"])
        self.assertIsNotNone(body["last_configuration"])
        # The liveness window follows the new interval.
        self.assertEqual(body["update_frequency"], 600)
        (task,) = [t for t in store.tasks_for_device(device.id) if t.kind == "configuration_update"]
        self.assertEqual((task.state, task.actor), ("done", "e2e-operator"))
