"""XMPP connection requests (TR-069 Annex K) for CPEs behind NAT.

A CPE keeps an XMPP session open to a server ([xmpp] server) and reports the full JID it
holds there as ``ManagementServer.ConnReqJabberID`` (a forced active notification: it is
in the Inform whenever it changes). The ACS logs in to the same server as a client
(``[xmpp] jid``, over TLS, always) and asks for a session with one IQ::

    <iq type="get" to="cpe@domain/resource" id="...">
      <connectionRequest xmlns="urn:broadband-forum-org:cwmp:xmppConnReq-1-0">
        <username>ConnectionRequestUsername</username>
        <password>ConnectionRequestPassword</password>
      </connectionRequest>
    </iq>

The CPE answers ``result`` (it will open a session: "answered"), or an error:
``not-authorized`` (wrong credentials: "auth_failed"), ``service-unavailable`` (the CPE
does not allow the ACS's JID, per ``ConnReqAllowedJabberIDs``, or the server has no such
session: the CPE is not connected; "error", and the next method is tried). Only an answer
from the JID asked counts (the server stamps ``from``), and only for an id in flight.
A JID is taken only in the ACS's own domain (a CPE chooses what it reports: it must not
have the ACS send its requests, and its credentials, to another server).

With ``[xmpp] accounts`` the ACS also gives each TR-181 CPE its account on the server
(`device_account`: derived, never stored), made by in-band registration (XEP-0077) on a
stream of its own (`XmppClient.register`).

`XmppClient` is the ACS's session: it logs in (twisted.words: STARTTLS, SASL, resource
binding), stays logged in (reconnecting with a back-off doubling to a minute), keeps the
TCP connection warm with a whitespace keep-alive, answers IQs addressed to it with
``service-unavailable`` (RFC 6120 §8.4), and keeps at most MAX_PENDING requests in flight.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet import ssl
from twisted.internet.defer import Deferred, DeferredSemaphore, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import client, jid, xmlstream
from twisted.words.xish import domish

from acs.clock import Reactor
from acs.config import MAX_JID, ConfigError, XmppConfig, xmpp_server

NS_CONNREQ = "urn:broadband-forum-org:cwmp:xmppConnReq-1-0"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_REGISTER = "jabber:iq:register"
# Connection requests waiting for their answer at once; beyond, refused at once.
MAX_PENDING = 10_000
# Seconds between whitespace keep-alives on an idle stream (RFC 6120 §4.6.1).
KEEPALIVE = 60.0
# Device accounts ([xmpp] accounts): the registrations under way at once (beyond, they
# wait their turn), and the seconds one may take.
XMPP_ACCOUNTS_SECRET = "xmpp-accounts"  # the server secret device accounts derive from
MAX_REGISTRATIONS = 4
REGISTRATION_TIMEOUT = 30.0
# Seconds before the first new attempt after a failed or lost session; each failure in a
# row doubles it, up to the last.
RETRY_FIRST = 1.0
RETRY_MAX = 60.0

log = Logger()


def device_jid(value: str | None) -> jid.JID | None:
    """The full JID a CPE reported as its ConnReqJabberID; None when it is none (empty,
    malformed, too long, or without the user and resource a CPE's session has)."""
    if not value or len(value.encode("utf-8", "replace")) > MAX_JID:
        return None
    try:
        found = jid.JID(value.strip())
    except (jid.InvalidFormat, UnicodeError):
        return None
    return found if found.user and found.resource else None


def device_account(secret: bytes, identity: str) -> tuple[str, str]:
    """The XMPP username and password of the device ``identity`` names (its
    OUI-ProductClass-Serial): derived from the appliance's secret, so every process and
    every provisioning of the device gives the same account, and nothing is stored."""
    digest = hmac.new(secret, b"xmpp account\0" + identity.encode(), hashlib.sha256)
    username = f"cpe-{digest.hexdigest()[:24]}"
    password = hmac.new(secret, b"xmpp password\0" + username.encode(), hashlib.sha256)
    return username, password.hexdigest()[:32]


def connection_request(to: jid.JID, ident: str, username: str, password: str) -> domish.Element:
    """The Annex K IQ asking ``to`` for a session."""
    iq = domish.Element((None, "iq"), attribs={"type": "get", "to": to.full(), "id": ident})
    request = iq.addElement((NS_CONNREQ, "connectionRequest"))
    request.addElement("username", content=username)
    request.addElement("password", content=password)
    return iq


@dataclass(frozen=True)
class Answer:
    """What a connection request came to: an outcome of `acs.connreq`, and why."""

    outcome: str  # "answered", "auth_failed" or "error"
    reason: str = ""


def answer(iq: domish.Element) -> Answer:
    """The outcome an IQ ``result`` or ``error`` answer means."""
    if iq.getAttribute("type") == "result":
        return Answer("answered")
    condition = ""
    for child in iq.elements():
        if child.name == "error":
            for c in child.elements():
                if c.uri == NS_STANZAS and c.name != "text":
                    condition = c.name[:64]
                    break
    if condition == "not-authorized":
        return Answer("auth_failed", "the CPE rejected the connection request credentials")
    if condition == "service-unavailable":
        return Answer(
            "error",
            "service-unavailable: the CPE is not connected to the XMPP server, or does "
            "not allow the ACS's JID (ConnReqAllowedJabberIDs)",
        )
    return Answer("error", f"XMPP error {condition or 'without a condition'}")


def trust(config: XmppConfig) -> Any:
    """The TLS options of the connection to the server: its certificate must be valid for
    the JID's domain (RFC 6120 §13.7.2.1), against ``ca_file`` or the system's roots."""
    domain = jid.JID(config.jid).host
    if not config.ca_file:
        return ssl.optionsForClientTLS(domain)
    try:
        pem = Path(config.ca_file).read_bytes()
        roots = ssl.trustRootFromCertificates(
            [ssl.Certificate.loadPEM(block) for block in _pem_blocks(pem)]
        )
    except (OSError, ValueError, ssl.SSL.Error) as exc:
        raise ConfigError(f"[xmpp] ca_file {config.ca_file!r}: {exc}") from None
    return ssl.optionsForClientTLS(domain, trustRoot=roots)


def _pem_blocks(pem: bytes) -> list[bytes]:
    end = b"-----END CERTIFICATE-----"
    blocks = [b + end for b in pem.split(end) if b"-----BEGIN CERTIFICATE-----" in b]
    if not blocks:
        raise ValueError("no PEM certificate in it")
    return blocks


class _Registering(xmlstream.ConnectAuthenticator):
    """A stream that only negotiates TLS (no login): for XEP-0077 in-band registration."""

    namespace = "jabber:client"

    def __init__(self, domain: str, tls: Any) -> None:
        super().__init__(domain)
        self._tls = tls

    def associateWithStream(self, xs: xmlstream.XmlStream) -> None:
        super().associateWithStream(xs)
        xs.initializers = [
            xmlstream.TLSInitiatingInitializer(xs, required=True, configurationForTLS=self._tls)
        ]


class XmppClient(Service):
    """The ACS's XMPP session (see the module docstring)."""

    def __init__(
        self,
        reactor: Reactor,
        config: XmppConfig,
        *,
        observe: Callable[[bool], None] | None = None,
    ) -> None:
        """``observe(connected)`` hears each login (True), each failed login and each loss
        of the session (False)."""
        self._reactor = reactor
        # Each process (``--workers``, nodes) is a session of its own, and one resource is
        # one session: a suffix of its own. CPEs allow the bare JID (provisioning sets it).
        account = jid.JID(config.jid)
        resource = f"{account.resource or 'acs'}-{secrets.token_hex(4)}"
        self.jid = jid.JID(tuple=(account.user, account.host, resource))
        host, port = xmpp_server(config)
        self.server = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._tls = trust(config)
        self._factory = client.XMPPClientFactory(self.jid, config.password, self._tls)
        self._factory.noisy = False
        self._address = (host, port)
        self._observe = observe
        self._stream: xmlstream.XmlStream | None = None  # logged in
        self._open: xmlstream.XmlStream | None = None  # connected, logged in or not
        self._attempt: Deferred[Any] | None = None
        self._retry: Any = None
        self._failures = 0
        self._closing: list[Deferred[None]] = []
        self._waiting: list[Deferred[None]] = []
        self._pending: dict[str, tuple[jid.JID, Deferred[Answer]]] = {}
        self._keepalive: LoopingCall | None = None
        self._registrations = DeferredSemaphore(MAX_REGISTRATIONS)
        self._registering: set[Callable[[str], None]] = set()  # each one's settle

    @property
    def connected(self) -> bool:
        return self._stream is not None

    def when_logged_in(self) -> Deferred[None]:
        """Fires once the session is logged in (at once if it is)."""
        if self._stream is not None:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiting.append(waiter)
        return waiter

    def startService(self) -> None:
        super().startService()
        self._connect()

    def stopService(self) -> Deferred[None]:
        """Log out: fires once the connection is closed."""
        super().stopService()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        if self._attempt is not None:
            self._attempt.cancel()
        for _to, d in list(self._pending.values()):
            d.cancel()
        for settle in list(self._registering):
            settle("not registered: the appliance stopped")
        transport: Any = self._open.transport if self._open is not None else None
        if transport is None:
            return succeed(None)
        closed: Deferred[None] = Deferred()
        self._closing.append(closed)
        transport.loseConnection()
        return closed

    def request(self, to: jid.JID, username: str, password: str) -> Deferred[Answer]:
        """Send one connection request to ``to``; fires with its Answer (never errbacks;
        cancelling it forgets the request)."""
        stream = self._stream
        if stream is None:
            return succeed(Answer("error", f"the ACS is not logged in to {self.server}"))
        if len(self._pending) >= MAX_PENDING:
            return succeed(Answer("error", "too many XMPP connection requests in flight"))
        ident = secrets.token_hex(8)
        waiting: Deferred[Answer] = Deferred(lambda _d: self._forget(ident))
        self._pending[ident] = (to, waiting)
        stream.send(connection_request(to, ident, username, password))
        return waiting

    def _forget(self, ident: str) -> None:
        self._pending.pop(ident, None)

    # -- device accounts ([xmpp] accounts) ----------------------------------------------

    def ensure_account(self, username: str, password: str) -> None:
        """Have the account ``username`` on the server (thread-safe: provisioning calls it
        from its unit of work); the outcome is logged."""
        self._reactor.callFromThread(self._ensure, username, password)

    def _ensure(self, username: str, password: str) -> Deferred[str]:
        def logged(outcome: str) -> str:
            log.info(
                "XMPP: account {user}@{domain}: {outcome}",
                user=username,
                domain=self.jid.host,
                outcome=outcome,
            )
            return outcome

        made = self._registrations.run(self.register, username, password)
        return made.addCallback(logged)

    def register(self, username: str, password: str) -> Deferred[str]:
        """Create ``username``@domain with ``password`` by in-band registration (its own
        stream: TLS, no login): "created", "exists" (``conflict``: made before, with
        the same password since it is derived), or why not. Never errbacks."""
        if not self.running:
            return succeed("not registered: the appliance is stopping")
        factory = xmlstream.XmlStreamFactory(_Registering(self.jid.host, self._tls))
        factory.noisy = False
        outcome: Deferred[str] = Deferred()
        streams: list[xmlstream.XmlStream] = []

        def settle(result: str) -> None:
            self._registering.discard(settle)
            if not outcome.called:
                outcome.callback(result)
            if not connecting.called:
                connecting.cancel()
            for xs in streams:
                transport: Any = xs.transport
                if transport is not None:
                    transport.loseConnection()

        def ready(xs: xmlstream.XmlStream) -> None:
            iq = xmlstream.IQ(xs, "set")
            query = iq.addElement((NS_REGISTER, "query"))
            query.addElement("username", content=username)
            query.addElement("password", content=password)
            iq.send().addCallbacks(lambda _: settle("created"), refused)

        def refused(failure: Failure) -> None:
            condition = getattr(failure.value, "condition", None)
            if condition == "conflict":
                settle("exists")
            else:
                settle(f"refused: {condition or failure.getErrorMessage()}")

        factory.addBootstrap(xmlstream.STREAM_CONNECTED_EVENT, streams.append)
        factory.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, ready)
        factory.addBootstrap(xmlstream.INIT_FAILED_EVENT, refused)
        factory.addBootstrap(
            xmlstream.STREAM_END_EVENT, lambda _: settle("not registered: the stream closed")
        )
        self._registering.add(settle)
        endpoint: Any = HostnameEndpoint(self._reactor, *self._address)
        connecting = endpoint.connect(factory)
        connecting.addErrback(lambda f: settle(f"not registered: {f.getErrorMessage()}"))

        def expire() -> None:
            settle("not registered: timeout")

        timer = self._reactor.callLater(REGISTRATION_TIMEOUT, expire)

        def done(result: str) -> str:
            if timer.active():
                timer.cancel()
            return result

        return outcome.addCallback(done)

    # -- the connection -----------------------------------------------------------------
    # (Not ClientService: it resets its back-off on every TCP connection, so a refused
    # login would be retried every second; nor the factory's own reconnecting, likewise.)

    def _connect(self) -> None:
        self._retry = None
        endpoint: Any = HostnameEndpoint(self._reactor, *self._address)
        self._attempt = endpoint.connect(self._factory)
        self._attempt.addCallbacks(self._opened, self._unreachable)

    def _unreachable(self, failure: Failure) -> None:
        self._attempt = None
        if not self.running:
            return
        log.warn(
            "XMPP: cannot connect to {server}: {why}",
            server=self.server,
            why=failure.getErrorMessage() or repr(failure.value),
        )
        if self._observe is not None:
            self._observe(False)
        self._again()

    def _again(self) -> None:
        """The next attempt, after a back-off that doubles up to RETRY_MAX seconds."""
        if not self.running:
            return
        delay = min(RETRY_MAX, RETRY_FIRST * 2**self._failures)
        self._failures += 1
        self._retry = self._reactor.callLater(delay, self._connect)

    def _opened(self, stream: xmlstream.XmlStream) -> None:
        """Connected: the login (STARTTLS, SASL, binding) runs; watch how it ends."""
        self._attempt = None
        self._open = stream

        def authenticated(_: object) -> None:
            self._stream = stream
            self._failures = 0
            stream.addObserver("/iq[@type='result']", self._answered)
            stream.addObserver("/iq[@type='error']", self._answered)
            stream.addObserver("/iq[@type='get']", self._unsupported)
            stream.addObserver("/iq[@type='set']", self._unsupported)
            self._keepalive = LoopingCall(stream.send, " ")
            self._keepalive.clock = self._reactor
            self._keepalive.start(KEEPALIVE, now=False)
            log.info(
                "XMPP: logged in to {server} as {jid}", server=self.server, jid=self.jid.full()
            )
            if self._observe is not None:
                self._observe(True)
            waiting, self._waiting = self._waiting, []
            for waiter in waiting:
                waiter.callback(None)

        def refused(failure: Failure) -> None:
            log.error(
                "XMPP: login to {server} as {jid} failed: {why}",
                server=self.server,
                jid=self.jid.full(),
                why=failure.getErrorMessage() or repr(failure.value),
            )
            transport: Any = stream.transport
            if transport is not None:
                transport.loseConnection()  # ended() follows

        def ended(_reason: Failure) -> None:
            self._open = None
            if self._stream is stream:
                self._lost()
            elif self._observe is not None and self.running:
                self._observe(False)  # the login did not get through
            closing, self._closing = self._closing, []
            for d in closing:
                d.callback(None)
            self._again()

        stream.addOnetimeObserver(xmlstream.STREAM_AUTHD_EVENT, authenticated)
        stream.addOnetimeObserver(xmlstream.INIT_FAILED_EVENT, refused)
        stream.addOnetimeObserver(xmlstream.STREAM_END_EVENT, ended)

    def _lost(self) -> None:
        if self.running:
            log.warn("XMPP: the session with {server} ended; reconnecting", server=self.server)
        self._stream = None
        if self._keepalive is not None and self._keepalive.running:
            self._keepalive.stop()
        for ident, (_to, d) in list(self._pending.items()):
            del self._pending[ident]
            d.callback(Answer("error", "the XMPP session ended before the CPE answered"))
        if self._observe is not None:
            self._observe(False)

    def _answered(self, iq: domish.Element) -> None:
        ident = iq.getAttribute("id") or ""
        entry = self._pending.get(ident)
        if entry is None:
            return
        to, d = entry
        try:
            sender = jid.JID(iq.getAttribute("from") or "")
        except (jid.InvalidFormat, UnicodeError):
            return
        if sender != to:
            return  # not from the JID asked: not its answer
        del self._pending[ident]
        d.callback(answer(iq))

    def _unsupported(self, iq: domish.Element) -> None:
        """RFC 6120 §8.4: an IQ get or set the entity does not handle gets an error."""
        stream = self._stream
        if stream is None or iq.getAttribute("from") is None:
            return
        reply = domish.Element((None, "iq"), attribs={"type": "error", "to": iq["from"]})
        if iq.getAttribute("id") is not None:
            reply["id"] = iq["id"]
        error = reply.addElement("error")
        error["type"] = "cancel"
        error.addElement((NS_STANZAS, "service-unavailable"))
        stream.send(reply)
