"""``cpe-sim --nat``: the NAT in front of a simulated CPE, its STUN client, and the TR-111 UDP
connection requests that wake it.

Most tests run on a ``task.Clock`` that also fakes ``listenUDP``: the CPE's socket records
what it sends, and datagrams are handed to it with their source address. Sessions go to a
scripted in-memory ACS. Expected signatures are computed here with hmac/hashlib, not with
the simulator's or the ACS's code. One test runs everything over real loopback UDP.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from twisted.internet import defer
from twisted.internet import reactor as _reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.internet.task import Clock
from twisted.trial import unittest

from acs import stun
from acs.cwmp import rpc, soap
from cpe_sim import nat
from cpe_sim.cli import make_fleet, parse_args
from cpe_sim.cpe import HttpResponse, Profile, SimulatedCPE
from cpe_sim.datamodel import load_template
from cpe_sim.fleet import Fleet

reactor: Any = _reactor  # the whole reactor (UDP, TCP): untyped, as in acs.clock

NOW = 1_700_000_000.0
ACS_URL = "http://127.0.0.1:7547/acs"
STUN_SERVER = ("127.0.0.1", 3478)
CR_USERNAME, CR_PASSWORD = "acs user&1", "cr-secret"
STUN_USERNAME, STUN_PASSWORD = "acs-7-beef", "stun-secret"
PERIOD = 30
MAPPED = ("203.0.113.9", 61000)


# --- fakes ---------------------------------------------------------------------------------


class FakeUdpPort:
    """What ``listenUDP`` returns, and the protocol's transport: records what is sent."""

    def __init__(self, protocol: DatagramProtocol, port: int) -> None:
        self.protocol = protocol
        self.port = port
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.listening = True
        protocol.makeConnection(self)  # type: ignore[arg-type]

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.listening
        self.sent.append((data, addr))

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", "127.0.0.1", self.port)

    def stopListening(self) -> None:
        self.listening = False
        self.protocol.doStop()


class UdpClock(Clock):
    """A ``task.Clock`` with the ``listenUDP`` the NAT opens its socket with."""

    def __init__(self) -> None:
        super().__init__()
        self.ports: list[FakeUdpPort] = []

    def listenUDP(
        self, port: int, protocol: DatagramProtocol, interface: str = "", maxPacketSize: int = 8192
    ) -> FakeUdpPort:
        assert (port, interface) == (0, "127.0.0.1")  # ephemeral, loopback only
        self.ports.append(FakeUdpPort(protocol, 40000 + len(self.ports)))
        return self.ports[-1]


@dataclass
class Acs:
    """Answers CPE POSTs in memory: InformResponse, ``script`` (once), then 204."""

    script: list[rpc.Message] = field(default_factory=list)
    informs: list[rpc.Inform] = field(default_factory=list)
    _queue: list[rpc.Message] = field(default_factory=list)
    _ns: str = "urn:dslforum-org:cwmp-1-2"

    def client(self) -> _Client:
        return _Client(self)

    def answer(self, body: bytes | None) -> HttpResponse:
        if body:
            envelope = soap.parse(body)
            if isinstance(envelope.message, rpc.Inform):
                self.informs.append(envelope.message)
                self._queue, self.script = self.script, []
                self._ns = envelope.ns
                return self._reply(rpc.InformResponse(1), envelope.header.id)
        if not self._queue:
            return HttpResponse(204, {}, b"")
        return self._reply(self._queue.pop(0), "acs")

    def _reply(self, message: rpc.Message, cwmp_id: str | None) -> HttpResponse:
        envelope = soap.Envelope(message, soap.Header(id=cwmp_id), self._ns)
        return HttpResponse(200, {}, soap.serialize(envelope))

    def events(self, index: int = -1) -> list[str]:
        return [e.code for e in self.informs[index].events]


class _Client:
    def __init__(self, acs: Acs) -> None:
        self.acs = acs

    def request(
        self, method: str, url: str, body: bytes | None, headers: object
    ) -> defer.Deferred[HttpResponse]:
        return defer.succeed(self.acs.answer(body))

    def close(self) -> defer.Deferred[None]:
        return defer.succeed(None)


# --- what the ACS sends --------------------------------------------------------------------


def provisioning(
    root: str,
    *,
    address: str = "",
    port: int = STUN_SERVER[1],
    username: str = STUN_USERNAME,
    period: int = PERIOD,
) -> rpc.SetParameterValues:
    """The ACS's SetParameterValues: connection-request credentials and STUN on."""
    ms = root + "ManagementServer."
    values = [
        (ms + "ConnectionRequestUsername", CR_USERNAME, "xsd:string"),
        (ms + "ConnectionRequestPassword", CR_PASSWORD, "xsd:string"),
        (ms + "STUNEnable", "true", "xsd:boolean"),
        (ms + "STUNServerAddress", address, "xsd:string"),
        (ms + "STUNServerPort", str(port), "xsd:unsignedInt"),
        (ms + "STUNUsername", username, "xsd:string"),
        (ms + "STUNPassword", STUN_PASSWORD, "xsd:string"),
        (ms + "STUNMinimumKeepAlivePeriod", str(period), "xsd:unsignedInt"),
        (ms + "STUNMaximumKeepAlivePeriod", str(period), "xsd:int"),
    ]
    return rpc.SetParameterValues(tuple(rpc.ParameterValue(*v) for v in values), "stun")


def expected_sig(password: str, ts: int, message_id: int, username: str, cnonce: str) -> str:
    text = f"{ts}{message_id}{username}{cnonce}".encode()
    return hmac.new(password.encode(), text, hashlib.sha1).hexdigest()


def request_text(
    ts: int,
    message_id: int,
    *,
    username: str = CR_USERNAME,
    cnonce: str = "Xy 9+z",
    password: str = CR_PASSWORD,
    sig: str | None = None,
    authority: str = "203.0.113.9:61000",
) -> str:
    """A UDP connection request as TR-111 writes it (sig upper-case, as the ACS sends it)."""
    if sig is None:
        sig = expected_sig(password, ts, message_id, username, cnonce).upper()
    query = (
        f"ts={ts}&id={message_id}&un={quote(username, safe='')}&cn={quote(cnonce, safe='')}"
        f"&sig={sig}"
    )
    return f"GET http://{authority}?{query} HTTP/1.1\r\nHost: {authority}\r\n\r\n"


def request(ts: int | float, message_id: int, **kw: Any) -> bytes:
    return request_text(int(ts), message_id, **kw).encode()


# --- the CPE under test --------------------------------------------------------------------


@dataclass
class Rig:
    clock: UdpClock
    acs: Acs
    cpe: SimulatedCPE

    @property
    def nat(self) -> nat.Nat:
        assert self.cpe.nat is not None
        return self.cpe.nat

    @property
    def port(self) -> FakeUdpPort:
        return self.clock.ports[-1]

    def sent(self) -> list[tuple[stun.Message, tuple[str, int]]]:
        return [(stun.parse(data), addr) for data, addr in self.port.sent]

    def last(self) -> stun.Message:
        return self.sent()[-1][0]

    def deliver(self, data: bytes, source: tuple[str, int] = STUN_SERVER) -> None:
        self.nat.datagramReceived(data, source)
        self.clock.advance(0)  # the session a connection request starts opens next turn

    def answer(self, mapped: tuple[str, int] = MAPPED, *, key: bytes | None = None) -> None:
        """The STUN server's signed Binding Response to the last request."""
        signing = STUN_PASSWORD.encode() if key is None else key
        self.deliver(stun.binding_response(self.last(), mapped, key=signing))

    def wakes(self) -> int:
        return sum("6 CONNECTION REQUEST" in [e.code for e in i.events] for i in self.acs.informs)


def make(model: str = "tr181", **provision: Any) -> Rig:
    """A NAT'ed CPE whose bootstrap session provisioned STUN (first request sent)."""
    clock = UdpClock()
    clock.advance(NOW)
    root = load_template(model).root
    acs = Acs(script=[provisioning(root, **provision)])
    profile = Profile(
        reactor=clock,
        acs_url=ACS_URL,
        periodic=False,
        reboot_delay=5.0,
        rng=random.Random(3),
        client_factory=acs.client,
        nat=True,
    )
    cpe = SimulatedCPE("NAT000001", load_template(model), profile)
    cpe.start()
    clock.advance(0)
    assert cpe.sessions_ok == 1
    return Rig(clock, acs, cpe)


def bound(model: str = "tr181") -> Rig:
    """``make``, with the first Binding Request answered (the NAT lets the server in)."""
    rig = make(model)
    rig.answer()
    return rig


# --- the CPE behind its NAT ----------------------------------------------------------------


def test_a_nat_cpe_reports_nat_detected_and_stays_quiet_until_stun_is_enabled() -> None:
    clock = UdpClock()
    acs = Acs()
    profile = Profile(reactor=clock, acs_url=ACS_URL, periodic=False, client_factory=acs.client)
    profile.nat = True
    cpe = SimulatedCPE("NAT000002", load_template("tr098"), profile)
    cpe.start()
    clock.advance(0)
    assert cpe.value("InternetGatewayDevice.ManagementServer.NATDetected") == "true"
    assert cpe.nat is not None and cpe.nat.address == ("127.0.0.1", 40000)
    clock.advance(3600)
    assert clock.ports[0].sent == []  # STUNEnable is false: no STUN
    assert cpe.nat.udp_address == ""


def test_without_nat_a_cpe_has_no_socket_and_reports_no_nat() -> None:
    clock = UdpClock()
    cpe = SimulatedCPE("PLAIN0001", load_template("tr181"), Profile(clock, ACS_URL))
    assert cpe.nat is None
    assert cpe.value("Device.ManagementServer.NATDetected") == "false"


# --- the STUN client -----------------------------------------------------------------------


@pytest.mark.parametrize("model", ["tr181", "tr098"])
def test_stun_client_sends_signed_binding_requests_at_the_keepalive_period(model: str) -> None:
    rig = make(model)
    [(first, to)] = rig.sent()  # at once after the session that enabled STUN
    assert to == STUN_SERVER  # STUNServerAddress "": the host of the ACS URL
    assert first.kind == stun.BINDING_REQUEST
    assert first.get(stun.CONNECTION_REQUEST_BINDING) == stun.CONNECTION_REQUEST_BINDING_VALUE
    assert first.username == STUN_USERNAME
    assert first.integrity(STUN_PASSWORD.encode()) == "5389"
    assert not first.has(stun.BINDING_CHANGE)

    rig.answer()
    assert rig.cpe.value(rig.cpe.root + "ManagementServer.UDPConnectionRequestAddress") == (
        "203.0.113.9:61000"
    )
    assert rig.nat.udp_address == "203.0.113.9:61000"
    assert rig.nat.counters.stun_answered == 1

    rig.clock.advance(PERIOD - 0.1)
    assert len(rig.port.sent) == 1
    rig.clock.advance(0.1)
    second = rig.last()
    assert len(rig.port.sent) == 2
    assert second.transaction != first.transaction
    assert second.has(stun.CONNECTION_REQUEST_BINDING)
    assert second.integrity(STUN_PASSWORD.encode()) == "5389"
    assert not second.has(stun.BINDING_CHANGE)
    rig.answer()  # the same mapping: nothing else goes out
    rig.clock.advance(PERIOD - 0.1)
    assert len(rig.port.sent) == 2
    assert rig.nat.counters.binding_changes == 0


def test_a_moved_mapping_is_reported_and_announced_at_once_with_binding_change() -> None:
    rig = bound()
    rig.clock.advance(PERIOD)
    rig.answer(("203.0.113.9", 62000))  # the NAT gave the CPE another port
    assert rig.nat.udp_address == "203.0.113.9:62000"
    assert rig.nat.counters.binding_changes == 1
    [*_, (changed, to)] = rig.sent()
    assert len(rig.port.sent) == 3  # sent at once, not at the next period
    assert to == STUN_SERVER
    assert changed.has(stun.BINDING_CHANGE)
    assert changed.has(stun.CONNECTION_REQUEST_BINDING)
    assert changed.integrity(STUN_PASSWORD.encode()) == "5389"
    rig.answer(("203.0.113.9", 62000))

    rig.clock.advance(PERIOD)
    assert len(rig.port.sent) == 4
    assert not rig.last().has(stun.BINDING_CHANGE)  # announced, and answered


def test_a_changed_address_is_notified_as_its_attribute_says() -> None:
    rig = bound()
    name = rig.cpe.root + "ManagementServer.UDPConnectionRequestAddress"
    rig.cpe.model.set_parameter_attributes(
        [rpc.SetParameterAttributesStruct(name, True, 2, False, ())]
    )
    rig.clock.advance(PERIOD)
    rig.answer(("203.0.113.9", 62000))
    assert rig.acs.events() == ["4 VALUE CHANGE"]  # active notification: an Inform at once
    reported = {p.name: p.value for p in rig.acs.informs[-1].parameters}
    assert reported[name] == "203.0.113.9:62000"


def test_an_unanswered_request_is_retransmitted_twice_then_given_up() -> None:
    rig = make()
    rig.clock.advance(nat.RTO)
    rig.clock.advance(2 * nat.RTO)
    data = [d for d, _ in rig.port.sent]
    assert len(data) == 3 and data[0] == data[1] == data[2]  # the same transaction, unchanged
    rig.clock.advance(4 * nat.RTO - 0.01)
    assert rig.nat.counters.stun_timeouts == 0
    rig.clock.advance(0.01)
    counters = rig.nat.counters
    assert (counters.stun_sent, counters.stun_retransmitted, counters.stun_timeouts) == (3, 2, 1)
    rig.clock.advance(PERIOD - 7 * nat.RTO - 0.01)
    assert len(rig.port.sent) == 3  # nothing more until the next keep-alive
    rig.clock.advance(0.01)
    assert len(rig.port.sent) == 4
    rig.answer()  # a late answer to the first transaction would be ignored; this one counts
    assert rig.nat.udp_address == "203.0.113.9:61000"


def test_401_is_counted_and_a_response_not_signed_with_the_password_is_not_taken() -> None:
    rig = make()
    rig.deliver(stun.error_response(rig.last(), 401, "Unauthorized"))
    assert rig.nat.counters.stun_unauthorized == 1
    assert rig.nat.udp_address == ""
    rig.clock.advance(nat.RTO)
    assert len(rig.port.sent) == 1  # answered: not retransmitted

    rig.clock.advance(PERIOD - nat.RTO)
    rig.deliver(stun.binding_response(rig.last(), MAPPED))  # unsigned
    rig.answer(key=b"another password")
    assert rig.nat.counters.stun_errors == 2
    assert rig.nat.udp_address == ""
    rig.answer()  # the same transaction, answered as it should be
    assert rig.nat.udp_address == "203.0.113.9:61000"


def test_without_a_username_requests_are_unsigned_and_the_address_given_is_used() -> None:
    rig = make(address="127.0.0.2", port=0, username="")
    [(message, to)] = rig.sent()
    assert to == ("127.0.0.2", 3478)  # port 0: STUN's default
    assert message.has(stun.CONNECTION_REQUEST_BINDING)
    assert not message.has(stun.USERNAME) and not message.has(stun.MESSAGE_INTEGRITY)
    rig.deliver(stun.binding_response(message, MAPPED), ("127.0.0.2", 3478))
    assert rig.nat.udp_address == "203.0.113.9:61000"


def test_a_stun_server_off_loopback_is_not_contacted() -> None:
    rig = make(address="192.0.2.1")
    assert rig.port.sent == []
    assert rig.nat.last_problem is not None and "loopback" in rig.nat.last_problem


def test_stun_stops_while_rebooting_and_resumes_after() -> None:
    rig = bound()
    rig.acs.script = [rpc.Reboot("r")]
    rig.cpe.inform()
    assert not rig.cpe.online
    rig.clock.advance(5.0 - 0.01)
    assert len(rig.port.sent) == 1  # no keep-alive while down
    rig.clock.advance(0.01)  # back up: STUN is still on, its first request goes out at once
    assert len(rig.port.sent) == 2
    assert rig.acs.events()[:1] == ["1 BOOT"]


def test_stop_closes_the_socket_and_cancels_every_timer() -> None:
    rig = make()
    done = rig.cpe.stop()
    assert done.called
    assert not rig.port.listening
    assert rig.clock.getDelayedCalls() == []


# --- the NAT -------------------------------------------------------------------------------


def test_the_nat_drops_what_comes_from_where_the_cpe_never_sent() -> None:
    rig = make()
    rig.nat.datagramReceived(request(NOW, 1), ("127.0.0.1", 3479))  # another port
    rig.nat.datagramReceived(request(NOW, 2), ("127.0.0.9", 3478))  # another host
    rig.nat.datagramReceived(stun.binding_response(rig.last(), ("1.2.3.4", 5)), ("127.0.0.1", 9))
    rig.clock.advance(0)
    assert rig.nat.counters.rejected == {nat.FILTERED: 3}
    assert rig.nat.udp_address == ""
    assert rig.wakes() == 0

    rig.deliver(request(NOW, 3))  # from the STUN server, which the CPE sent to
    assert rig.nat.counters.accepted == 1
    assert rig.wakes() == 1


def test_nothing_gets_in_before_the_first_binding_request() -> None:
    clock = UdpClock()
    clock.advance(NOW)
    profile = Profile(clock, ACS_URL, periodic=False, client_factory=Acs().client, nat=True)
    cpe = SimulatedCPE("NAT000003", load_template("tr181"), profile)
    cpe.start()
    clock.advance(0)
    assert cpe.nat is not None
    cpe.nat.datagramReceived(request(NOW, 1), STUN_SERVER)
    assert cpe.nat.counters.rejected == {nat.FILTERED: 1}


def test_the_binding_closes_when_the_keepalive_is_slower_than_the_nat_timeout() -> None:
    rig = make(period=200)
    rig.answer()  # answered: no retransmission refreshes the binding
    rig.clock.advance(nat.NAT_TIMEOUT)
    rig.deliver(request(rig.clock.seconds(), 1))
    assert rig.nat.counters.accepted == 1
    rig.clock.advance(1)
    rig.deliver(request(rig.clock.seconds(), 2))
    assert rig.nat.counters.rejected == {nat.FILTERED: 1}
    assert rig.wakes() == 1


# --- UDP connection requests ---------------------------------------------------------------


@pytest.mark.parametrize("model", ["tr181", "tr098"])
def test_a_valid_request_wakes_the_cpe_once_and_its_copies_are_duplicates(model: str) -> None:
    rig = bound(model)
    informs = len(rig.acs.informs)
    datagram = request(NOW, 4_000_000_000)
    for _ in range(3):  # the ACS's three copies, a second apart
        rig.deliver(datagram)
        rig.clock.advance(1)
    counters = rig.nat.counters
    assert (counters.accepted, counters.duplicate, counters.rejected) == (1, 2, {})
    assert len(rig.acs.informs) == informs + 1
    assert rig.acs.events() == ["6 CONNECTION REQUEST"]


def test_a_lower_case_signature_and_a_request_without_port_are_accepted_too() -> None:
    rig = bound()
    sig = expected_sig(CR_PASSWORD, int(NOW), 7, CR_USERNAME, "c").lower()
    rig.deliver(request(NOW, 7, cnonce="c", sig=sig, authority="203.0.113.9"))
    assert rig.nat.counters.accepted == 1
    assert rig.wakes() == 1


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        (request(NOW, 1, password="not the password"), nat.SIGNATURE),
        # Signed, then the ts changed: the signature no longer holds.
        (request_text(int(NOW), 1).replace(f"ts={int(NOW)}", f"ts={int(NOW) + 1}").encode(),
         nat.SIGNATURE),
        (request(NOW, 1, sig="0" * 40), nat.SIGNATURE),
        # The signature of the right password, for another username.
        (request(NOW, 1, username="someone else"), nat.USERNAME),
        (request(NOW + nat.TS_WINDOW + 1, 1), nat.STALE),
        (request(NOW - nat.TS_WINDOW - 1, 1), nat.STALE),
    ],
)  # fmt: skip
def test_forged_misaddressed_and_stale_requests_are_rejected(datagram: bytes, reason: str) -> None:
    rig = bound()
    rig.deliver(datagram)
    assert rig.nat.counters.rejected == {reason: 1}
    assert rig.nat.counters.accepted == rig.nat.counters.duplicate == 0
    assert rig.wakes() == 0
    rig.deliver(request(NOW, 99))  # a good one still gets through
    assert rig.wakes() == 1


def test_a_request_older_than_the_last_accepted_one_is_a_replay() -> None:
    rig = bound()
    rig.deliver(request(NOW, 1))
    rig.clock.advance(60)
    rig.deliver(request(NOW - 1, 2))  # a new id, but an older ts
    assert rig.nat.counters.rejected == {nat.REPLAYED: 1}
    rig.deliver(request(NOW, 3))  # as old as the last accepted one: fine
    rig.clock.advance(60)
    rig.deliver(request(rig.clock.seconds(), 4))
    assert rig.nat.counters.accepted == 3
    assert rig.nat.counters.rejected == {nat.REPLAYED: 1}


def test_an_accepted_id_with_another_signature_is_not_a_duplicate() -> None:
    rig = bound()
    rig.deliver(request(NOW, 5, cnonce="first"))
    rig.clock.advance(10)
    rig.deliver(request(NOW + 10, 5, cnonce="second"))
    assert rig.nat.counters.rejected == {nat.ID_REUSED: 1}
    assert rig.nat.counters.duplicate == 0
    assert rig.wakes() == 1


def _variants() -> list[tuple[str, Callable[[str], str]]]:
    ts = int(NOW)
    sig = expected_sig(CR_PASSWORD, ts, 1, CR_USERNAME, "Xy 9+z").upper()
    query = f"ts={ts}&id=1&un=acs%20user%261&cn=Xy%209%2Bz&sig={sig}"
    return [
        ("POST", lambda t: t.replace("GET ", "POST ", 1)),
        ("HTTP/1.0", lambda t: t.replace("HTTP/1.1", "HTTP/1.0")),
        ("lower-case method", lambda t: t.replace("GET ", "get ", 1)),
        ("two spaces", lambda t: t.replace("GET ", "GET  ", 1)),
        ("a path", lambda t: t.replace(":61000?", ":61000/?", 1)),
        ("relative URI", lambda t: t.replace("http://203.0.113.9:61000?", "/?", 1)),
        ("https", lambda t: t.replace("http://", "https://", 1)),
        ("userinfo", lambda t: t.replace("http://", "http://u@", 1)),
        ("no query", lambda t: t.replace("?" + query, "")),
        ("missing sig", lambda t: t.replace(f"&sig={sig}", "")),
        ("an extra field", lambda t: t.replace(query, query + "&x=1")),
        ("ts twice", lambda t: t.replace(query, query + f"&ts={ts}")),
        ("field without =", lambda t: t.replace("&id=1", "&id")),
        ("fragment", lambda t: t.replace(query, query + "#f")),
        ("short sig", lambda t: t.replace(sig, sig[:-1])),
        ("non-hex sig", lambda t: t.replace(sig, "G" * 40)),
        ("negative ts", lambda t: t.replace(f"ts={ts}", f"ts=-{ts}")),
        ("decimal point in id", lambda t: t.replace("&id=1&", "&id=1.0&")),
        ("bad percent escape", lambda t: t.replace("acs%20user", "acs%zzuser")),
        ("not UTF-8 once decoded", lambda t: t.replace("acs%20user", "acs%FFuser")),
        ("empty cn", lambda t: t.replace("cn=Xy%209%2Bz", "cn=")),
        ("no Host", lambda t: t.replace("Host: 203.0.113.9:61000\r\n", "")),
        ("two Hosts", lambda t: t.replace("\r\n\r\n", "\r\nHost: x\r\n\r\n")),
        ("a bad header line", lambda t: t.replace("\r\n\r\n", "\r\nno colon\r\n\r\n")),
        ("a body", lambda t: t + "x"),
        ("no empty line", lambda t: t[:-2]),
        ("LF only", lambda t: t.replace("\r\n", "\n")),
        ("not ASCII", lambda t: t.replace("Host:", "H\u00f6st:")),
        ("too long", lambda t: t.replace("\r\n\r\n", "\r\nX-Pad: " + "a" * 1500 + "\r\n\r\n")),
    ]


@pytest.mark.parametrize(("name", "change"), _variants(), ids=[n for n, _ in _variants()])
def test_malformed_requests_are_rejected(name: str, change: Callable[[str], str]) -> None:
    rig = bound()
    text = request_text(int(NOW), 1)
    assert "?ts=" in text and change(text) != text
    rig.deliver(change(text).encode("utf-8"))
    assert rig.nat.counters.rejected == {nat.MALFORMED: 1}, rig.nat.last_problem
    assert rig.wakes() == 0


def test_the_unchanged_request_of_the_malformed_cases_is_accepted() -> None:
    rig = bound()
    rig.deliver(request(NOW, 1))
    assert rig.nat.counters.accepted == 1


def test_a_request_while_rebooting_wakes_nothing() -> None:
    rig = bound()
    rig.acs.script = [rpc.Reboot("r")]
    rig.cpe.inform()
    rig.deliver(request(NOW, 1))
    assert rig.nat.counters.rejected == {nat.OFFLINE: 1}
    assert rig.nat.counters.accepted == 0


# --- the fleet and its command line --------------------------------------------------------


def test_nat_option_builds_a_nat_fleet_and_bounds_its_size(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = parse_args(["--acs", "http://127.0.0.1:7547/", "--count", "2", "--nat"])
    fleet = make_fleet(UdpClock(), args)
    assert fleet.nat
    assert all(c.nat is not None for c in fleet.cpes)
    assert "udp wakes 0 duplicate 0 rejected 0 | stun ok 0 401 0" in fleet.summary()
    assert parse_args(["--acs", "http://x/", "--count", "2"]).nat is False
    with pytest.raises(SystemExit):
        parse_args(["--acs", "http://127.0.0.1:7547/", "--count", "1001", "--nat"])
    assert "--nat takes at most 1000" in capsys.readouterr().err
    with pytest.raises(ValueError):
        Fleet(UdpClock(), acs_url=ACS_URL, count=1001, nat=True)


WAIT = 10.0


class StunAndWake(DatagramProtocol):
    """The ACS's side on real UDP: answers Binding Requests signed with the STUN password,
    then wakes the CPE from this same socket with three copies of one request."""

    def __init__(self) -> None:
        self.bound: defer.Deferred[tuple[str, int]] = defer.Deferred()

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        message = stun.parse(datagram)
        assert message.integrity(STUN_PASSWORD.encode()) == "5389"
        response = stun.binding_response(message, addr, key=STUN_PASSWORD.encode())
        self.send(response, addr)
        if not self.bound.called:
            self.bound.callback((str(addr[0]), int(addr[1])))

    def send(self, datagram: bytes, addr: tuple[str, int]) -> None:
        transport: Any = self.transport  # IUDPTransport's stubs lack write's address
        transport.write(datagram, addr)


class LoopbackTests(unittest.TestCase):
    async def test_a_nat_fleet_is_refused_over_tcp_and_woken_over_udp(self) -> None:
        server = StunAndWake()
        udp = reactor.listenUDP(0, server, interface="127.0.0.1")
        self.addCleanup(udp.stopListening)
        fleet = Fleet(reactor, acs_url=ACS_URL, count=1, periodic=False, nat=True)
        acs = Acs(script=[provisioning("Device.", port=udp.getHost().port)])
        fleet.profile.client_factory = acs.client
        cpe = fleet.cpes[0]
        assert cpe.nat is not None
        first = cpe.next_session()
        await fleet.start()
        self.addCleanup(fleet.stop)
        self.assertIsNone(fleet.port)  # no HTTP listener
        await first.addTimeout(WAIT, reactor)

        url = cpe.value("Device.ManagementServer.ConnectionRequestURL")
        assert url is not None and url.startswith("http://127.0.0.1:")
        tcp_port = int(url.rsplit(":", 1)[1].split("/")[0])
        factory: Any = Factory.forProtocol(Protocol)
        connecting = TCP4ClientEndpoint(reactor, "127.0.0.1", tcp_port, timeout=WAIT).connect(
            factory
        )
        await self.assertFailure(connecting, ConnectionRefusedError)

        where = await server.bound.addTimeout(WAIT, reactor)
        self.assertEqual(where, cpe.nat.address)
        woken = cpe.next_session()
        datagram = request(reactor.seconds(), 12345, authority=f"{where[0]}:{where[1]}")
        for _ in range(3):
            server.send(datagram, where)
        await woken.addTimeout(WAIT, reactor)

        self.assertEqual(acs.events(), ["6 CONNECTION REQUEST"])
        self.assertEqual(cpe.nat.counters.accepted, 1)
        self.assertEqual(cpe.nat.counters.duplicate, 2)
        self.assertEqual(cpe.nat.udp_address, f"{where[0]}:{where[1]}")
        self.assertEqual(cpe.value("Device.ManagementServer.NATDetected"), "true")
        await fleet.stop()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", tcp_port))  # released by stop()
