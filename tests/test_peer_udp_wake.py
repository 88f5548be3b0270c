"""The peer listener's /udp-wake (acs.peers): another node asks this one to send a UDP
connection request from its STUN socket. In memory (StubTreq); the ACS-to-ACS client
(PeerForwarder.udp_wake) against it over loopback."""

from __future__ import annotations

from typing import Any

from treq.testing import StubTreq
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, succeed
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.server import Site

from acs import peers

reactor: Any = _reactor
TOKEN = peers.peer_token(b"p" * 32)


class UdpWake(unittest.TestCase):
    def setUp(self) -> None:
        self.asked: list[int] = []
        self.answer = (True, "to 192.0.2.1:4000 (stun binding)")

        def wake(device_id: int) -> Deferred[tuple[bool, str]]:
            self.asked.append(device_id)
            return succeed(self.answer)

        self.resource = peers.PeerResource(Resource(), TOKEN, udp_wake=wake)
        self.stub = StubTreq(self.resource)

    async def post(self, body: bytes, token: bytes | None = TOKEN) -> tuple[int, str]:
        headers = {} if token is None else {peers.TOKEN_HEADER: [token]}
        response = await self.stub.post("http://peer/udp-wake", data=body, headers=headers)
        return response.code, (await self.stub.content(response)).decode().strip()

    async def test_a_peer_with_the_token_has_the_request_sent(self) -> None:
        self.assertEqual(await self.post(b"42"), (200, "to 192.0.2.1:4000 (stun binding)"))
        self.answer = (False, "no fresh STUN binding here")
        self.assertEqual(await self.post(b"42"), (409, "no fresh STUN binding here"))
        self.assertEqual(self.asked, [42, 42])

    async def test_anyone_else_or_anything_else_is_refused(self) -> None:
        self.assertEqual((await self.post(b"42", token=None))[0], 403)
        self.assertEqual((await self.post(b"42", token=TOKEN + b"x"))[0], 403)
        for body in (b"", b"-1", b"4 2", b"x" * 100, b"9" * 19, "٤٢".encode()):
            self.assertEqual((await self.post(body))[0], 400, body)
        self.assertEqual(self.asked, [])

    async def test_the_forwarder_asks_a_peer_over_http(self) -> None:
        port = reactor.listenTCP(0, Site(self.resource), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        forwarder = peers.PeerForwarder(reactor, TOKEN)
        self.addCleanup(forwarder.close)
        url = f"http://127.0.0.1:{port.getHost().port}"
        self.assertEqual(await forwarder.udp_wake(url, 7), (True, self.answer[1]))
        self.assertEqual(self.asked, [7])
        await port.stopListening()
        await forwarder.close()  # its kept connection too: the peer is gone
        sent, why = await forwarder.udp_wake(url, 7)
        self.assertFalse(sent)
        self.assertIn("did not answer", why)
