"""Device impersonation (issue 9): a real ACS on 127.0.0.1 and real cpe_sim CPEs.

Provisioning gives each device its own ManagementServer.Username/Password; from then on a
client that knows only a serial number cannot Inform as that device (take over its
ConnectionRequestURL, end its session, receive its transfer URLs). A factory reset the ACS
ordered re-admits the CPE with first-contact credentials; one done by hand is re-admitted by
an operator clearing the device's username.
"""

from __future__ import annotations

from typing import Any

import treq
from cwmpharness import make_inform, wire
from e2eharness import ApplianceWithFleet, bounded, until
from twisted.internet import defer, reactor
from twisted.web.client import HTTPConnectionPool

from acs import httpdigest
from acs.cwmp import rpc
from acs.store.models import DONE
from cpe_sim.cpe import SimulatedCPE


class DeviceCredentials(ApplianceWithFleet):
    COUNT = 2

    async def set_up(self) -> None:
        await self.start(self.tempdir(), connection_request_timeout=1)
        for cpe in self.fleet.cpes:
            await until(cpe, lambda cpe=cpe: bool(self.device(cpe).username))  # type: ignore[misc]

    def setUp(self) -> defer.Deferred[None]:  # type: ignore[override]
        return defer.ensureDeferred(self.set_up())

    def credentials(self, cpe: SimulatedCPE) -> tuple[str | None, str | None]:
        ms = f"{cpe.root}ManagementServer."
        return cpe.value(ms + "Username"), cpe.value(ms + "Password")

    async def post(self, body: bytes, headers: dict[str, str] | None = None) -> Any:
        pool = HTTPConnectionPool(reactor, persistent=False)
        response = await bounded(
            treq.post(self.acs_url, data=body, headers=headers or {}, pool=pool)
        )
        await bounded(treq.content(response))
        return response

    async def test_each_device_gets_its_own_credentials_and_uses_them(self) -> None:
        passwords = set()
        for cpe in self.fleet.cpes:
            device = self.device(cpe)
            self.assertEqual(self.credentials(cpe), (device.username, device.password))
            assert device.password is not None
            self.assertGreaterEqual(len(device.password), 32)
            passwords.add(device.password)
            # The password the ACS chose is never shown by the API.
            code, body = await self.api("GET", f"/inventory_device/{device.id}/")
            self.assertEqual(code, 200)
            self.assertNotIn(device.password, repr(body))
            before = cpe.sessions_ok
            await bounded(cpe.inform(rpc.EventStruct("2 PERIODIC")))
            self.assertEqual(cpe.sessions_ok, before + 1, cpe.last_error)
        self.assertEqual(len(passwords), 2)

    async def test_a_client_knowing_only_the_serial_cannot_inform_as_the_device(self) -> None:
        victim = self.fleet.cpes[0]
        device = self.device(victim)
        history = len(self.appliance.store.history(device.id, limit=1000))
        inform = make_inform(victim.serial)
        body = wire(inform)
        challenged = await self.post(body)
        self.assertEqual(challenged.code, 401)
        (challenge,) = challenged.headers.getRawHeaders("www-authenticate")
        # Answered as a first contact (no shared credentials configured) and with guesses.
        for username, password in (("", ""), (device.username, ""), (victim.serial, "x")):
            auth = httpdigest.authorization_for(
                challenge,
                method="POST",
                uri="/",
                username=username or "",
                password=password,
                cnonce="c0ffee",
            )
            refused = await self.post(body, {"Authorization": auth})
            self.assertEqual(refused.code, 401)
        after = self.device(victim)
        self.assertEqual(after.connection_request_url, device.connection_request_url)
        self.assertEqual(len(self.appliance.store.history(device.id, limit=1000)), history)
        before = victim.sessions_ok
        await bounded(victim.inform(rpc.EventStruct("2 PERIODIC")))
        self.assertEqual(victim.sessions_ok, before + 1, victim.last_error)

    async def test_a_factory_reset_the_acs_ordered_readmits_with_new_credentials(self) -> None:
        cpe = self.fleet.cpes[1]
        device = self.device(cpe)
        code, body = await self.api("PATCH", f"/inventory_device/{device.id}/", {"factory": True})
        self.assertEqual(code, 200, body)
        await until(
            cpe,
            lambda: any(
                t.kind == "factory_reset" and t.state == DONE
                for t in self.appliance.store.tasks_for_device(device.id)
            ),
        )
        self.assertEqual(cpe.factory_resets, 1)
        await until(cpe, lambda: bool(self.device(cpe).username))
        again = self.device(cpe)
        self.assertNotEqual(again.password, device.password)
        self.assertEqual(self.credentials(cpe), (again.username, again.password))

    async def test_a_device_reset_by_hand_is_readmitted_once_its_username_is_cleared(
        self,
    ) -> None:
        cpe = self.fleet.cpes[0]
        device = self.device(cpe)
        ms = f"{cpe.root}ManagementServer."
        for name in ("Username", "Password"):
            cpe.model.set_raw(ms + name, "")  # what a reset button does to them
        failed = cpe.sessions_failed
        await bounded(cpe.inform(rpc.EventStruct("0 BOOTSTRAP")))
        self.assertEqual(cpe.sessions_failed, failed + 1)
        self.assertIn("401", cpe.last_error or "")
        code, body = await self.api("PATCH", f"/inventory_device/{device.id}/", {"username": None})
        self.assertEqual(code, 200, body)
        await bounded(cpe.inform())
        await until(cpe, lambda: bool(self.device(cpe).username))
        again = self.device(cpe)
        self.assertNotEqual(again.password, device.password)
        self.assertEqual(self.credentials(cpe), (again.username, again.password))
