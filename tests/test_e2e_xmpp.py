"""End to end, in process: CPEs behind NAT woken by XMPP connection requests (Annex K).

A real prosody on loopback (tests/xmppserver.py), a real ``Appliance`` logged in to it
(``[xmpp]``, STUN off) and a ``cpe-sim --nat --xmpp`` fleet: each CPE's HTTP
connection-request URL refuses connections, so a reboot asked through the API reaches it
only through its XMPP session (periodic informs are off). Waits are on events (logins,
the CPEs' sessions, the API's ?timeout), each bounded.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from e2eharness import ApplianceWithFleet, until
from twisted.internet import defer
from twisted.words.protocols.jabber import jid
from xmppserver import prosody, require_prosody

from acs.config import XmppConfig
from acs.cwmp.paths import JABBER_ID
from acs.xmpp import XMPP_ACCOUNTS_SECRET, device_account
from cpe_sim.fleet import SimulatedCPE
from cpe_sim.xmpp import XmppOptions

CONNECTION_REQUEST = "6 CONNECTION REQUEST"


class XmppWake(ApplianceWithFleet):
    """CPEs with XMPP accounts of their own (from their vendor: here, made by the
    simulator with in-band registration)."""

    COUNT = 50
    ACCOUNTS = False

    def setUp(self) -> defer.Deferred[None]:  # type: ignore[override]
        require_prosody()
        return defer.Deferred.fromCoroutine(self.start_with_xmpp())

    async def start_with_xmpp(self) -> None:
        home = Path(tempfile.mkdtemp(prefix="acs-e2e-xmpp-"))
        self.addCleanup(shutil.rmtree, home, ignore_errors=True)
        self.server = self.enterContext(prosody(home))
        self.server.register("acs", "acs-password")
        xmpp = XmppConfig(
            server=f"127.0.0.1:{self.server.port}",
            jid=f"acs@{self.server.domain}",
            password="acs-password",
            ca_file=str(self.server.ca_file),
            accounts=self.ACCOUNTS,
        )
        await self.start_appliance(self.tempdir(), xmpp=xmpp)
        acs = self.appliance.xmpp
        assert acs is not None
        await self.bounded(acs.when_logged_in())
        options = XmppOptions(
            self.server.host, self.server.port, self.server.domain, self.server.ca
        )
        await self.start_fleet(model="tr181", nat=True, xmpp=options)
        # Each CPE's JID reaches the ACS at provisioning, or in the VALUE CHANGE Inform
        # that follows its login; wait for that Inform too (a session in flight would take
        # the test's tasks before any connection request).
        for cpe in self.fleet.cpes:
            assert cpe.xmpp is not None
            try:
                await self.bounded(cpe.xmpp.bound(), 60)
                # A CPE whose login failed waits up to a minute before the next (TR-181
                # ServerRetry*, the simulator's factory values).
                await until(cpe, lambda cpe=cpe: self.settled(cpe), wait=90)
            except (defer.TimeoutError, AssertionError) as exc:
                sim = cpe.xmpp
                raise AssertionError(
                    f"{cpe.serial} not settled: jid {sim.jid} stored {self.stored_jid(cpe)} "
                    f"status {sim.status} problem {sim.last_problem} {sim.counters} "
                    f"busy {cpe.busy} pending {cpe.pending_events}"
                ) from exc

    def settled(self, cpe: SimulatedCPE) -> bool:
        assert cpe.xmpp is not None
        known = self.stored_jid(cpe) == cpe.xmpp.jid
        return known and self.own_account(cpe) and not cpe.busy and not cpe.pending_events

    def own_account(self, cpe: SimulatedCPE) -> bool:
        """Whether the CPE is logged in with the account it should end up with."""
        return True

    def stored_jid(self, cpe: SimulatedCPE) -> jid.JID | None:
        value = self.appliance.store.get_parameter(self.device(cpe).id, f"Device.{JABBER_ID}")
        return jid.JID(value.value) if value is not None and value.value else None

    def informs(self, cpe: SimulatedCPE) -> list[list[str]]:
        history = self.appliance.store.history(self.device(cpe).id)
        return [e.detail["events"] for e in reversed(history) if e.action == "inform"]

    def attempts(self, cpe: SimulatedCPE) -> list[tuple[str, str]]:
        history = reversed(self.appliance.store.history(self.device(cpe).id))
        return [
            (e.detail["via"], e.detail["outcome"])
            for e in history
            if e.action == "connection_request"
        ]

    async def test_a_reboot_through_the_api_reaches_every_cpe_by_xmpp(self) -> None:
        for cpe in self.fleet.cpes:
            allowed = cpe.value("Device.ManagementServer.ConnReqAllowedJabberIDs")
            self.assertEqual(allowed, f"acs@{self.server.domain}")  # provisioning set it

        seconds = await self.reboot_all()
        self.assertLess(seconds, 30)  # the next periodic Inform would be never (they are off)
        for cpe in self.fleet.cpes:
            assert cpe.xmpp is not None
            self.assertEqual(cpe.xmpp.counters.accepted, 1, cpe.serial)
            self.assertEqual(dict(cpe.xmpp.counters.rejected), {}, cpe.serial)
            events = self.informs(cpe)
            self.assertIn(CONNECTION_REQUEST, events[-2], cpe.serial)  # woken, then rebooted
            self.assertIn("1 BOOT", events[-1], cpe.serial)
            # XMPP first, answered: HTTP was never needed (its URL refuses connections).
            self.assertEqual(self.attempts(cpe)[-1], ("xmpp", "answered"), cpe.serial)
            self.assertNotIn("http", [via for via, _ in self.attempts(cpe)], cpe.serial)

    async def test_wrong_credentials_wake_nobody_and_say_so(self) -> None:
        cpe = self.fleet.cpes[0]
        assert cpe.xmpp is not None and cpe.xmpp.jid is not None
        acs = self.appliance.xmpp
        assert acs is not None
        sessions = len(self.informs(cpe))
        refused = await self.bounded(acs.request(cpe.xmpp.jid, "someone", "guess"))
        self.assertEqual(refused.outcome, "auth_failed")
        self.assertEqual(cpe.xmpp.counters.rejected, {"unauthorized": 1})
        # The ACS's own request, with the device's credentials, still works.
        woken = cpe.next_session()
        self.assertEqual(
            await self.bounded(self.appliance.connreq.wake(self.device(cpe).id)), "answered"
        )
        await self.bounded(woken)
        self.assertEqual(self.informs(cpe)[-1], [CONNECTION_REQUEST])
        self.assertEqual(len(self.informs(cpe)), sessions + 1)


class XmppAccountsWake(XmppWake):
    """[xmpp] accounts: the ACS gives each CPE an account of its own (in-band registration
    by the ACS) in its XMPP.Connection.1, and the CPE logs in with it."""

    COUNT = 10
    ACCOUNTS = True

    def own_account(self, cpe: SimulatedCPE) -> bool:
        assert cpe.xmpp is not None
        secret = self.appliance.store.server_secret(XMPP_ACCOUNTS_SECRET)
        identity = self.device(cpe).unique_identifier or cpe.serial
        username, _ = device_account(secret, identity)
        return cpe.xmpp.jid is not None and cpe.xmpp.jid.user == username

    async def test_each_cpe_logs_in_with_the_account_the_acs_gave_it(self) -> None:
        for cpe in self.fleet.cpes:
            self.assertTrue(self.own_account(cpe), cpe.serial)
            [task] = [
                t for t in self.appliance.store.tasks_for_device(self.device(cpe).id)
                if t.kind == "provision"
            ]  # fmt: skip
            assert task.result is not None
            self.assertEqual(task.result["xmpp_account"], cpe.xmpp.jid.userhost())  # type: ignore[union-attr]
