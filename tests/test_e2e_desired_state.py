"""End to end: desired state (effective settings) against 10 simulated CPEs over real HTTP.

A real appliance on loopback and a mixed fleet (TR-181 and TR-098); the REST API is called
with treq. Device type defaults (for both data model roots) plus device overrides must reach
every CPE and be confirmed; a non-writable path shows its 9008 fault per parameter and is not
pushed again; sync then reconf sends zero SetParameterValues; device_factory restores the
device's settings after the bootstrap, factory does not. Synchronisation is by CPE sessions
(`until`), never by sleeping.
"""

from __future__ import annotations

from typing import Any

from e2eharness import ApplianceWithFleet, until
from twisted.internet import defer

from acs.store.models import DONE, FAILED
from cpe_sim.fleet import SimulatedCPE

NTP = "Time.NTPServer1"
ENABLE = "Time.Enable"  # a boolean: sent as xsd:boolean, "1" and "true" are equal
CODE = "DeviceInfo.ProvisioningCode"
MANUFACTURER = "DeviceInfo.Manufacturer"


def spv_count(cpe: SimulatedCPE) -> int:
    return sum(type(m).__name__ == "SetParameterValues" for m in cpe.received)


class DesiredStateEndToEnd(ApplianceWithFleet):
    COUNT = 10

    def setUp(self) -> defer.Deferred[None]:  # type: ignore[override]
        return defer.ensureDeferred(self.set_up())

    async def set_up(self) -> None:
        await self.start(self.tempdir())

    async def settings(self, cpe: SimulatedCPE) -> dict[str, Any]:
        code, body = await self.api("GET", f"/inventory_device/{self.device(cpe).id}/settings/")
        self.assertEqual(code, 200, body)
        settings: dict[str, Any] = body["settings"]
        return settings

    def all_confirmed(self, cpe: SimulatedCPE) -> bool:
        states = self.appliance.tasks.effective_settings(self.device(cpe).id)
        return bool(states) and all(s.confirmed for s in states)

    def finished(self, cpe: SimulatedCPE, kind: str, state: str = DONE) -> bool:
        tasks = self.appliance.store.tasks_for_device(self.device(cpe).id)
        return any(t.kind == kind and t.state == state for t in tasks)

    async def wake(self, cpe: SimulatedCPE) -> None:
        await self.bounded(self.appliance.connreq.wake(self.device(cpe).id))

    async def session(self, cpe: SimulatedCPE) -> None:
        """One whole session, asked for with a connection request."""
        done = cpe.next_session()  # before the wake: the session cannot be missed
        await self.wake(cpe)
        await self.bounded(done)

    async def apply_type_defaults(self) -> None:
        """A device type with defaults for both roots; the first CPE overrides one of them."""
        store = self.appliance.store
        defaults = {f"{root}{NTP}": "127.0.0.1" for root in ("Device.", "InternetGatewayDevice.")}
        defaults |= {f"{root}{ENABLE}": "false" for root in ("Device.", "InternetGatewayDevice.")}
        dtype = store.create_device_type(
            now=1.0, actor="t", name="e2e-router", default_settings=defaults
        )
        now = float(self.appliance.reactor.seconds())
        for cpe in self.fleet.cpes:
            store.update_device(self.device(cpe).id, now=now, actor="t", type_id=dtype.id)
        first = self.fleet.cpes[0]
        code, body = await self.api(
            "PATCH",
            f"/inventory_device/{self.device(first).id}/settings/",
            {f"{first.root}{NTP}": "127.0.0.2"},
        )
        self.assertEqual(code, 200, body)
        # The type's defaults go at each CPE's next Inform: ask every CPE for one.
        for cpe in self.fleet.cpes[1:]:
            await self.wake(cpe)
        for cpe in self.fleet.cpes:
            await until(cpe, lambda cpe=cpe: self.all_confirmed(cpe))  # type: ignore[misc]

    async def test_type_defaults_and_overrides_reach_ten_cpes_and_are_confirmed(self) -> None:
        await self.apply_type_defaults()
        first = self.fleet.cpes[0]
        self.assertEqual(first.value(f"{first.root}{NTP}"), "127.0.0.2")
        for cpe in self.fleet.cpes:
            if cpe is not first:
                self.assertEqual(cpe.value(f"{cpe.root}{NTP}"), "127.0.0.1", cpe.serial)
            self.assertIn(cpe.value(f"{cpe.root}{ENABLE}"), ("false", "0"), cpe.serial)
            settings = await self.settings(cpe)
            self.assertEqual(set(settings), {f"{cpe.root}{NTP}", f"{cpe.root}{ENABLE}"})
            self.assertTrue(all(s["state"] == "confirmed" for s in settings.values()), settings)
        self.assertEqual((await self.settings(first))[f"{first.root}{NTP}"]["source"], "device")
        self.assertEqual(
            {r for r in (c.root for c in self.fleet.cpes)}, {"Device.", "InternetGatewayDevice."}
        )

        # Nothing differs any more: another session sends no SetParameterValues.
        before = spv_count(first)
        await self.session(first)
        self.assertEqual(spv_count(first), before)

    async def test_non_writable_path_shows_9008_per_parameter_and_is_not_repushed(self) -> None:
        cpe = self.fleet.cpes[0]
        device = self.device(cpe)
        code, body = await self.api(
            "PATCH",
            f"/inventory_device/{device.id}/settings/",
            {f"{cpe.root}{MANUFACTURER}": "Evil Corp", f"{cpe.root}{CODE}": "site-7"},
        )
        self.assertEqual(code, 200, body)
        await until(cpe, lambda: self.finished(cpe, "configuration_update", FAILED))
        # The refused SPV held the acceptable setting back; the follow-up push delivers it.
        await until(cpe, lambda: cpe.value(f"{cpe.root}{CODE}") == "site-7")
        self.assertEqual(cpe.value(f"{cpe.root}{MANUFACTURER}"), "Acme Networks")
        settings = await self.settings(cpe)
        refused = settings[f"{cpe.root}{MANUFACTURER}"]
        self.assertEqual((refused["state"], refused["fault"]["code"]), ("refused", 9008))
        self.assertEqual(settings[f"{cpe.root}{CODE}"]["state"], "confirmed")

        code, body = await self.api("GET", f"/inventory_device/{device.id}/history/?limit=100")
        self.assertEqual(code, 200, body)
        faults = [h["detail"] for h in body["results"] if h["action"] == "task_fault_detail"]
        self.assertEqual(
            [(f["name"], f["code"]) for f in faults[0]["parameter_faults"]],
            [(f"{cpe.root}{MANUFACTURER}", 9008)],
        )
        code, body = await self.api("GET", f"/inventory_device/{device.id}/tasks/?state=failed")
        self.assertEqual(body["results"][0]["fault_code"], 9003)
        self.assertIn("9008", body["results"][0]["fault_string"])

        # Remembered: the next sessions do not push the refused value again.
        before = spv_count(cpe)
        for _ in range(2):
            await self.session(cpe)
        self.assertEqual(spv_count(cpe), before)

    async def test_sync_then_reconf_sends_zero_spv(self) -> None:
        await self.apply_type_defaults()
        cpe = self.fleet.cpes[1]
        device = self.device(cpe)
        code, body = await self.api(
            "PATCH", f"/inventory_device/{device.id}/settings/", {f"{cpe.root}{CODE}": "site-1"}
        )
        self.assertEqual(code, 200, body)
        await until(cpe, lambda: self.all_confirmed(cpe))
        code, body = await self.api("PATCH", f"/inventory_device/{device.id}/", {"sync": True})
        self.assertEqual(code, 200, body)
        await until(cpe, lambda: self.finished(cpe, "sync"))
        synced = self.device(cpe)
        self.assertIsNotNone(synced.last_configuration)
        before = spv_count(cpe)
        code, body = await self.api("PATCH", f"/inventory_device/{device.id}/", {"reconf": True})
        self.assertEqual(code, 200, body)
        await until(cpe, lambda: self.finished(cpe, "reconf"))
        self.assertEqual(spv_count(cpe), before)
        (reconf,) = [
            t for t in self.appliance.store.tasks_for_device(device.id) if t.kind == "reconf"
        ]
        self.assertEqual(reconf.result, {"parameters": 0, "status": 0})

    async def test_device_factory_restores_settings_after_bootstrap_factory_does_not(
        self,
    ) -> None:
        kept, wiped = self.fleet.cpes[2], self.fleet.cpes[3]
        for cpe in (kept, wiped):
            code, body = await self.api(
                "PATCH",
                f"/inventory_device/{self.device(cpe).id}/settings/",
                {f"{cpe.root}{CODE}": f"site-{cpe.serial}"},
            )
            self.assertEqual(code, 200, body)
        for cpe in (kept, wiped):
            await until(cpe, lambda cpe=cpe: self.all_confirmed(cpe))  # type: ignore[misc]
            self.assertEqual(cpe.value(f"{cpe.root}{CODE}"), f"site-{cpe.serial}")

        code, body = await self.api(
            "PATCH", f"/inventory_device/{self.device(kept).id}/", {"device_factory": True}
        )
        self.assertEqual(code, 200, body)
        code, body = await self.api(
            "PATCH", f"/inventory_device/{self.device(wiped).id}/", {"factory": True}
        )
        self.assertEqual(code, 200, body)
        await until(kept, lambda: self.finished(kept, "device_factory_reset"))
        await until(
            kept,
            lambda: (
                self.finished(kept, "configuration_update")
                and self.all_confirmed(kept)
                and kept.factory_resets == 1
            ),
        )
        self.assertEqual(kept.value(f"{kept.root}{CODE}"), f"site-{kept.serial}")

        await until(wiped, lambda: self.finished(wiped, "factory_reset"))
        await until(wiped, lambda: self.device(wiped).provisioned)
        self.assertEqual(wiped.factory_resets, 1)
        self.assertEqual(wiped.value(f"{wiped.root}{CODE}"), "")
        self.assertEqual(await self.settings(wiped), {})
