"""The NAT in front of a simulated CPE, and the TR-111 side of the CPE behind it (``--nat``).

Behind a NAT the ACS cannot open a TCP connection to the CPE: its ConnectionRequestURL names
a loopback port where nothing listens (``Fleet`` keeps that port bound, not listening, so a
connection is refused), and ``NATDetected`` is true. UDP is what gets through (TR-111 Part 2,
TR-069 Annex G). Each CPE has one socket on 127.0.0.1, used for STUN *and* for receiving UDP
connection requests, because TR-111 requires them to share it: the ACS answers through the
binding that the Binding Requests keep open.

- NAT: address-and-port-dependent filtering (RFC 4787 §5): a datagram gets in only from a
  (host, port) this CPE sent to within NAT_TIMEOUT seconds. Anything else is dropped and
  counted (``filtered``), so only what the ACS sends from its STUN socket reaches the CPE.
- STUN client: while ``STUNEnable`` is true, a Binding Request goes to STUNServerAddress:
  STUNServerPort (an empty address means the host of the ACS URL; port 0 means 3478)
  every STUNMinimumKeepAlivePeriod seconds (at least MIN_PERIOD). Each request carries
  CONNECTION-REQUEST-BINDING, plus USERNAME and MESSAGE-INTEGRITY (keyed with STUNPassword)
  when STUNUsername is set. An unanswered request is sent again RETRANSMITS times. The mapped
  address of the answer becomes UDPConnectionRequestAddress, and a change is reported as
  that parameter's notification attribute says. When the mapping moves, the next request
  goes out at once with BINDING-CHANGE, and every request carries it until one is answered.
  The server must be a loopback IPv4 address (the socket can reach nothing else).
- UDP connection requests are checked against TR-111's text alone, not the ACS's code, so a
  bug in the ACS's signing shows up here (see ``parse_request`` and ``Nat``). A valid new
  request starts a ``6 CONNECTION REQUEST`` session. Copies of an accepted one (same ``id``,
  same signature: the ACS's retransmissions) count as ``duplicate`` and change nothing.

Everything is driven by the CPE's reactor (timers, and ``listenUDP`` for the socket), so a
``task.Clock`` that also fakes ``listenUDP`` runs it all in tests. All memory is bounded:
the peers of the NAT, the ids kept, the size of a request.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.protocol import DatagramProtocol

from acs import stun
from acs.clock import DelayedCall

if TYPE_CHECKING:
    from cpe_sim.cpe import SimulatedCPE

INTERFACE = "127.0.0.1"
# Seconds a NAT keeps a UDP binding open without outgoing traffic. Real NATs range from
# 30 s to a few minutes (RFC 4787 REQ-5 asks at least 2 minutes).
NAT_TIMEOUT = 120.0
MAX_PEERS = 32  # addresses the NAT remembers sending to (the STUN server, mostly)
MIN_PERIOD = 1.0  # STUNMinimumKeepAlivePeriod below this (0 included) means this
STUN_PORT = 3478  # RFC 5389's default: what a STUNServerPort of 0 stands for
RTO = 0.5  # seconds before the first retransmission; the wait then doubles
RETRANSMITS = 2
MAX_REQUEST = 1500  # bytes of a UDP connection request (one Ethernet MTU)
TS_WINDOW = 300.0  # seconds a request's ts may be off this CPE's clock
RECENT_IDS = 64  # ids of accepted requests kept to recognise their copies

# Why a datagram was turned away: the keys of ``NatCounters.rejected``.
FILTERED = "filtered"  # the NAT: a source this CPE has not sent to (lately)
OFFLINE = "offline"  # the CPE is rebooting or stopped
MALFORMED = "malformed"
USERNAME = "username"
SIGNATURE = "signature"
ID_REUSED = "id_reused"  # an accepted request's id with another signature
REPLAYED = "replayed"  # ts older than the last accepted one
STALE = "stale"  # ts more than TS_WINDOW off this CPE's clock

FIELDS = ("ts", "id", "un", "cn", "sig")


@dataclass
class NatCounters:
    """What the NAT and the CPE's TR-111 side did, for tests and the fleet summary."""

    accepted: int = 0  # UDP connection requests that started a session
    duplicate: int = 0  # copies of an accepted one, ignored
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> datagrams
    stun_sent: int = 0  # Binding Requests, retransmissions included
    stun_retransmitted: int = 0
    stun_answered: int = 0  # Binding Responses taken
    stun_unauthorized: int = 0  # 401 answers
    stun_errors: int = 0  # other error answers, and answers that could not be used
    stun_timeouts: int = 0  # requests unanswered after their retransmissions
    binding_changes: int = 0  # the mapped address moved

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


# --- UDP connection requests, parsed and signed from TR-111's text --------------------------


class MalformedRequest(ValueError):
    """The datagram is not a UDP connection request (``str``: why)."""


@dataclass(frozen=True)
class UdpRequest:
    """One parsed request. ``ts``/``id`` as numbers; ``signed`` is what ``sig`` signs: the
    decoded values of ts, id, un and cn one after the other, as they were sent."""

    ts: int
    message_id: int
    username: str
    cnonce: str
    sig: str  # 40 hex digits, lower case
    signed: str

    def signed_with(self, password: str) -> bool:
        return hmac.compare_digest(signature(password, self.signed), self.sig)


def signature(password: str, text: str) -> str:
    """HMAC-SHA1 of ``text`` keyed with ``password``, in lower-case hex."""
    return hmac.new(password.encode("utf-8"), text.encode("utf-8"), hashlib.sha1).hexdigest()


_REQUEST_LINE = re.compile(r"GET (\S+) HTTP/1\.1")
_HEADER = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*[\x20-\x7e\t]*")
_AUTHORITY = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
# A query value as RFC 3986 allows (pchar / "/" / "?"), "&" excepted: it separates fields.
_VALUE = re.compile(r"(?:[A-Za-z0-9._~!$'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*")
_DECIMAL = re.compile(r"[0-9]{1,20}")
_HEX40 = re.compile(r"[0-9A-Fa-f]{40}")


def parse_request(data: bytes) -> UdpRequest:
    """``data`` as a UDP connection request, or MalformedRequest. The format is strict:
    ``GET http://host[:port]?ts=..&id=..&un=..&cn=..&sig=.. HTTP/1.1``, then header lines
    (exactly one Host), an empty line, and no body. The path is empty, the query holds
    exactly those five fields once each (in any order), ts and id are decimal, sig is 40
    hex digits in either case, and values are percent-decoded as RFC 3986 says (a ``+``
    stays a ``+``)."""
    if len(data) > MAX_REQUEST:
        raise MalformedRequest(f"{len(data)} bytes: longer than {MAX_REQUEST}")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise MalformedRequest("not ASCII") from None
    head, blank, body = text.partition("\r\n\r\n")
    if not blank or body:
        raise MalformedRequest("not a request ending with an empty line and no body")
    line, *headers = head.split("\r\n")
    matched = _REQUEST_LINE.fullmatch(line)
    if matched is None:
        raise MalformedRequest(f"request line is not GET <uri> HTTP/1.1: {line[:80]!r}")
    hosts = 0
    for header in headers:
        h = _HEADER.fullmatch(header)
        if h is None:
            raise MalformedRequest(f"not a header line: {header[:80]!r}")
        hosts += h[1].lower() == "host"
    if hosts != 1:
        raise MalformedRequest(f"{hosts} Host headers, HTTP/1.1 wants one")
    return _parse_uri(matched[1])


def _parse_uri(uri: str) -> UdpRequest:
    if not uri.startswith("http://"):
        raise MalformedRequest(f"not an absolute http URI: {uri[:80]!r}")
    authority, question, query = uri[len("http://") :].partition("?")
    if "/" in authority:
        raise MalformedRequest("the URI's path is not empty")
    if not _AUTHORITY.fullmatch(authority):
        raise MalformedRequest(f"not a host[:port]: {authority[:80]!r}")
    if not question:
        raise MalformedRequest("no query")
    raw: dict[str, str] = {}
    for pair in query.split("&"):
        name, equals, value = pair.partition("=")
        if not equals or name not in FIELDS or name in raw:
            raise MalformedRequest(f"query field {name[:20]!r}: want ts, id, un, cn, sig once")
        if not _VALUE.fullmatch(value):
            raise MalformedRequest(f"{name}: not a percent-encoded query value")
        raw[name] = value
    if len(raw) != len(FIELDS):
        missing = ", ".join(f for f in FIELDS if f not in raw)
        raise MalformedRequest(f"query lacks {missing}")
    try:
        values = {name: unquote(value, errors="strict") for name, value in raw.items()}
    except UnicodeDecodeError:
        raise MalformedRequest("a value is not UTF-8 once decoded") from None
    if not _DECIMAL.fullmatch(values["ts"]) or not _DECIMAL.fullmatch(values["id"]):
        raise MalformedRequest("ts and id must be unsigned decimal integers")
    if not _HEX40.fullmatch(values["sig"]):
        raise MalformedRequest("sig is not 40 hex digits (HMAC-SHA1)")
    if not values["cn"]:
        raise MalformedRequest("empty cn")
    return UdpRequest(
        ts=int(values["ts"]),
        message_id=int(values["id"]),
        username=values["un"],
        cnonce=values["cn"],
        sig=values["sig"].lower(),
        signed=values["ts"] + values["id"] + values["un"] + values["cn"],
    )


# --- the NAT, the STUN client and the receiver, on one socket --------------------------------


@dataclass(frozen=True)
class _StunSettings:
    server: stun.Address
    username: str
    password: str
    period: float


@dataclass
class _Transaction:
    """A Binding Request waiting for its answer: resent unchanged until one comes."""

    transaction: bytes
    data: bytes
    key: bytes | None  # what the answer must be signed with
    binding_change: bool
    tries: int = 0


def _is_stun(datagram: bytes) -> bool:
    """STUN messages start with two zero bits; an HTTP request line starts with a letter."""
    return len(datagram) >= stun.HEADER and not datagram[0] & 0xC0


def _loopback_server(host: str) -> str | None:
    """``host`` as the IPv4 loopback address to send to, None if it is not one."""
    if host == "localhost":
        return INTERFACE
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return str(address) if address.version == 4 and address.is_loopback else None


class Nat(DatagramProtocol):
    """One CPE's socket behind its NAT (see the module docstring). ``SimulatedCPE`` calls
    ``start``/``stop`` with its own and ``configure`` whenever its STUN settings or its
    being online may have changed."""

    noisy = False

    def __init__(self, cpe: SimulatedCPE) -> None:
        self._cpe = cpe
        self.counters = NatCounters()
        self.last_problem: str | None = None  # why the latest datagram or request failed
        self._port: Any | None = None
        self._peers: OrderedDict[stun.Address, float] = OrderedDict()  # -> last sent to
        self._settings: tuple[_StunSettings | None, str | None] = (None, None)
        self._pending: _Transaction | None = None
        self._binding_change = False  # the mapping moved: say so until a request is answered
        self._keepalive_call: DelayedCall | None = None
        self._retransmit_call: DelayedCall | None = None
        self._last_ts: int | None = None
        self._ids: OrderedDict[int, str] = OrderedDict()  # accepted id -> its sig

    @property
    def address(self) -> stun.Address | None:
        """Where the socket is bound (None before ``start``): where the ACS's datagrams
        land on loopback, the NAT's public side and its private side being the same here."""
        if self._port is None:
            return None
        host = self._port.getHost()
        return str(host.host), int(host.port)

    @property
    def udp_address(self) -> str:
        """The ``UDPConnectionRequestAddress`` the CPE reports ("" until STUN mapped it)."""
        return self._cpe.model.get_raw(self._udp_address_name) or ""

    @property
    def _udp_address_name(self) -> str:
        return self._cpe.root + "ManagementServer.UDPConnectionRequestAddress"

    def start(self) -> None:
        """Open the socket (again, after ``stop``), on an ephemeral loopback port."""
        if self._port is None:
            size = MAX_REQUEST + 1  # anything longer is read as too long, then refused
            self._port = self._cpe.profile.reactor.listenUDP(
                0, self, interface=INTERFACE, maxPacketSize=size
            )

    def stop(self) -> Deferred[None]:
        """Stop the STUN client and close the socket."""
        self._halt()
        self._settings = (None, None)
        if self._port is None:
            return succeed(None)
        port, self._port = self._port, None
        return maybeDeferred(port.stopListening).addCallback(lambda _: None)

    # -- the NAT --

    def _sent_to(self, peer: stun.Address) -> None:
        self._peers[peer] = float(self._cpe.profile.reactor.seconds())
        self._peers.move_to_end(peer)
        while len(self._peers) > MAX_PEERS:
            self._peers.popitem(last=False)

    def _admits(self, source: stun.Address) -> bool:
        sent = self._peers.get(source)
        return sent is not None and self._cpe.profile.reactor.seconds() - sent <= NAT_TIMEOUT

    def _send(self, data: bytes, peer: stun.Address) -> bool:
        transport: Any = self.transport
        if transport is None:
            return False
        try:
            transport.write(data, peer)
        except OSError as exc:
            self.last_problem = f"cannot send to {peer[0]}:{peer[1]}: {exc}"
            return False
        self._sent_to(peer)
        return True

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        source = (str(addr[0]), int(addr[1]))
        if not self._admits(source):
            self._reject(FILTERED, f"from {source[0]}:{source[1]}, never sent to")
        elif _is_stun(datagram):
            self._stun_received(datagram)
        else:
            self._connection_request(datagram)

    def _reject(self, reason: str, problem: str) -> None:
        self.counters.reject(reason)
        self.last_problem = f"{reason}: {problem}"

    # -- UDP connection requests --

    def _connection_request(self, datagram: bytes) -> None:
        cpe = self._cpe
        if not cpe.online or cpe.stopped:
            self._reject(OFFLINE, "the CPE is not running")
            return
        try:
            request = parse_request(datagram)
        except MalformedRequest as exc:
            self._reject(MALFORMED, str(exc))
            return
        username, password = cpe.connection_request_credentials
        if request.username != username:
            self._reject(USERNAME, f"un={request.username[:64]!r}")
            return
        if not request.signed_with(password):
            self._reject(SIGNATURE, "sig is not HMAC-SHA1(ConnectionRequestPassword, ts id un cn)")
            return
        seen = self._ids.get(request.message_id)
        if seen is not None:
            if seen == request.sig:
                self.counters.duplicate += 1
            else:
                self._reject(ID_REUSED, f"id {request.message_id} was accepted with another sig")
            return
        if self._last_ts is not None and request.ts < self._last_ts:
            self._reject(REPLAYED, f"ts {request.ts} is older than {self._last_ts}")
            return
        now = float(cpe.profile.reactor.seconds())
        if abs(request.ts - now) > TS_WINDOW:
            self._reject(STALE, f"ts {request.ts} is {request.ts - now:+.0f} s off")
            return
        self._last_ts = request.ts
        self._ids[request.message_id] = request.sig
        while len(self._ids) > RECENT_IDS:
            self._ids.popitem(last=False)
        self.counters.accepted += 1
        cpe.connection_request()

    # -- the STUN client --

    def configure(self) -> None:
        """Follow the data model: (re)start the client when STUN settings changed, stop it
        when STUN is off or the CPE is offline. Unchanged settings change nothing."""
        settings = self._read_settings()
        if settings == self._settings:
            return
        self._halt()
        self._settings = settings
        wanted, problem = settings
        if problem is not None:
            self.last_problem = problem
        if wanted is not None:
            self._keepalive()

    def _read_settings(self) -> tuple[_StunSettings | None, str | None]:
        cpe = self._cpe
        if not cpe.online or cpe.stopped or self._port is None:
            return None, None
        ms = cpe.root + "ManagementServer."

        def get(name: str) -> str:
            return cpe.model.get_raw(ms + name) or ""

        if get("STUNEnable").lower() not in ("true", "1"):
            return None, None
        address = get("STUNServerAddress") or urlsplit(get("URL")).hostname or ""
        host = _loopback_server(address)
        if host is None:
            return None, f"STUN server {address!r} is not a loopback IPv4 address"
        try:
            port = int(get("STUNServerPort") or 0) or STUN_PORT
            period = max(MIN_PERIOD, float(get("STUNMinimumKeepAlivePeriod") or 0))
        except ValueError:
            return None, "STUNServerPort or STUNMinimumKeepAlivePeriod is not a number"
        server = (host, port)
        return _StunSettings(server, get("STUNUsername"), get("STUNPassword"), period), None

    def _halt(self) -> None:
        for call in (self._keepalive_call, self._retransmit_call):
            if call is not None and call.active():
                call.cancel()
        self._keepalive_call = self._retransmit_call = None
        self._pending = None

    def _keepalive(self) -> None:
        """Send a Binding Request now, and the next one a period from now. A request still
        unanswered is given up on: this one replaces it."""
        settings = self._settings[0]
        assert settings is not None
        self._halt()
        reactor = self._cpe.profile.reactor
        self._keepalive_call = reactor.callLater(settings.period, self._keepalive)
        transaction = self._cpe.profile.rng.randbytes(12)
        key = settings.password.encode("utf-8") if settings.username else None
        data = stun.binding_request(
            transaction,
            username=settings.username or None,
            key=key,
            connection_request_binding=True,
            binding_change=self._binding_change,
        )
        self._pending = _Transaction(transaction, data, key, self._binding_change)
        self._transmit()

    def _transmit(self) -> None:
        pending, settings = self._pending, self._settings[0]
        assert pending is not None and settings is not None
        self.counters.stun_sent += 1
        self._send(pending.data, settings.server)
        wait = RTO * 2**pending.tries
        self._retransmit_call = self._cpe.profile.reactor.callLater(wait, self._unanswered)

    def _unanswered(self) -> None:
        self._retransmit_call = None
        pending = self._pending
        if pending is None:
            return
        if pending.tries < RETRANSMITS:
            pending.tries += 1
            self.counters.stun_retransmitted += 1
            self._transmit()
            return
        self._pending = None
        self.counters.stun_timeouts += 1
        self.last_problem = "STUN: no answer to a Binding Request"

    def _finish(self) -> None:
        if self._retransmit_call is not None and self._retransmit_call.active():
            self._retransmit_call.cancel()
        self._retransmit_call = None
        self._pending = None

    def _stun_received(self, datagram: bytes) -> None:
        try:
            message = stun.parse(datagram)
        except stun.StunError as exc:
            self._stun_problem(f"not a STUN message: {exc}")
            return
        pending = self._pending
        if pending is None or message.transaction != pending.transaction:
            self._stun_problem("an answer to no request under way")
            return
        if message.kind == stun.BINDING_ERROR:
            code = stun.error_code(message)
            self._finish()
            if code == 401:
                self.counters.stun_unauthorized += 1
            else:
                self.counters.stun_errors += 1
            self.last_problem = f"STUN server answered {code}"
            return
        if message.kind != stun.BINDING_RESPONSE:
            self._stun_problem(f"message type 0x{message.kind:04x} is not a Binding answer")
            return
        # Unsigned or wrongly signed: not the server's (RFC 5389 10.1.3); keep waiting.
        if pending.key is not None and message.integrity(pending.key) is None:
            self._stun_problem("Binding Response not signed with STUNPassword")
            return
        mapped = stun.mapped_address(message)
        if mapped is None:
            self._stun_problem("Binding Response without a mapped address")
            return
        self._finish()
        self.counters.stun_answered += 1
        if pending.binding_change:
            self._binding_change = False
        self._mapped(mapped)

    def _stun_problem(self, problem: str) -> None:
        self.counters.stun_errors += 1
        self.last_problem = f"STUN: {problem}"

    def _mapped(self, mapped: stun.Address) -> None:
        host, port = mapped
        text = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        previous = self.udp_address
        if text == previous:
            return
        self._cpe.change_value(self._udp_address_name, text)
        if previous:
            self.counters.binding_changes += 1
            self._binding_change = True
            self._keepalive()  # tell the server at once (TR-111: BINDING-CHANGE)
