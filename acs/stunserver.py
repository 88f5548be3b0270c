"""The STUN server of TR-111 Part 2 (TR-069 Annex G): ``[stun] listen``, UDP.

CPEs behind NAT send Binding Requests here to learn their public address and to keep
their NAT binding open; the ACS sends UDP connection requests back through that binding,
from this listener's own socket (the NAT lets in only what comes from where its binding
points). For each datagram:

- a source over its rate (``rate`` a second, bursts of ``burst``), a datagram that is not
  a well-formed STUN message (`acs.stun.parse`), or one that is not a Binding Request is
  dropped, and counted;
- a Binding Request with a comprehension-required attribute unknown here gets 420;
- one whose USERNAME names a device's STUN credentials (`Store.stun_credentials`, the
  ones provisioning set) must carry MESSAGE-INTEGRITY signed with its password, else 401;
  signed, it is answered signed and, when it carries CONNECTION-REQUEST-BINDING, its
  source becomes the device's binding (`Store.record_stun_binding`: written when it
  changes, and at most every ``refresh`` seconds when it does not);
- any other Binding Request (no USERNAME, or one unknown here without MESSAGE-INTEGRITY)
  is answered as any STUN server would, and binds nothing. Answers carry nothing beyond
  the mapped address (and the signature): a spoofed request reflects little.

Lookups and writes are units of work (`Store.read` / `Store.run`): the answer goes out
when they are done. Everything kept in memory is bounded (sources, usernames, bindings).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, fail, maybeDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from acs import stun
from acs.clock import Clock, Reactor
from acs.config import udp_listen
from acs.store import Store, StunBinding

# Datagrams a second one source address may send, and the burst it may save up: a
# carrier-grade NAT puts thousands of CPEs behind one address, each keeping its binding
# with one Binding Request every few tens of seconds.
RATE = 200.0
BURST = 400.0
# Seconds a looked-up username (found or not) is used before it is looked up again.
CREDENTIALS_TTL = 60.0
UNKNOWN_TTL = 10.0
# Seconds between writes of an unchanged binding's ``seen`` time.
REFRESH = 60.0
# Entries kept in memory, each table: the oldest go first.
MAX_ENTRIES = 100_000

log = Logger()


def _lru_put(table: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > MAX_ENTRIES:
        table.popitem(last=False)


class SourceLimiter:
    """A token bucket per source address: ``admit`` says whether one more datagram fits."""

    def __init__(self, rate: float = RATE, burst: float = BURST) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def admit(self, source: str, now: float) -> bool:
        tokens, then = self._buckets.get(source, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate) if now > then else tokens
        admitted = tokens >= 1.0
        _lru_put(self._buckets, source, (tokens - 1.0 if admitted else tokens, now))
        return admitted


def plain_host(host: str) -> str:
    """``host`` as text, an IPv4-mapped IPv6 address as its IPv4 form."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped if mapped is not None else address)


class StunServer(DatagramProtocol):
    """The listener's protocol (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        observe: Callable[[str], None] | None = None,
        limiter: SourceLimiter | None = None,
        refresh: float = REFRESH,
    ) -> None:
        self._store = store
        # This process's node id, recorded with each binding: UDP connection requests for
        # the device leave from this socket, so other nodes send theirs through this one.
        self.node: int | None = None
        self._clock = clock
        self._observe = observe
        self._limiter = limiter if limiter is not None else SourceLimiter()
        self._refresh = refresh
        # username -> (credentials or None, when looked up)
        self._credentials: OrderedDict[str, tuple[StunBinding | None, float]] = OrderedDict()
        # device id -> (address, port, when written)
        self._kept: OrderedDict[int, tuple[str, int, float]] = OrderedDict()
        # Units under way (lookups, writes): `settled` waits for them.
        self._under_way: set[Deferred[Any]] = set()

    # --- what the ACS sends through it --------------------------------------------------

    def send(self, data: bytes, host: str, port: int) -> bool:
        """Send ``data`` to ``host``:``port`` from this listener's socket; False when it is
        not listening (or cannot reach that address family)."""
        transport: Any = self.transport
        if transport is None:
            return False
        target = host
        if transport.addressFamily.name == "AF_INET6" and ":" not in host:
            target = f"::ffff:{host}"  # a dual-stack socket reaches IPv4 so
        elif transport.addressFamily.name == "AF_INET" and ":" in host:
            return False
        try:
            transport.write(data, (target, port))
        except OSError as exc:
            log.info("STUN listener cannot send to {host}:{port}: {why}", host=host, port=port,
                     why=exc)  # fmt: skip
            return False
        return True

    # --- what arrives ------------------------------------------------------------------

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        try:
            self._received(datagram, (plain_host(str(addr[0])), int(addr[1])), addr)
        except Exception:  # never let one datagram stop the listener
            self._count("error")
            log.failure("STUN datagram from {addr} broke its handling", addr=addr)

    def _received(self, datagram: bytes, source: stun.Address, addr: Any) -> None:
        if not self._limiter.admit(source[0], self._clock.seconds()):
            self._count("rate_limited")
            return
        try:
            message = stun.parse(datagram)
            username = message.username
        except stun.StunError:
            self._count("malformed")
            return
        if message.kind != stun.BINDING_REQUEST:
            self._count("ignored")
            return
        unknown = message.unknown_required()
        if unknown:
            self._reply(
                addr,
                stun.error_response(message, 420, "Unknown Attribute", unknown),
                "unknown_attribute",
            )
            return
        if username is None:
            if message.has(stun.MESSAGE_INTEGRITY):
                self._reply(
                    addr, stun.error_response(message, 400, "USERNAME missing"), "unauthenticated"
                )
                return
            self._reply(addr, stun.binding_response(message, source), "anonymous")
            return
        cached = self._credentials.get(username)
        now = self._clock.seconds()
        if cached is not None and now - cached[1] < (
            CREDENTIALS_TTL if cached[0] is not None else UNKNOWN_TTL
        ):
            self._answer(message, source, addr, username, cached[0], fresh=False)
            return
        self._look_up(message, source, addr, username)

    def _look_up(
        self, message: stun.Message, source: stun.Address, addr: Any, username: str
    ) -> None:
        def failed(failure: Failure) -> None:
            self._count("error")  # unanswered: the CPE asks again
            log.failure("cannot look up STUN username {username!r}", failure, username=username)

        looked = self._unit(self._store.read(self._store.stun_credentials, username))
        looked.addCallback(self._looked_up, message, source, addr, username).addErrback(failed)

    def _looked_up(
        self,
        found: StunBinding | None,
        message: stun.Message,
        source: stun.Address,
        addr: Any,
        username: str,
    ) -> None:
        _lru_put(self._credentials, username, (found, self._clock.seconds()))
        self._answer(message, source, addr, username, found, fresh=True)

    def _answer(
        self,
        message: stun.Message,
        source: stun.Address,
        addr: Any,
        username: str,
        found: StunBinding | None,
        *,
        fresh: bool,
    ) -> None:
        if found is None:
            if message.has(stun.MESSAGE_INTEGRITY):  # signed with credentials unknown here
                self._reply(
                    addr, stun.error_response(message, 401, "Unauthorized"), "unauthenticated"
                )
                return
            self._reply(addr, stun.binding_response(message, source), "unknown_username")
            return
        key = found.password.encode("utf-8")
        form = message.integrity(key)
        if form is None:
            if not fresh and message.has(stun.MESSAGE_INTEGRITY):
                # Perhaps provisioning gave the device a new password since the lookup.
                self._credentials.pop(username, None)
                self._look_up(message, source, addr, username)
                return
            self._reply(addr, stun.error_response(message, 401, "Unauthorized"), "unauthenticated")
            return
        signed = stun.binding_response(message, source, key=key, integrity=form)
        self._reply(addr, signed, "bound")
        if message.has(stun.CONNECTION_REQUEST_BINDING):
            self._keep(found.device_id, source)

    def _keep(self, device_id: int, source: stun.Address) -> None:
        now = self._clock.seconds()
        kept = self._kept.get(device_id)
        if kept is not None and kept[:2] == source and now - kept[2] < self._refresh:
            return
        _lru_put(self._kept, device_id, (*source, now))  # written once, not per datagram
        written = self._store.run(self._record, device_id, source, now)

        def failed(failure: Failure) -> None:
            self._kept.pop(device_id, None)  # written again at the next request
            log.failure("cannot record the STUN binding of device {device_id}", failure,
                        device_id=device_id)  # fmt: skip

        self._unit(written).addErrback(failed)

    def _record(self, device_id: int, source: stun.Address, now: float) -> bool:
        return self._store.record_stun_binding(device_id, *source, now=now, node=self.node)

    # --- helpers -----------------------------------------------------------------------

    def _reply(self, addr: Any, data: bytes, outcome: str) -> None:
        """Answer ``data`` to ``addr``; count the datagram answered as ``outcome``."""
        self._count(outcome)
        transport: Any = self.transport
        if transport is not None:
            try:
                transport.write(data, addr)
            except OSError:
                self._count("send_failed")

    def _count(self, outcome: str) -> None:
        if self._observe is not None:
            self._observe(outcome)

    def _unit(self, done: Deferred[Any]) -> Deferred[Any]:
        self._under_way.add(done)

        def over(result: Any) -> Any:
            self._under_way.discard(done)
            return result

        return done.addBoth(over)

    def settled(self) -> Deferred[None]:
        """Fires once the units under way (lookups, binding writes) are done."""
        waiting: Deferred[Any] = DeferredList(list(self._under_way), consumeErrors=True)
        return waiting.addCallback(lambda _: None)


class StunListener(Service):
    """Listens on ``[stun] listen`` while running; ``port`` once bound, ``error`` if not."""

    def __init__(
        self, reactor: Reactor, description: str, protocol: StunServer, *, fd: int | None = None
    ) -> None:
        """``fd``: a bound socket inherited from the supervisor of ``--workers`` (every
        worker reads and sends on the same one), listened on in place of ``description``."""
        self.setName("stun")
        self._reactor = reactor
        self.description = description
        self.protocol = protocol
        self._fd = fd
        self.port: Any = None
        self.error: Failure | None = None

    def startService(self) -> None:
        super().startService()
        number, interface = udp_listen(self.description)
        # Datagrams longer than a STUN message are cut here and refused by the parser:
        # nothing is read past MAX_DATAGRAM + 1 bytes.
        size = stun.MAX_DATAGRAM + 1
        listen = self._reactor.listenUDP
        self.error = None
        try:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                probe = socket.socket(fileno=fd)
                family = probe.family
                probe.detach()
                self.port = self._reactor.adoptDatagramPort(
                    fd, family, self.protocol, maxPacketSize=size
                )
                os.close(fd)  # the reactor's port holds a copy
            elif interface:
                self.port = listen(number, self.protocol, interface=interface, maxPacketSize=size)
            else:
                try:  # every IPv6 address and, dual stack, every IPv4 one
                    self.port = listen(number, self.protocol, interface="::", maxPacketSize=size)
                except CannotListenError:  # a host without IPv6
                    self.port = listen(number, self.protocol, maxPacketSize=size)
        except CannotListenError:
            self.error = Failure()
            log.error("stun: cannot listen on {description}: {error}",
                      description=self.description, error=self.error.getErrorMessage())  # fmt: skip
            return
        host = self.port.getHost()
        log.info("stun listening on udp {host} port {port}", host=host.host, port=host.port)

    def when_listening(self) -> Deferred[Any]:
        if self.error is not None:
            return fail(self.error)
        return succeed(self.port)

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        port, self.port = self.port, None
        if port is None:
            return None
        stopped: Deferred[None] = maybeDeferred(port.stopListening)
        return stopped
