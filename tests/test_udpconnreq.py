"""UDP connection requests (TR-111; acs.udpconnreq) and how ConnectionRequester uses them:
the datagram, its copies, where it goes and when. Time is a task.Clock; the STUN
listener is a recording ``send``."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import parse_qs, urlsplit

from factories import give_type, wakeable_device
from test_connreq import FakeCpe
from twisted.internet import reactor as _reactor
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.server import Site

from acs.connreq import ConnectionRequester, TargetPolicy, UdpRelay, check_url
from acs.store import Store
from acs.store.models import UP
from acs.udpconnreq import COPIES, RETRANSMIT, UdpConnectionRequests, udp_request

reactor: Any = _reactor
T0 = 1_700_000_000.0
KEEPALIVE = 30.0


def _fields(datagram: bytes) -> tuple[str, dict[str, str], str]:
    """(request line's URI authority, its query, the Host header) of a UDP request."""
    head, _, rest = datagram.decode().partition("\r\n")
    method, uri, version = head.split(" ")
    assert (method, version) == ("GET", "HTTP/1.1")
    assert rest.endswith("\r\n\r\n")
    parts = urlsplit(uri)
    assert parts.scheme == "http" and parts.path == ""
    query = {k: v[0] for k, v in parse_qs(parts.query, strict_parsing=True).items()}
    host = rest.split("\r\n")[0].removeprefix("Host: ")
    return parts.netloc, query, host


def test_the_datagram_is_signed_as_tr111_says() -> None:
    data = udp_request(
        "203.0.113.5", 5060, "cr user", "pa55", ts=1120673700, message_id=1234, cnonce="XTGR"
    )
    authority, query, host = _fields(data)
    assert authority == host == "203.0.113.5:5060"
    assert query["un"] == "cr user" and query["cn"] == "XTGR"
    assert (query["ts"], query["id"]) == ("1120673700", "1234")
    text = b"11206737001234cr userXTGR"  # ts id un cn, one after the other
    expected = hmac.new(b"pa55", text, hashlib.sha1).hexdigest()
    assert query["sig"].lower() == expected
    v6 = udp_request("2001:db8::1", 80, "u", "p", ts=1, message_id=2, cnonce="c")
    assert _fields(v6)[0] == "[2001:db8::1]"  # port 80 is left out


class Sender:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, str, int]] = []
        self.up = True

    def __call__(self, data: bytes, host: str, port: int) -> bool:
        if self.up:
            self.sent.append((data, host, port))
        return self.up


class Requesting(unittest.TestCase):
    """A device and a requester with UDP, on a task.Clock."""

    def setUp(self) -> None:
        self.store = Store.open(":memory:")
        self.addCleanup(self.store.close)
        self.clock = Clock()
        self.clock.advance(T0)
        self.send = Sender()
        self.policy = TargetPolicy()
        self.udp = UdpConnectionRequests(
            self.send,
            self.clock,
            keepalive=KEEPALIVE,
            allowed=lambda url, source: check_url(url) or self.policy.refusal(url, source),
        )
        self.requester = ConnectionRequester(
            reactor, self.store, timeout=5, clock=self.clock, udp=self.udp,
            observe=lambda outcome, via: self.observed.append((outcome, via)),
        )  # fmt: skip
        self.addCleanup(self.requester.stop)
        self.observed: list[tuple[str, str]] = []
        self.device = wakeable_device(self.store, now=T0)

    def bind(self, host: str = "127.0.0.1", port: int = 40000, *, at: float = T0) -> None:
        self.store.set_stun_credentials(self.device, "stun-1", "pw")
        self.store.record_stun_binding(self.device, host, port, now=at)

    def report(self, name: str, value: str) -> None:
        self.store.upsert_parameters(
            self.device, [(f"Device.ManagementServer.{name}", value, "xsd:string", False)], now=T0
        )

    def entries(self) -> list[dict[str, Any]]:
        history = self.store.history(self.device)
        return [e.detail for e in reversed(history) if e.action == "connection_request"]

    def status(self) -> str:
        device = self.store.get_device(self.device)
        assert device is not None
        return device.status


class UdpRequesterTests(Requesting):
    async def test_behind_nat_by_its_own_word_it_goes_by_udp_first_with_copies(self) -> None:
        self.bind()
        self.report("NATDetected", "true")
        self.store.set_status(self.device, UP, now=T0)
        outcome = await self.requester.wake(self.device)
        self.assertEqual(outcome, "sent")
        [(data, host, port)] = self.send.sent
        self.assertEqual((host, port), ("127.0.0.1", 40000))
        _, query, _ = _fields(data)
        self.assertEqual((query["un"], query["ts"]), ("cr", str(int(T0))))
        for _ in range(COPIES - 1):
            self.clock.advance(RETRANSMIT)
        self.assertEqual([d for d, _, _ in self.send.sent], [data] * COPIES)  # unchanged
        self.clock.advance(10 * RETRANSMIT)
        self.assertEqual(len(self.send.sent), COPIES)
        [entry] = self.entries()
        self.assertEqual((entry["outcome"], entry["via"]), ("sent", "udp"))
        self.assertIn("127.0.0.1:40000 (stun binding)", entry["reason"])
        self.assertEqual(self.status(), UP)  # a datagram sent says nothing of reachability
        self.assertEqual(self.observed, [("sent", "udp")])

    async def test_each_request_has_a_new_id_and_ts_never_goes_back(self) -> None:
        self.bind()
        self.report("NATDetected", "1")
        await self.requester.wake(self.device)
        self.clock.advance(5)
        self.clock.rightNow -= 100  # the clock stepped back (NTP)
        await self.requester.wake(self.device)
        first, second = (_fields(d)[1] for d, _, _ in (self.send.sent[0], self.send.sent[-1]))
        self.assertNotEqual(first["id"], second["id"])
        self.assertNotEqual(first["cn"], second["cn"])
        self.assertGreaterEqual(int(second["ts"]), int(first["ts"]))

    async def test_http_that_fails_is_followed_by_udp_and_does_not_mark_it_down(self) -> None:
        port = reactor.listenTCP(0, Site(Resource()), interface="127.0.0.1")
        number = port.getHost().port
        await port.stopListening()
        self.store.update_device(
            self.device, now=T0, actor="t", connection_request_url=f"http://127.0.0.1:{number}/"
        )
        self.store.set_status(self.device, UP, now=T0)
        self.bind()
        self.assertEqual(await self.requester.wake(self.device), "sent")
        http, udp = self.entries()
        self.assertEqual((http["outcome"], http["via"]), ("refused", "http"))
        self.assertEqual((udp["outcome"], udp["via"]), ("sent", "udp"))
        self.assertEqual(self.status(), UP)
        self.assertEqual(self.observed, [("refused", "http"), ("sent", "udp")])

    async def test_without_a_fresh_binding_http_stands_alone(self) -> None:
        self.bind(at=T0 - 3 * KEEPALIVE - 1)  # stale
        self.assertEqual(await self.requester.wake(self.device), "no_url")
        self.assertEqual(self.send.sent, [])
        self.assertEqual([e["via"] for e in self.entries()], ["http"])

    async def test_a_reported_address_is_used_only_where_the_policy_allows(self) -> None:
        self.report("UDPConnectionRequestAddress", "127.0.0.1:5000")  # where it informed from
        self.assertEqual(await self.requester.wake(self.device), "sent")
        self.assertEqual(self.send.sent[0][1:], ("127.0.0.1", 5000))
        self.assertIn("(reported)", self.entries()[-1]["reason"])
        self.send.sent.clear()
        self.report("UDPConnectionRequestAddress", "192.0.2.50:5000")  # somebody else
        self.assertEqual(await self.requester.wake(self.device), "no_url")
        self.assertEqual(self.send.sent, [])

    async def test_no_credentials_no_request(self) -> None:
        self.store.update_device(
            self.device, now=T0, actor="t", connection_request_username=None,
            connection_request_password=None,
        )  # fmt: skip
        self.bind()
        self.report("NATDetected", "true")
        self.assertEqual(await self.requester.wake(self.device), "auth_failed")
        self.assertEqual(self.send.sent, [])

    async def test_a_listener_that_cannot_send_is_an_error(self) -> None:
        self.bind()
        self.report("NATDetected", "true")
        self.send.up = False
        # Not sent is not reached: HTTP is tried next (and this device has no URL).
        self.assertEqual(await self.requester.wake(self.device), "no_url")
        udp, http = self.entries()[-2:]
        self.assertEqual((udp["via"], udp["outcome"], http["via"]), ("udp", "error", "http"))
        self.assertIn("cannot send", udp["reason"])

    async def test_stopping_drops_the_copies_not_sent(self) -> None:
        self.bind()
        self.report("NATDetected", "true")
        await self.requester.wake(self.device)
        await self.requester.stop()
        self.assertFalse(self.clock.getDelayedCalls())
        self.clock.advance(10)
        self.assertEqual(len(self.send.sent), 1)

    def typed(self, *order: str) -> None:
        give_type(self.store, self.device, *order, now=T0)

    async def test_the_device_types_order_comes_first(self) -> None:
        self.bind()
        self.typed("udp", "http")  # UDP first although the device does not say it is NATed
        self.assertEqual(await self.requester.wake(self.device), "sent")
        self.assertEqual([e["via"] for e in self.entries()], ["udp"])

    async def test_an_order_without_udp_never_sends_one(self) -> None:
        self.bind()
        self.report("NATDetected", "true")
        self.typed("http")
        self.assertEqual(await self.requester.wake(self.device), "no_url")
        self.assertEqual(self.send.sent, [])
        self.assertEqual([e["via"] for e in self.entries()], ["http"])

    async def test_udp_only_without_a_binding_sends_nothing(self) -> None:
        self.store.update_device(
            self.device, now=T0, actor="t", connection_request_url="http://127.0.0.1:1/"
        )
        self.typed("udp")
        self.assertEqual(await self.requester.wake(self.device), "no_url")
        [entry] = self.entries()
        self.assertEqual(entry["via"], "udp")
        self.assertIn("no fresh STUN binding", entry["reason"])

    async def test_a_cpe_that_answered_http_gets_no_udp(self) -> None:
        busy = FakeCpe("open", code=503)
        port = reactor.listenTCP(0, Site(busy), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        url = f"http://127.0.0.1:{port.getHost().port}/"
        self.store.update_device(self.device, now=T0, actor="t", connection_request_url=url)
        self.bind()
        self.assertEqual(await self.requester.wake(self.device), "error")  # reached: busy
        self.assertEqual(self.send.sent, [])
        self.assertEqual([e["via"] for e in self.entries()], ["http"])


class RelayTests(Requesting):
    """A binding kept by another node's STUN socket: the request goes out from there."""

    OWN, OTHER = 1, 2

    def setUp(self) -> None:
        super().setUp()
        self.forwarded: list[tuple[int, int]] = []
        self.answer: tuple[bool, str] = (True, "to 127.0.0.1:40000 (stun binding)")

        def forward(node: int, device_id: int) -> Any:
            self.forwarded.append((node, device_id))
            return succeed(self.answer)

        self.requester = ConnectionRequester(
            reactor, self.store, timeout=5, clock=self.clock, udp=self.udp,
            relay=UdpRelay(lambda: self.OWN, forward),
        )  # fmt: skip
        self.addCleanup(self.requester.stop)
        for name in ("box-1", "box-2"):
            self.store.register_node(name, None, now=T0)
        self.report("NATDetected", "true")

    def bind_at(self, node: int) -> None:
        self.store.set_stun_credentials(self.device, "stun-1", "pw")
        self.store.record_stun_binding(self.device, "127.0.0.1", 40000, now=T0, node=node)

    async def test_another_nodes_binding_is_woken_through_that_node(self) -> None:
        self.bind_at(self.OTHER)
        self.assertEqual(await self.requester.wake(self.device), "sent")
        self.assertEqual((self.forwarded, self.send.sent), ([(self.OTHER, self.device)], []))
        self.assertIn("through node 2: to 127.0.0.1:40000", self.entries()[-1]["reason"])

    async def test_a_node_that_could_not_send_is_an_error_and_http_comes_next(self) -> None:
        self.bind_at(self.OTHER)
        self.answer = (False, "the binding's node did not answer: refused")
        self.assertEqual(await self.requester.wake(self.device), "no_url")
        udp, http = self.entries()[-2:]
        self.assertEqual((udp["via"], udp["outcome"], http["via"]), ("udp", "error", "http"))

    async def test_this_nodes_binding_goes_from_this_socket(self) -> None:
        self.bind_at(self.OWN)
        self.assertEqual(await self.requester.wake(self.device), "sent")
        self.assertEqual((self.forwarded, len(self.send.sent)), ([], 1))

    async def test_sent_here_for_another_node_only_when_the_binding_is_here(self) -> None:
        self.bind_at(self.OWN)
        sent, why = await self.requester.send_udp_here(self.device)
        self.assertTrue(sent, why)
        self.assertEqual(len(self.send.sent), 1)
        self.bind_at(self.OTHER)  # moved on meanwhile: never relayed again
        self.assertEqual(
            await self.requester.send_udp_here(self.device), (False, "the binding is now node 2's")
        )
        self.assertEqual(
            await self.requester.send_udp_here(999), (False, "no fresh STUN binding here")
        )
        self.assertEqual(self.forwarded, [])
