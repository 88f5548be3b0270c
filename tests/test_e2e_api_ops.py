"""End to end through the REST API: device operations reach simulated CPEs over real HTTP.

A real Appliance listens on loopback (CWMP and API), a small cpe_sim fleet bootstraps against
it, and the test drives the API with treq and a bearer token created in the store. Waiting is
by events (a CPE's `next_session()` Deferred), never by sleeping; every wait is bounded.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import treq
from twisted.internet import defer, reactor
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool

from acs.config import ApiConfig, Config, CwmpConfig, FilesConfig, StorageConfig
from acs.service import Appliance
from acs.store.models import DONE, UP, Device
from cpe_sim.fleet import Fleet, SimulatedCPE

LOOPBACK = "tcp:0:interface=127.0.0.1"
WAIT = 20.0  # upper bound for any single wait; reached only when something is broken
TOKEN_NAME = "e2e-operator"


def now() -> float:
    clock: Any = reactor  # mypy (no zope plugin) can't call methods declared on an Interface
    return float(clock.seconds())


async def bounded(d: defer.Deferred[Any], timeout: float = WAIT) -> Any:
    d.addTimeout(timeout, reactor)
    return await d


async def until(cpe: SimulatedCPE, done: Callable[[], bool], *, sessions: int = 8) -> None:
    """Wait, one completed CPE session at a time, until `done()` holds (bounded)."""
    for _ in range(sessions):
        if done():
            return
        await bounded(cpe.next_session())
    if not done():
        raise AssertionError(f"condition still false after {sessions} sessions of {cpe.serial}")


class ApiOperationsEndToEnd(unittest.TestCase):
    COUNT = 2

    async def _start(self) -> None:
        tmp = Path(tempfile.mkdtemp(prefix="acs-e2e-ops-"))
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        config = Config(
            storage=StorageConfig(database=str(tmp / "acs.db"), files=str(tmp / "files")),
            cwmp=CwmpConfig(listen=LOOPBACK, connection_request_timeout=1),
            api=ApiConfig(listen=LOOPBACK, update_status_timeout=2),
            files=FilesConfig(listen=LOOPBACK),
        )
        self.appliance = Appliance(config, reactor)
        self.appliance.service.startService()
        self.addCleanup(self.appliance.service.stopService)
        ports = await bounded(self.appliance.when_listening())
        self.api_url = f"http://127.0.0.1:{ports['api'].getHost().port}/api/v1"
        cwmp_url = f"http://127.0.0.1:{ports['cwmp'].getHost().port}/"
        self.fleet = Fleet(
            reactor,
            acs_url=cwmp_url,
            count=self.COUNT,
            model="mixed",
            reboot_delay=0.05,
            periodic=False,
        )
        first = [cpe.next_session() for cpe in self.fleet.cpes]
        await self.fleet.start()
        self.addCleanup(self.fleet.stop)
        await bounded(defer.gatherResults(first))
        # Bootstrap sessions provision the CPEs; wait until each is provisioned.
        for cpe in self.fleet.cpes:
            await until(cpe, lambda cpe=cpe: self.device(cpe).provisioned)  # type: ignore[misc]
        _, self.token = self.appliance.store.create_token(TOKEN_NAME, "operator", [], now=now())
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)

    def setUp(self) -> defer.Deferred[None]:  # type: ignore[override]
        return defer.ensureDeferred(self._start())

    def device(self, cpe: SimulatedCPE) -> Device:
        device = self.appliance.store.find_device_by_serial(cpe.serial)
        assert device is not None, f"{cpe.serial} not registered"
        return device

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {
            "headers": {"Authorization": f"Bearer {self.token}"},
            "pool": self.pool,
        }
        if body is not None:
            kwargs["json"] = body
        response = await bounded(treq.request(method, self.api_url + path, **kwargs))
        content = await bounded(treq.json_content(response))
        return response.code, content

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
