"""End to end through the REST API: device operations reach simulated CPEs over real HTTP.

A real Appliance listens on loopback (CWMP and API), a small cpe_sim fleet bootstraps against
it, and the test drives the API with treq and a bearer token created in the store. Waiting is
by events (a CPE's `next_session()` Deferred), never by sleeping; every wait is bounded.
"""

from __future__ import annotations

from typing import Any

from e2eharness import ApplianceWithFleet, bounded, now, until
from twisted.internet import defer

from acs.store.models import DONE, UP, Device

TOKEN_NAME = "e2e-operator"  # the harness's operator token


class ApiOperationsEndToEnd(ApplianceWithFleet):
    COUNT = 2

    async def set_up(self) -> None:
        await self.start(self.tempdir(), connection_request_timeout=1, update_status_timeout=2)
        # Bootstrap sessions provision the CPEs; wait until each is provisioned.
        for cpe in self.fleet.cpes:
            await until(cpe, lambda cpe=cpe: self.device(cpe).provisioned)  # type: ignore[misc]

    def setUp(self) -> defer.Deferred[None]:  # type: ignore[override]
        return defer.ensureDeferred(self.set_up())

    def kinds_done(self, device: Device, kind: str) -> bool:
        return any(
            t.kind == kind and t.state == DONE
            for t in self.appliance.store.tasks_for_device(device.id)
        )

    def actions(self, device: Device) -> list[tuple[str, str, dict[str, Any]]]:
        history = self.appliance.store.history(device.id, limit=1000)
        return [(h.action, h.actor, h.detail) for h in reversed(history)]

    async def test_patch_reboot_reboots_the_cpe_and_clears_pending(self) -> None:
        cpe = self.fleet.cpes[0]
        device = self.device(cpe)
        code, body = await self.api("PATCH", f"/inventory_device/{device.id}/", {"reboot": True})
        self.assertEqual(code, 200, body)
        await until(cpe, lambda: self.kinds_done(device, "reboot"))
        self.assertEqual(cpe.reboots, 1)
        code, body = await self.api("GET", f"/inventory_device/{device.id}/?pending=true")
        self.assertEqual(code, 200)
        self.assertIsNone(body["pending_settings"])
        steps = self.actions(device)
        queued = [i for i, s in enumerate(steps) if s[0] == "task_queued" and s[1] == TOKEN_NAME]
        woke = [i for i, s in enumerate(steps) if s[0] == "connection_request"]
        reboot_informs = [
            i for i, s in enumerate(steps) if s[0] == "inform" and "M Reboot" in s[2]["events"]
        ]
        done = [i for i, s in enumerate(steps) if s[0] == "task_done" and s[2]["kind"] == "reboot"]
        self.assertTrue(queued and woke and reboot_informs and done, steps)
        # In order: queued by the token, woken, rebooted and back with M Reboot, done.
        self.assertLess(queued[-1], woke[-1])
        self.assertLess(woke[-1], reboot_informs[-1])
        self.assertLessEqual(reboot_informs[-1], done[-1])

    async def test_patch_factory_wipes_settings_and_cpe_bootstraps(self) -> None:
        cpe = self.fleet.cpes[1]
        device = self.device(cpe)
        store = self.appliance.store
        store.set_desired_settings(
            device.id,
            {f"{cpe.root}DeviceInfo.ProvisioningCode": "abc"},
            now=now(),
            actor="test",
        )
        code, body = await self.api("PATCH", f"/inventory_device/{device.id}/", {"factory": True})
        self.assertEqual(code, 200, body)
        self.assertEqual(store.desired_settings(device.id), [])
        await until(cpe, lambda: self.kinds_done(device, "factory_reset"))
        self.assertEqual(cpe.factory_resets, 1)
        informs = [d["events"] for a, _, d in self.actions(device) if a == "inform"]
        # The first bootstrap was the CPE's initial one; the reset brought a second.
        self.assertGreaterEqual(sum("0 BOOTSTRAP" in events for events in informs), 2)
        cleared = [(a, actor) for a, actor, _ in self.actions(device) if a == "settings_cleared"]
        self.assertEqual(cleared, [("settings_cleared", TOKEN_NAME)])

    async def test_device_factory_keeps_settings_and_reapplies_them(self) -> None:
        cpe = self.fleet.cpes[0]
        device = self.device(cpe)
        path = f"{cpe.root}DeviceInfo.ProvisioningCode"
        store = self.appliance.store
        store.set_desired_settings(device.id, {path: "site-42"}, now=now(), actor="t")
        # Confirmed: as if the CPE had applied it before, so nothing would push it again
        # unless the device_factory re-applies the kept settings after the bootstrap.
        store.confirm_settings(device.id, [path], now=now())
        code, body = await self.api(
            "PATCH", f"/inventory_device/{device.id}/", {"device_factory": True}
        )
        self.assertEqual(code, 200, body)
        await until(cpe, lambda: self.kinds_done(device, "device_factory_reset"))
        self.assertEqual(cpe.factory_resets, 1)
        await until(cpe, lambda: self.kinds_done(device, "configuration_update"))
        self.assertEqual(cpe.value(path), "site-42")
        self.assertEqual(store.unconfirmed_settings_count(device.id), 0)

    async def test_patch_schedule_inform_brings_the_scheduled_inform(self) -> None:
        cpe = self.fleet.cpes[1]
        device = self.device(cpe)
        # One second is the shortest DelaySeconds; the simulator's timer runs on the reactor.
        code, body = await self.api(
            "PATCH",
            f"/inventory_device/{device.id}/?pending=true",
            {"schedule_inform": {"delay_seconds": 1}},
        )
        self.assertEqual(code, 200, body)
        self.assertEqual(body["pending_settings"], "schedule_inform:pending")
        await until(cpe, lambda: self.kinds_done(device, "schedule_inform"))
        (task,) = [
            t
            for t in self.appliance.store.tasks_for_device(device.id)
            if t.kind == "schedule_inform"
        ]
        self.assertEqual(task.actor, TOKEN_NAME)
        self.assertEqual(task.args, {"delay_seconds": 1})
        events = (task.result or {})["events"]
        self.assertIn("3 SCHEDULED", events)
        self.assertIn("M ScheduleInform", events)
        # The confirming Inform came in a later session than the one that sent the RPC.
        steps = self.actions(device)
        sent = [i for i, s in enumerate(steps) if s[0] == "connection_request"]
        confirmed = [
            i for i, s in enumerate(steps) if s[0] == "inform" and "3 SCHEDULED" in s[2]["events"]
        ]
        self.assertTrue(sent and confirmed, steps)
        self.assertLess(sent[-1], confirmed[-1])
        code, body = await self.api("GET", f"/inventory_device/{device.id}/?pending=true")
        self.assertEqual(code, 200)
        self.assertIsNone(body["pending_settings"])

    async def test_update_status_reports_live_up_and_stopped_down(self) -> None:
        live, stopped = self.fleet.cpes
        await bounded(stopped.stop())
        start = now()
        code, body = await self.api("GET", "/inventory_device/?update_status=true")
        elapsed = now() - start
        self.assertEqual(code, 200, body)
        statuses = {r["serial_number"]: r["status"] for r in body["results"]}
        self.assertEqual(statuses, {live.serial: "Up", stopped.serial: "Down"})
        self.assertLess(elapsed, 2 + 1.5)  # update_status_timeout = 2 s, plus slack
        self.assertEqual(self.device(live).status, UP)
