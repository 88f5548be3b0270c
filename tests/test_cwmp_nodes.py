"""Several nodes on one database: a session's requests reach the node running it wherever
they land (acs.peers), and a device has one session at a time across nodes (its lease).

Two CwmpResources share one store, each with its peer listener on 127.0.0.1; a Clock is
their reactor (lease times), the HTTP runs on the real reactor.
"""

from __future__ import annotations

import socket
import subprocess
from dataclasses import replace
from typing import Any, cast

from cwmpharness import REACTOR, SECRET, T0, CwmpResourceCase, make_inform, wire
from metricscheck import value
from twisted.internet.interfaces import IReactorTime
from twisted.web.server import Site

from acs import httpdigest, peers
from acs.config import CwmpConfig
from acs.cwmp import rpc, soap
from acs.cwmp_http import CwmpResource

TOKEN = peers.peer_token(b"p" * 32)


def _forwarded(resource: CwmpResource, by: str) -> float:
    return (
        value(resource.metrics.render().decode(), "acs_cwmp_forwarded_requests_total", by=by) or 0.0
    )


class TwoNodes(CwmpResourceCase):
    def setUp(self) -> None:
        super().setUp()
        self.a = self.node("node-a")
        self.b = self.node("node-b")

    def node(self, name: str, config: CwmpConfig | None = None) -> tuple[CwmpResource, str]:
        """A node on the shared store: its resource, and the URL CPEs reach it at."""
        forwarder = peers.PeerForwarder(REACTOR, TOKEN)
        self.addCleanup(forwarder.close)
        resource = CwmpResource(
            store=self.store,
            tasks=self.engine,
            config=config or CwmpConfig(),
            reactor=cast(IReactorTime, self.clock),
            secret=SECRET,
            node=name,
            forwarder=forwarder,
        )
        self.addCleanup(resource.stop)
        peer: Any = REACTOR.listenTCP(
            0, Site(peers.PeerResource(resource, TOKEN)), interface="127.0.0.1"
        )
        self.addCleanup(peer.stopListening)
        self.store.set_node_peer(resource.node_id, f"http://127.0.0.1:{peer.getHost().port}")
        port: Any = REACTOR.listenTCP(0, Site(resource), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return resource, f"http://127.0.0.1:{port.getHost().port}/"

    async def to(self, node: tuple[CwmpResource, str], body: bytes = b"", **kw: Any) -> Any:
        self.url = node[1]
        return await self.request(body, **kw)

    async def test_a_session_continues_on_the_node_its_cookie_names(self) -> None:
        device = self.provisioned_device()
        task = self.engine.queue(device.id, "reboot", actor="test", wake=False, now=T0)
        informed = await self.to(self.a, wire(make_inform()))
        cookie = informed.cookie
        self.assertEqual(self.store.device_session_node(device.id, now=T0), self.a[0].node_id)

        # The CPE's next connections land on node B: its requests reach A's session.
        asked = await self.to(self.b, cookie=cookie)
        self.assertIsInstance(asked.envelope().message, rpc.Reboot)
        answer = soap.Envelope(rpc.RebootResponse(), soap.Header(id=asked.envelope().header.id))
        done = await self.to(self.b, soap.serialize(answer), cookie=cookie)

        self.assertEqual((done.code, done.body), (204, b""))
        self.assertEqual(_forwarded(self.b[0], "cookie"), 2)
        self.assertEqual(self.b[0].active_sessions(), 0)
        self.assertEqual(self.a[0].active_sessions(), 0)
        stored = self.store.get_task(task.id)
        assert stored is not None
        self.assertEqual(stored.attempts, 1)  # run once, by A
        self.assertEqual(stored.result, {"acknowledged": True})
        # The session's last request gave the device up.
        self.assertIsNone(self.store.device_session_node(device.id, now=T0))

    async def test_an_inform_reaches_the_node_running_the_devices_session(self) -> None:
        device = self.provisioned_device()
        await self.to(self.a, wire(make_inform()))
        again = await self.to(self.b, wire(make_inform(events=("6 CONNECTION REQUEST",))))

        self.assertIsInstance(again.envelope().message, rpc.InformResponse)
        self.assertTrue(again.cookie.startswith(f"session={self.a[0].node_id}."))
        # A replaced its session; B never ran one.
        self.assertEqual((self.a[0].active_sessions(), self.b[0].active_sessions()), (1, 0))
        self.assertEqual(_forwarded(self.b[0], "lease"), 1)
        self.assertTrue(self.b[0].in_session(device.id))  # running, on another node

    async def test_a_forwarded_request_is_never_forwarded_again(self) -> None:
        self.provisioned_device()
        await self.to(self.a, wire(make_inform()))
        peer = self.store.node_peer(self.b[0].node_id)
        self.url = f"{peer}/"
        reply = await self.request(
            wire(make_inform()),
            headers={"X-Acs-Peer": TOKEN.decode(), "X-Acs-Client": "127.0.0.9"},
        )
        self.assertEqual(reply.code, 503)
        self.assertIn(reply.header("retry-after"), [str(n) for n in range(1, 11)])
        self.assertEqual(_forwarded(self.b[0], "lease"), 0)

    async def test_the_peer_listener_takes_only_requests_with_the_clusters_token(self) -> None:
        self.provisioned_device()
        self.url = f"{self.store.node_peer(self.a[0].node_id)}/"
        for token in (None, "0" * 64, TOKEN.decode() + "x"):
            headers = {} if token is None else {"X-Acs-Peer": token}
            reply = await self.request(wire(make_inform()), headers=headers)
            self.assertEqual(reply.code, 403, token)
        self.assertEqual(self.a[0].active_sessions(), 0)

    async def test_a_cookie_of_a_node_that_stopped_names_it_in_vain(self) -> None:
        self.provisioned_device()
        cookie = (await self.to(self.a, wire(make_inform()))).cookie
        self.a[0].stop()
        self.store.drop_node(self.a[0].node_id)
        # Its session is gone: an empty POST ends nothing, an Inform starts one here.
        self.assertEqual((await self.to(self.b, cookie=cookie)).code, 204)
        informed = await self.to(self.b, wire(make_inform()), cookie=cookie)
        self.assertTrue(informed.cookie.startswith(f"session={self.b[0].node_id}."))
        self.assertEqual(_forwarded(self.b[0], "cookie"), 0)

    async def test_a_digest_answer_reaches_the_node_whose_nonce_it_answers(self) -> None:
        creds = replace(CwmpConfig(), username="cpe", password="s3cret")
        c, d = self.node("node-c", creds), self.node("node-d", creds)
        challenged = await self.to(c, wire(make_inform()))
        self.assertEqual(challenged.code, 401)
        challenge = challenged.header("www-authenticate") or ""
        answer = {"method": "POST", "uri": "/", "username": "cpe", "password": "s3cret"}
        auth = {
            "Authorization": httpdigest.authorization_for(challenge, cnonce="c1", nc=1, **answer)
        }

        # The answer lands on the other node: it goes to the one that made the nonce.
        ok = await self.to(d, wire(make_inform()), headers=auth)
        self.assertEqual(ok.code, 200)
        self.assertTrue(ok.cookie.startswith(f"session={c[0].node_id}."))
        self.assertEqual(_forwarded(d[0], "nonce"), 1)
        await self.to(c, cookie=ok.cookie)
        # Replayed on either node, the header meets the one ledger that saw it.
        for node in (d, c):
            replay = await self.to(node, wire(make_inform("SN-OTHER")), headers=auth)
            self.assertEqual(replay.code, 401)
            self.assertIn("stale=true", (replay.header("www-authenticate") or "").lower())
        self.assertEqual(self.store.count_devices(), 1)

    async def test_a_session_that_times_out_gives_its_device_up(self) -> None:
        device = self.provisioned_device()
        await self.to(self.a, wire(make_inform()))
        self.clock.advance(CwmpConfig().session_timeout + 1)
        await self.a[0].settled()
        self.assertIsNone(self.store.device_session_node(device.id, now=self.clock.seconds()))
        self.assertEqual(self.a[0].active_sessions(), 0)


class ForeignLeases(CwmpResourceCase):
    """Leases held by nodes that cannot take the Inform: none forwarded, the CPE waits."""

    def hold(self, device_id: int, name: str, until: float) -> int:
        node_id = self.store.register_node(name, None, now=T0)
        self.assertIsNone(self.store.take_device_session(device_id, node_id, now=T0, until=until))
        return node_id

    async def test_a_running_lease_turns_the_inform_away_until_it_runs_out(self) -> None:
        device = self.provisioned_device()
        self.hold(device.id, "elsewhere-1-abcdef", T0 + 60)
        before = self.snapshot()
        refused = await self.request(wire(make_inform()))
        self.assertEqual(refused.code, 503)
        self.assertEqual(refused.header("retry-after"), "10")
        self.assertEqual(self.snapshot(), before)  # the Inform's writes rolled back
        self.clock.advance(61)
        await self.start_session()
        node = self.store.device_session_node(device.id, now=self.clock.seconds())
        self.assertEqual(node, self.resource.node_id)

    async def test_a_dead_process_of_this_host_holds_nothing(self) -> None:
        device = self.provisioned_device()
        child = subprocess.Popen(["true"])
        child.wait()
        self.hold(device.id, f"{socket.gethostname()[:64]}-{child.pid}-abcdef", T0 + 600)
        await self.start_session()
        node = self.store.device_session_node(device.id, now=T0)
        self.assertEqual(node, self.resource.node_id)


class ForeignNonces(CwmpResourceCase):
    async def test_another_nodes_nonce_gets_a_fresh_challenge_not_a_failure(self) -> None:
        self.serve(replace(CwmpConfig(), username="cpe", password="s3cret"))
        nonce = httpdigest.NonceSigner(SECRET, issuer=self.resource.node_id + 1).make(T0)
        challenge = httpdigest.digest_challenge("acs", nonce)
        auth = httpdigest.authorization_for(
            challenge, method="POST", uri="/", username="cpe", password="s3cret", cnonce="c"
        )
        for _ in range(8):  # never counted as a failure: no back-off 503
            reply = await self.request(wire(make_inform()), headers={"Authorization": auth})
            self.assertEqual(reply.code, 401)
            self.assertIn("stale=true", (reply.header("www-authenticate") or "").lower())
        self.assertEqual(self.store.count_devices(), 0)


class Registration(CwmpResourceCase):
    async def test_a_serial_registered_by_another_process_meanwhile_gets_a_retry(self) -> None:
        # Another process registers the serial between this one's lookup and its
        # transaction: the lookup is made to miss it.
        lookup = self.resource._onboarding.admission
        self.provisioned_device("RACE1")
        self.resource._onboarding.admission = lambda serial: lookup("nobody")  # type: ignore[method-assign]
        reply = await self.request(wire(make_inform("RACE1")))
        self.assertEqual((reply.code, reply.header("retry-after")), (503, "1"))
        self.assertEqual(self.store.count_devices(), 1)
        self.resource._onboarding.admission = lookup  # type: ignore[method-assign]
        await self.start_session("RACE1")
