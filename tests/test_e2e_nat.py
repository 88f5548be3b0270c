"""End to end, in process: CPEs behind NAT (TR-111), woken through their STUN bindings.

A real ``Appliance`` on loopback with its STUN listener, and a ``cpe-sim --nat`` fleet:
each CPE's HTTP connection-request URL refuses connections and its NAT lets in only
datagrams from where the CPE sent, so a reboot asked through the API can reach it only by
a UDP connection request from the ACS's STUN socket (periodic informs are off). Waits are
on events (the STUN listener's datagrams, the CPEs' sessions, the API's ?timeout), each
bounded.
"""

from __future__ import annotations

from typing import Any, cast

from e2eharness import ApplianceWithFleet, loopback_config
from twisted.internet import defer

from acs.service import Appliance
from acs.udpconnreq import udp_request
from cpe_sim import nat
from cpe_sim.fleet import SimulatedCPE

CONNECTION_REQUEST = "6 CONNECTION REQUEST"


class BehindNat(ApplianceWithFleet):
    COUNT = 50

    def setUp(self) -> defer.Deferred[None]:  # type: ignore[override]
        return defer.Deferred.fromCoroutine(self.start_behind_nat())

    async def start_behind_nat(self) -> None:
        await self.start_appliance(self.tempdir(), stun=True)
        bound = self.bindings_recorded()
        await self.start_fleet(nat=True)
        await self.bounded(bound, 60)

    def bindings_recorded(self) -> defer.Deferred[None]:
        """Fires once every CPE of the fleet has a STUN binding at the ACS: checked once
        the units of each datagram the STUN listener takes are done (at once on SQLite)."""
        server: Any = self.appliance.stun
        done: defer.Deferred[None] = defer.Deferred()
        received = server.datagramReceived

        def check(_: object) -> None:
            if not done.called and all(self.binding(cpe) is not None for cpe in self.fleet.cpes):
                done.callback(None)

        def watching(datagram: bytes, addr: Any) -> None:
            received(datagram, addr)
            server.settled().addCallback(check)

        server.datagramReceived = watching
        return done

    def binding(self, cpe: SimulatedCPE) -> tuple[str, int] | None:
        found = self.appliance.store.find_device_by_serial(cpe.serial)
        binding = self.appliance.store.stun_binding(found.id) if found is not None else None
        if binding is None or binding.address is None or binding.port is None:
            return None
        return binding.address, binding.port

    def informs(self, cpe: SimulatedCPE) -> list[list[str]]:
        history = self.appliance.store.history(self.device(cpe).id)
        return [e.detail["events"] for e in reversed(history) if e.action == "inform"]

    async def test_a_reboot_through_the_api_reaches_every_cpe_by_udp(self) -> None:
        for cpe in self.fleet.cpes:
            assert cpe.nat is not None
            self.assertEqual(self.binding(cpe), cpe.nat.address)  # its NAT's public side
            self.assertEqual(self.device(cpe).provisioned, True)

        seconds = await self.reboot_all()
        self.assertLess(seconds, 30)  # the next periodic Inform would be never (they are off)
        for cpe in self.fleet.cpes:
            assert cpe.nat is not None
            self.assertEqual(cpe.nat.udp_address, "{}:{}".format(*cpe.nat.address))
            counters = cpe.nat.counters
            self.assertEqual(counters.accepted, 1, cpe.serial)
            # Nothing the ACS sent was turned away: no bad signature, no stale or replayed
            # ts, no reused id, nothing from another socket than its STUN listener's. (A
            # copy may land while the CPE reboots: that is not the ACS's doing.)
            self.assertEqual(set(counters.rejected) - {nat.OFFLINE}, set(), cpe.serial)
            events = self.informs(cpe)
            self.assertIn(CONNECTION_REQUEST, events[-2], cpe.serial)  # woken, then rebooted
            self.assertIn("1 BOOT", events[-1], cpe.serial)
            attempts = [
                e.detail for e in self.appliance.store.history(self.device(cpe).id)
                if e.action == "connection_request"
            ]  # fmt: skip
            self.assertIn(("sent", "udp"), [(a["outcome"], a["via"]) for a in attempts])
            # No HTTP request got through: the URL refuses connections.
            self.assertNotIn("answered", [a["outcome"] for a in attempts])

    async def test_forged_replayed_and_stale_requests_wake_nobody(self) -> None:
        cpe = self.fleet.cpes[0]
        assert cpe.nat is not None and cpe.nat.address is not None
        device = self.device(cpe)
        host, port = cpe.nat.address
        username = device.connection_request_username or ""
        password = device.connection_request_password or ""
        now = int(self.appliance.reactor.seconds())
        stun = self.appliance.stun
        assert stun is not None

        def from_the_acs(data: bytes) -> None:
            # The ACS's own STUN socket: the NAT lets it in, the CPE must judge it.
            self.assertTrue(stun.send(data, host, port))

        good = udp_request(host, port, username, password, ts=now, message_id=7, cnonce="a1")
        sig = good.index(b"&sig=") + 5
        flipped = b"0" if good[sig : sig + 1] != b"0" else b"1"
        from_the_acs(good[:sig] + flipped + good[sig + 1 :])  # forged: one digit changed
        from_the_acs(udp_request(host, port, username, "guess", ts=now, message_id=8, cnonce="b"))
        from_the_acs(
            udp_request(host, port, username, password, ts=now - 3600, message_id=9, cnonce="c")
        )  # stale
        woken = cpe.next_session()
        from_the_acs(good)
        await self.bounded(woken)
        self.assertEqual(self.informs(cpe)[-1], [CONNECTION_REQUEST])
        from_the_acs(  # older than the one it acted on: a replay
            udp_request(host, port, username, password, ts=now - 1, message_id=10, cnonce="d")
        )
        from_the_acs(good)  # the same request again: a copy
        probe = cpe.next_session()
        await self.bounded(self.appliance.connreq.wake(device.id))
        await self.bounded(probe)  # the ACS's own next request still works
        counters = cpe.nat.counters
        self.assertEqual(counters.accepted, 2)
        self.assertGreaterEqual(counters.duplicate, 1)  # ours; the ACS's copies come later
        self.assertEqual(
            {k: v for k, v in counters.rejected.items() if k != nat.OFFLINE},
            {nat.SIGNATURE: 2, nat.STALE: 1, nat.REPLAYED: 1},
        )
        self.assertEqual(len(self.informs(cpe)), 3)  # bootstrap, then the two it accepted


class AcrossNodes(ApplianceWithFleet):
    """Two appliances (nodes) on one database, each with its own STUN socket: a wake on
    the node whose socket the CPEs' bindings do not go through is sent by the one they
    do (its peer listener's /udp-wake), since the NATs let in only what comes from there."""

    COUNT = 5

    async def test_a_wake_on_another_node_goes_out_of_the_bindings_socket(self) -> None:
        tmp = self.tempdir()
        await self.start_appliance(tmp, stun=True)
        other = Appliance(loopback_config(tmp, stun=True), self.appliance.reactor)
        other.service.startService()
        self.addCleanup(other.service.stopService)
        await self.bounded(other.when_listening())
        bound = BehindNat.bindings_recorded(cast(Any, self))
        await self.start_fleet(nat=True)
        await self.bounded(bound, 60)
        here, there = self.appliance.cwmp.node_id, other.cwmp.node_id
        self.assertNotEqual(here, there)
        for cpe in self.fleet.cpes:
            binding = self.appliance.store.stun_binding(self.device(cpe).id)
            assert binding is not None
            self.assertEqual(binding.node, here)  # the CPEs' STUN server is this node's
        for cpe in self.fleet.cpes:
            woken = cpe.next_session()
            outcome = await self.bounded(other.connreq.wake(self.device(cpe).id))
            self.assertEqual(outcome, "sent", cpe.serial)
            await self.bounded(woken)
            assert cpe.nat is not None
            self.assertEqual(cpe.nat.counters.accepted, 1, cpe.serial)
            self.assertEqual(dict(cpe.nat.counters.rejected), {}, cpe.serial)
            newest = next(
                e.detail for e in self.appliance.store.history(self.device(cpe).id)
                if e.action == "connection_request"
            )  # fmt: skip
            self.assertEqual((newest["via"], newest["outcome"]), ("udp", "sent"))
            self.assertIn(f"through node {here}", newest["reason"])

    binding = BehindNat.binding
