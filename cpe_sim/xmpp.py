"""XMPP connection requests (TR-069 Annex K) for simulated TR-181 CPEs (``cpe-sim --xmpp``).

A CPE behind a NAT cannot be reached over HTTP, but it can keep a TCP connection open to an
XMPP server, where the ACS's XMPP client can reach it. Each CPE has one: ``Xmpp``.

- Configuration is the data model's, followed as ``Nat`` follows STUN's: the connection
  that ``ManagementServer.ConnReqXMPPConnection`` names, when enabled, with its Username,
  Password, Domain and Resource, and of its enabled ``Server`` rows the one of lowest
  Priority (then instance number) whose ServerAddress is a loopback IPv4 address (the only
  kind the simulator reaches). ``factory_values`` is what a CPE of ``cpe-sim --xmpp``
  leaves the factory with: ``Connection.1`` enabled, pointing at the fleet's server.
- Account: one per CPE, ``account_username`` / ``account_password`` (the same on every
  run with the same seed). The CPE creates it by in-band registration (XEP-0077), between
  STARTTLS and SASL, on its first login; ``conflict`` means it exists already. The stream
  always negotiates TLS, checked against the fleet's trust roots (UseTLS is written true,
  not followed).
- Once the server binds the resource, its full JID becomes the connection's ``JabberID``
  and ``ManagementServer.ConnReqJabberID``; the latter is actively notified by default
  (the model's ``activeNotify="forceDefaultEnabled"``), so a new JID reaches the ACS in a
  ``4 VALUE CHANGE`` Inform, while the same JID after a reconnection changes nothing
  (TR-181). ``Status`` follows the connection (Connecting, Enabled, ServerNotPresent,
  Error_AuthenticationFailure, Error, Disabled, Error_Misconfigured).
- A lost or failed connection is retried after a random wait in [0, I·(M/1000)^(n-1)]
  capped at ServerRetryMaxInterval (TR-181's ServerRetry* parameters; the factory values
  make I 2 s and the cap 60 s), n counting the attempts since the last bind. While the
  CPE is offline (rebooting) or stopped it has no connection, as a real one would not.
- Requests: ``answer`` judges every IQ get/set as Annex K and RFC 6120 say. A
  ``connectionRequest`` from a sender ``ConnReqAllowedJabberIDs`` does not allow, or while
  the CPE is offline, gets ``service-unavailable``; wrong (or oversized) credentials get
  ``not-authorized``; a malformed one ``bad-request``; a good one an empty result, and the
  CPE starts a ``6 CONNECTION REQUEST`` session. Any other request is
  ``service-unavailable`` (RFC 6120 §8.4). Nothing is kept per request but counters.

Everything runs on the CPE's reactor (timers, ``connectTCP`` through an endpoint), each wait
is bounded (TCP connect, login, the close of a stream), and ``stop`` fires once the
connection is closed and every timer cancelled.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any

from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import ClientFactory
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import client, error, sasl, xmlstream
from twisted.words.protocols.jabber.jid import JID, InvalidFormat
from twisted.words.xish import domish
from twisted.words.xish.xmlstream import XmlStreamFactoryMixin

from acs.clock import DelayedCall, iso
from cpe_sim.datamodel import model_path

if TYPE_CHECKING:
    from cpe_sim.cpe import SimulatedCPE

NS_CONNECTION_REQUEST = "urn:broadband-forum-org:cwmp:xmppConnReq-1-0"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_REGISTER = "jabber:iq:register"
REGISTER_FEATURE = ("http://jabber.org/features/iq-register", "register")

MS = "Device.ManagementServer."
CONNECTION = "Device.XMPP.Connection.1."  # the one the factory configures
CONNECTION_TABLE = "Device.XMPP.Connection.{i}."
RESOURCE = "cwmp"
MAX_CREDENTIAL = 256  # characters: ConnectionRequestUsername/Password's maxLength
MAX_ALLOWED = 32  # entries of ConnReqAllowedJabberIDs (its maxItems)
MAX_JID = 3071  # characters: three parts of at most 1023 bytes (RFC 7622 §3.1)
CONNECT_TIMEOUT = 10.0  # seconds for the TCP connection
LOGIN_TIMEOUT = 30.0  # seconds from connecting to a bound resource
CLOSE_TIMEOUT = 5.0  # seconds a closing stream has to end before it is aborted
RETRY_INITIAL = 2  # the factory's ServerRetryInitialInterval (TR-181's 60 s stalls tests)
RETRY_MAX = 60  # the factory's ServerRetryMaxInterval (TR-181's: 30720 s)
MAX_RETRY_EXPONENT = 32  # (M/1000)^(n-1) stops growing here: the cap is reached long before

# Status values (TR-181 Device.XMPP.Connection.{i}.Status).
ENABLED = "Enabled"
DISABLED = "Disabled"
CONNECTING = "Connecting"
SERVER_NOT_PRESENT = "ServerNotPresent"
MISCONFIGURED = "Error_Misconfigured"
AUTHENTICATION_FAILURE = "Error_AuthenticationFailure"
ERROR = "Error"

# Why a connection request was turned away: the keys of ``XmppCounters.rejected``.
NOT_ALLOWED = "not_allowed"  # the sender is not in ConnReqAllowedJabberIDs
UNAUTHORIZED = "unauthorized"  # wrong or oversized username/password
OFFLINE = "offline"  # the CPE is rebooting or stopped
MALFORMED = "malformed"  # not a get, no id, not one username and one password


@dataclass(frozen=True)
class XmppOptions:
    """The fleet's XMPP server: where its TR-181 CPEs connect (``cpe-sim --xmpp``)."""

    host: str  # an IPv4 loopback address, like everything the simulator reaches
    port: int
    domain: str  # the JIDs' domain, and the name the server's certificate must carry
    ca: bytes | None = None  # PEM certificates to trust; None: the system's trust store

    def __post_init__(self) -> None:
        if not is_loopback_ipv4(self.host):
            raise ValueError(f"the XMPP server must be an IPv4 loopback address, not {self.host!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"XMPP port must be between 1 and 65535, not {self.port}")
        if parse_jid(self.domain) is None or "@" in self.domain or "/" in self.domain:
            raise ValueError(f"not an XMPP domain: {self.domain!r}")
        if self.ca is not None:
            trust_root(self.ca)


def is_loopback_ipv4(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.version == 4 and address.is_loopback


_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


def trust_root(pem: bytes) -> Any:
    """The certificates of ``pem`` as a trust root; ValueError when it holds none."""
    blocks = _PEM_CERTIFICATE.findall(pem)
    if not blocks:
        raise ValueError("no PEM certificate (-----BEGIN CERTIFICATE-----)")
    try:
        certificates = [ssl.Certificate.loadPEM(block) for block in blocks]
    except Exception as exc:  # OpenSSL.crypto.Error, or what a damaged block raises
        raise ValueError(f"not a PEM certificate: {exc}") from None
    return ssl.trustRootFromCertificates(certificates)


@lru_cache(maxsize=16)  # shared by a fleet's CPEs: one TLS context, not one each
def tls_options(domain: str, ca: bytes | None) -> Any:
    """What the stream's STARTTLS checks the server against: ``domain``'s certificate,
    issued by ``ca`` (or a root of the system's trust store)."""
    if ca is None:
        return ssl.optionsForClientTLS(domain)
    return ssl.optionsForClientTLS(domain, trustRoot=trust_root(ca))


# --- the account --------------------------------------------------------------------------


def account_username(serial: str) -> str:
    """``cpe-`` and the serial in lower case (JID local parts compare case-insensitively),
    any character outside ``[a-z0-9._-]`` as ``-``: ``SIM000001`` -> ``cpe-sim000001``."""
    return "cpe-" + re.sub(r"[^a-z0-9._-]", "-", serial.lower())


def account_password(seed: int, serial: str) -> str:
    """HMAC-SHA256 of the serial keyed with the fleet's seed (32 hex digits): a re-run with
    the same seed logs into the accounts the previous one registered."""
    key = f"cpe-sim xmpp {seed}".encode()
    return hmac.new(key, serial.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


# --- who may send a connection request ------------------------------------------------------


def parse_jid(text: str) -> JID | None:
    """``text`` as a JID (stringprep'd: local part and domain lower-cased), None if it is
    not one. ``JID()``, not ``internJID()``: that one caches every JID it sees."""
    if not text or len(text) > MAX_JID:
        return None
    try:
        return JID(text)
    except (InvalidFormat, UnicodeError, ValueError):
        return None


def sender_allowed(sender: str | None, allowed: str) -> bool:
    """TR-181 ``ConnReqAllowedJabberIDs``: an empty list allows every sender; otherwise a
    full JID entry matches that JID exactly, a bare one (``local@domain``) any resource of
    it. Local parts and domains compare case-insensitively, resources exactly (RFC 7622).
    Entries that are not JIDs, and those past the list's 32 items, match nothing."""
    entries = [e.strip() for e in allowed.split(",") if e.strip()]
    if not entries:
        return True
    source = parse_jid(sender or "")
    if source is None:
        return False
    for entry in entries[:MAX_ALLOWED]:
        jid = parse_jid(entry)
        if jid is None:
            continue
        if jid.resource is None:
            if jid.userhost() == source.userhost():
                return True
        elif jid == source:
            return True
    return False


# --- answers ------------------------------------------------------------------------------


def _echo(response: domish.Element) -> None:
    """The request's element, emptied: Annex K's errors echo it, not the credentials."""
    request = response.addElement((NS_CONNECTION_REQUEST, "connectionRequest"))
    request.addElement("username")
    request.addElement("password")


def error_response(
    iq: domish.Element, condition: str, kind: str = "cancel", *, echo: bool = False
) -> domish.Element:
    """The ``type="error"`` answer to ``iq`` with RFC 6120 stanza error ``condition``."""
    response = xmlstream.toResponse(iq, "error")
    if echo:
        _echo(response)
    problem = response.addElement("error")
    problem["type"] = kind
    problem.addElement((NS_STANZAS, condition))
    return response


def _credentials(request: domish.Element) -> tuple[str, str] | None:
    """(username, password) of a ``connectionRequest``: exactly one of each, text only,
    nothing else; None otherwise."""
    found: dict[str, str] = {}
    for child in request.elements():
        if (
            child.uri != NS_CONNECTION_REQUEST
            or child.name not in ("username", "password")
            or child.name in found
            or any(True for _ in child.elements())
        ):
            return None
        found[child.name] = "".join(c for c in child.children if isinstance(c, str))
    if len(found) != 2:
        return None
    return found["username"], found["password"]


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


# --- the connection -------------------------------------------------------------------------


@dataclass
class XmppCounters:
    """What the CPE's XMPP side did, for tests and the fleet summary."""

    accepted: int = 0  # connection requests that woke the CPE
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> requests
    unsupported: int = 0  # other IQ requests, answered service-unavailable
    connects: int = 0  # TCP connection attempts
    registered: int = 0  # accounts created by in-band registration
    bound: int = 0  # streams that got a resource bound
    lost: int = 0  # bound streams that ended without this CPE closing them
    failed: int = 0  # attempts that ended before a resource was bound

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


@dataclass(frozen=True)
class _Settings:
    """What a connection is made with: a change of any of these means a new one."""

    connection: str  # "Device.XMPP.Connection.<n>."
    username: str
    password: str
    domain: str
    resource: str
    host: str
    port: int

    @property
    def jid(self) -> JID:
        return JID(tuple=(self.username, self.domain, self.resource or None))

    @property
    def account(self) -> tuple[str, str, str]:
        return self.username, self.domain, self.password


class _Register(xmlstream.BaseFeatureInitiatingInitializer):
    """XEP-0077 in-band registration, when the server offers it (after STARTTLS, before
    SASL). ``done(True)``: created; ``done(False)``: refused (``conflict``: it exists), the
    login is tried all the same, the account may have been made otherwise."""

    feature = REGISTER_FEATURE

    def __init__(
        self, xs: Any, username: str, password: str, done: Callable[[str | None], None]
    ) -> None:
        super().__init__(xs, required=False)
        self._username = username
        self._password = password
        self._done = done

    def start(self) -> Deferred[None]:
        iq = xmlstream.IQ(self.xmlstream, "set")
        query = iq.addElement((NS_REGISTER, "query"))
        query.addElement("username", content=self._username)
        query.addElement("password", content=self._password)
        d: Deferred[Any] = iq.send()
        d.addCallbacks(self._created, self._refused)
        return d

    def _created(self, _: object) -> None:
        self._done(None)

    def _refused(self, failure: Failure) -> None:
        failure.trap(error.StanzaError)
        refusal: Any = failure.value
        self._done(refusal.condition)


class _Authenticator(client.XMPPAuthenticator):
    """Twisted's client steps (STARTTLS required, SASL, bind, session), with the in-band
    registration after STARTTLS when ``register`` is given."""

    def __init__(
        self, jid: JID, password: str, tls: Any, register: Callable[[str | None], None] | None
    ) -> None:
        super().__init__(jid, password, configurationForTLS=tls)
        self._register = register

    def associateWithStream(self, xs: Any) -> None:
        super().associateWithStream(xs)
        if self._register is not None:
            after_tls = 1 + next(
                i
                for i, step in enumerate(xs.initializers)
                if isinstance(step, xmlstream.TLSInitiatingInitializer)
            )
            step = _Register(xs, self.jid.user, self.password, self._register)
            xs.initializers.insert(after_tls, step)


class _StreamFactory(XmlStreamFactoryMixin, ClientFactory):
    """One stream per connection attempt: reconnecting is ``Xmpp``'s job, on its clock."""

    protocol = xmlstream.XmlStream
    noisy = False


class _Attempt:
    """One TCP connection and its stream, from the connect to the close."""

    def __init__(self, settings: _Settings) -> None:
        self.settings = settings
        self.connecting: Deferred[Any] | None = None  # until the TCP connection is made
        self.stream: Any | None = None  # the XmlStream, once connected
        self.login_call: DelayedCall | None = None
        self.abort_call: DelayedCall | None = None  # a close that takes too long
        self.bound = False
        self.failure: tuple[str, str] | None = None  # (Status, why) of a failed login
        self.ended = False
        self.waiters: list[Deferred[None]] = []  # for the end of a close

    def cancel_timers(self) -> None:
        for call in (self.login_call, self.abort_call):
            if call is not None and call.active():
                call.cancel()
        self.login_call = self.abort_call = None

    def closed(self) -> Deferred[None]:
        if self.ended:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self.waiters.append(d)
        return d


class Xmpp:
    """One CPE's XMPP client and Annex K side (see the module docstring). ``SimulatedCPE``
    calls ``configure`` whenever its settings or its being online may have changed, and
    ``stop`` when it stops."""

    def __init__(self, cpe: SimulatedCPE, options: XmppOptions) -> None:
        self._cpe = cpe
        self.options = options
        self.counters = XmppCounters()
        self.jid: JID | None = None  # the full JID bound now (None: not bound)
        self.last_problem: str | None = None  # why the latest attempt or request failed
        self._settings: _Settings | None = None
        self._attempt: _Attempt | None = None
        self._closing: set[_Attempt] = set()
        self._retry_call: DelayedCall | None = None
        self._failures = 0  # attempts since the last bind: the back-off's n - 1
        self._registered: tuple[str, str, str] | None = None  # an account known to exist
        self._waiters: list[Deferred[JID]] = []

    def factory_values(self) -> dict[str, str]:
        """The CPE's XMPP configuration out of the factory (and after a FactoryReset)."""
        cpe, o, c = self._cpe, self.options, CONNECTION
        methods = "HTTP,STUN,XMPP" if cpe.nat is not None else "HTTP,XMPP"
        return {
            c + "Enable": "true",
            c + "Username": account_username(cpe.serial),
            c + "Password": account_password(cpe.profile.seed, cpe.serial),
            c + "Domain": o.domain,
            c + "Resource": RESOURCE,
            c + "UseTLS": "true",
            c + "ServerRetryInitialInterval": str(RETRY_INITIAL),
            c + "ServerRetryMaxInterval": str(RETRY_MAX),
            c + "Server.1.Enable": "true",
            c + "Server.1.ServerAddress": o.host,
            c + "Server.1.Port": str(o.port),
            MS + "ConnReqXMPPConnection": c.removesuffix("."),
            MS + "SupportedConnReqMethods": methods,
        }

    @property
    def status(self) -> str:
        """The Status of the connection in use (or of ``Connection.1``)."""
        connection = self._settings.connection if self._settings is not None else CONNECTION
        return self._get(connection + "Status")

    def bound(self) -> Deferred[JID]:
        """Fires with the full JID once one is bound (at once if it is). Never errbacks:
        bound the wait (``addTimeout``); a cancelled wait is forgotten."""
        if self.jid is not None:
            return succeed(self.jid)
        d: Deferred[JID] = Deferred(canceller=self._forget)
        self._waiters.append(d)
        return d

    def _forget(self, d: Deferred[JID]) -> None:
        if d in self._waiters:
            self._waiters.remove(d)

    # -- following the data model --

    def configure(self) -> None:
        """Connect, reconnect with new settings, or disconnect (disabled, offline,
        stopped), as the data model and the CPE's state say. Unchanged settings change
        nothing, a connection in progress included."""
        wanted = self._wanted()
        if wanted == self._settings:
            return
        self._halt()
        self._settings = wanted
        self._failures = 0
        if wanted is not None:
            self._connect()

    def stop(self) -> Deferred[None]:
        """Close the connection and cancel every timer; fires once the socket is closed."""
        self._settings = None
        self._halt()
        waits = [attempt.closed() for attempt in self._closing]
        if not waits:
            return succeed(None)
        return gatherResults(waits).addCallback(lambda _: None)

    def _get(self, name: str) -> str:
        return self._cpe.model.get_raw(name) or ""

    def _update(self, name: str, value: str) -> None:
        """``name`` changes to ``value`` by itself (reported as its notification says)."""
        if self._cpe.model.get_raw(name) != value:
            self._cpe.change_value(name, value)

    def _set_status(self, connection: str, status: str) -> None:
        if self._get(connection + "Status") != status:
            self._update(connection + "Status", status)
            now = float(self._cpe.profile.reactor.seconds())
            self._cpe.model.set_raw(connection + "LastChangeDate", iso(now) or "")

    def _wanted(self) -> _Settings | None:
        """The settings to connect with now, None for no connection. Explains a disabled
        or unusable configuration in the data model (Status, ConnReqJabberID)."""
        cpe = self._cpe
        if not cpe.online or cpe.stopped:
            return None  # nothing is written while the CPE is down
        reference = self._get(MS + "ConnReqXMPPConnection").removesuffix(".")
        connection = reference + "."
        if not reference or model_path(connection) != CONNECTION_TABLE:
            self._unusable(None, None, f"ConnReqXMPPConnection {reference!r}")
        elif not cpe.model.has_object(connection):
            self._unusable(None, None, f"no {connection}")
        elif self._get(connection + "Enable") != "true":
            self._unusable(connection, DISABLED, None)
        else:
            settings, problem = self._read(connection)
            if settings is not None:
                return settings
            self._unusable(connection, MISCONFIGURED, problem)
        return None

    def _unusable(self, connection: str | None, status: str | None, problem: str | None) -> None:
        """No connection for Annex K: its JID is no more ConnReqJabberID's (TR-181)."""
        if connection is not None and status is not None:
            self._set_status(connection, status)
        if problem is not None:
            self.last_problem = f"XMPP: {problem}"
        self._update(MS + "ConnReqJabberID", "")

    def _read(self, connection: str) -> tuple[_Settings | None, str]:
        username, domain = self._get(connection + "Username"), self._get(connection + "Domain")
        resource = self._get(connection + "Resource")
        try:
            JID(tuple=(username or None, domain, resource or None))
        except (InvalidFormat, UnicodeError, ValueError):
            return None, f"{username!r}@{domain!r}/{resource!r} is not a JID"
        if not username:
            return None, "no Username"
        server = self._server(connection)
        if server is None:
            return None, "no enabled Server with a loopback IPv4 ServerAddress and a Port"
        password = self._get(connection + "Password")
        return _Settings(connection, username, password, domain, resource, *server), ""

    def _server(self, connection: str) -> tuple[str, int] | None:
        """The enabled Server row of lowest Priority (then instance) that can be reached."""
        table = connection + "Server."
        candidates: list[tuple[int, int, str, int]] = []
        for name in self._cpe.model.names(table):
            instance = name[len(table) :].removesuffix(".ServerAddress")
            if not instance.isdigit() or self._get(f"{table}{instance}.Enable") != "true":
                continue
            row = f"{table}{instance}."
            host, port = self._get(row + "ServerAddress"), self._get(row + "Port")
            if is_loopback_ipv4(host) and port.isdigit() and 0 < int(port) < 65536:
                priority = int(self._get(row + "Priority") or 0)
                candidates.append((priority, int(instance), host, int(port)))
        if not candidates:
            return None
        _, _, host, number = min(candidates)
        return host, number

    # -- connecting --

    def _halt(self) -> None:
        """No connection and no retry: the current one is closed (``_closing`` until its
        socket is)."""
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = None
        attempt, self._attempt = self._attempt, None
        self.jid = None
        if attempt is not None:
            self._close(attempt)

    def _connect(self) -> None:
        settings = self._settings
        assert settings is not None and self._attempt is None
        attempt = _Attempt(settings)
        self._attempt = attempt
        self.counters.connects += 1
        self._set_status(settings.connection, CONNECTING)
        register = None
        if self._registered != settings.account:
            register = partial(self._registration, settings)
        tls = tls_options(settings.domain, self.options.ca)
        # Any: Twisted declares IProtocolFactory with zope, which mypy cannot match.
        factory: Any = _StreamFactory(
            _Authenticator(settings.jid, settings.password, tls, register)
        )
        factory.addBootstrap(xmlstream.STREAM_CONNECTED_EVENT, partial(self._connected, attempt))
        factory.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, partial(self._authenticated, attempt))
        factory.addBootstrap(xmlstream.INIT_FAILED_EVENT, partial(self._login_failed, attempt))
        factory.addBootstrap(xmlstream.STREAM_END_EVENT, partial(self._ended, attempt))
        reactor = self._cpe.profile.reactor
        endpoint = TCP4ClientEndpoint(
            reactor, settings.host, settings.port, timeout=CONNECT_TIMEOUT
        )
        attempt.login_call = reactor.callLater(LOGIN_TIMEOUT, self._login_timeout, attempt)
        connecting: Deferred[Any] = endpoint.connect(factory)
        attempt.connecting = connecting
        connecting.addCallbacks(
            partial(self._tcp_connected, attempt), partial(self._refused, attempt)
        )

    def _tcp_connected(self, attempt: _Attempt, _: object) -> None:
        attempt.connecting = None

    def _connected(self, attempt: _Attempt, stream: Any) -> None:
        attempt.stream = stream

    def _registration(self, settings: _Settings, condition: str | None) -> None:
        """The answer to the in-band registration: None (created), a stanza error."""
        self.counters.registered += condition is None
        if condition in (None, "conflict"):
            self._registered = settings.account
        else:  # the login will tell whether the account exists
            self.last_problem = f"XMPP: in-band registration refused: {condition}"

    def _refused(self, attempt: _Attempt, failure: Failure) -> None:
        """The TCP connection failed (refused, timed out, or cancelled)."""
        attempt.connecting = None
        attempt.cancel_timers()
        attempt.ended = True
        if attempt is not self._attempt:
            return  # cancelled: the CPE stopped or the settings changed
        status, why = attempt.failure or (SERVER_NOT_PRESENT, failure.getErrorMessage())
        self._failed(attempt, status, why)

    def _login_timeout(self, attempt: _Attempt) -> None:
        attempt.login_call = None
        attempt.failure = (ERROR, f"no resource bound within {LOGIN_TIMEOUT:g} s")
        if attempt.stream is not None:
            attempt.stream.transport.abortConnection()  # _ended follows
        elif attempt.connecting is not None:
            attempt.connecting.cancel()  # _refused follows

    def _login_failed(self, attempt: _Attempt, failure: Failure) -> None:
        """A login step failed (TLS, SASL, bind): the stream is closed, the attempt fails."""
        if attempt is not self._attempt or attempt.stream is None:
            return
        if failure.check(sasl.SASLAuthError):
            attempt.failure = (AUTHENTICATION_FAILURE, f"SASL: {failure.value}")
        else:
            attempt.failure = (ERROR, f"login: {failure.getErrorMessage()}")
        attempt.stream.transport.loseConnection()

    def _authenticated(self, attempt: _Attempt, stream: Any) -> None:
        if attempt is not self._attempt:
            return
        attempt.cancel_timers()
        attempt.bound = True
        settings = attempt.settings
        self._failures = 0
        self._registered = settings.account
        self.counters.bound += 1
        jid: JID = stream.authenticator.jid
        self.jid = jid
        for kind in ("get", "set"):
            stream.addObserver(f'/iq[@type="{kind}"]', partial(self._iq_received, stream))
        connection = settings.connection
        self._update(connection + "JabberID", jid.full())
        self._update(MS + "ConnReqJabberID", jid.full())  # unchanged after a reconnection: no event
        self._update(connection + "TLSEstablished", "true")
        self._set_status(connection, ENABLED)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(jid)

    def _ended(self, attempt: _Attempt, reason: Failure) -> None:
        """The connection is gone: after a close, or on its own (then try again)."""
        attempt.cancel_timers()
        attempt.ended = True
        attempt.stream = None
        self._closing.discard(attempt)
        waiters, attempt.waiters = attempt.waiters, []
        for d in waiters:
            d.callback(None)
        if attempt is not self._attempt:
            return
        if not attempt.bound:
            status, why = attempt.failure or (ERROR, _lost_reason(reason))
            self._failed(attempt, status, why)
            return
        self._attempt = None
        self.jid = None
        self.counters.lost += 1
        self.last_problem = f"XMPP: stream lost: {reason.getErrorMessage()}"
        connection = attempt.settings.connection
        self._update(connection + "TLSEstablished", "false")
        self._set_status(connection, CONNECTING)  # JabberIDs stay until the next bind
        self._schedule_retry()

    def _failed(self, attempt: _Attempt, status: str, why: str) -> None:
        self._attempt = None
        self.counters.failed += 1
        self.last_problem = f"XMPP: {why}"
        self._set_status(attempt.settings.connection, status)
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        self._failures += 1
        wait = self._retry_wait(self._failures)
        self._retry_call = self._cpe.profile.reactor.callLater(wait, self._retry)

    def _retry_wait(self, n: int) -> float:
        """TR-181's n-th reconnection wait: random in [0, I·(M/1000)^(n-1)], at most Max."""
        assert self._settings is not None
        connection = self._settings.connection

        def number(name: str, default: int) -> int:
            text = self._get(connection + name)
            return int(text) if text.isdigit() else default

        initial = max(1, number("ServerRetryInitialInterval", 60))
        multiplier = max(1000, number("ServerRetryIntervalMultiplier", 2000)) / 1000
        most = max(1, number("ServerRetryMaxInterval", 30720))
        window = min(initial * multiplier ** min(n - 1, MAX_RETRY_EXPONENT), most)
        return self._cpe.profile.rng.uniform(0, window)

    def _retry(self) -> None:
        self._retry_call = None
        if self._settings is not None and self._attempt is None:
            self._connect()

    def _close(self, attempt: _Attempt) -> None:
        """End ``attempt`` on purpose: a stream gets ``</stream:stream>`` and CLOSE_TIMEOUT
        seconds to close cleanly (TLS close_notify included), then it is aborted."""
        attempt.cancel_timers()
        stream = attempt.stream
        if stream is None:
            if attempt.connecting is not None:
                attempt.connecting.cancel()
            return
        self._closing.add(attempt)
        stream.sendFooter()
        stream.transport.loseConnection()
        reactor = self._cpe.profile.reactor
        attempt.abort_call = reactor.callLater(CLOSE_TIMEOUT, stream.transport.abortConnection)

    # -- Annex K --

    def _iq_received(self, stream: Any, iq: domish.Element) -> None:
        response = self.answer(iq)
        if response is not None:
            stream.send(response)

    def answer(self, iq: domish.Element) -> domish.Element | None:
        """The answer to an IQ request (``get``/``set``) to this CPE; None when none is
        due (not a request, or no ``id`` to answer to)."""
        if iq.getAttribute("type") not in ("get", "set"):
            return None
        if not iq.getAttribute("id"):  # RFC 6120 §8.1.3: an IQ needs one
            self._reject(MALFORMED, "IQ request without an id")
            return None
        payload = list(iq.elements())
        if len(payload) != 1:  # RFC 6120 §8.2.3: a request has exactly one payload
            self._reject(MALFORMED, f"IQ request with {len(payload)} payload elements")
            return error_response(iq, "bad-request", "modify")
        request = payload[0]
        if (request.uri, request.name) != (NS_CONNECTION_REQUEST, "connectionRequest"):
            self.counters.unsupported += 1
            return error_response(iq, "service-unavailable")
        return self._connection_request(iq, request)

    def _connection_request(self, iq: domish.Element, request: domish.Element) -> domish.Element:
        cpe = self._cpe
        sender = iq.getAttribute("from")
        if not sender_allowed(sender, self._get(MS + "ConnReqAllowedJabberIDs")):
            self._reject(NOT_ALLOWED, f"from {str(sender)[:MAX_CREDENTIAL]!r}")
            return error_response(iq, "service-unavailable", echo=True)
        credentials = _credentials(request) if iq.getAttribute("type") == "get" else None
        if credentials is None:
            self._reject(MALFORMED, "not a get with one username and one password")
            return error_response(iq, "bad-request", "modify", echo=True)
        username, password = credentials
        expected_username, expected_password = cpe.connection_request_credentials
        # Both compared whatever the first gives: the time taken tells nothing.
        matches = _same(username, expected_username) & _same(password, expected_password)
        if len(username) > MAX_CREDENTIAL or len(password) > MAX_CREDENTIAL or not matches:
            self._reject(UNAUTHORIZED, "not ConnectionRequestUsername/Password")
            return error_response(iq, "not-authorized", echo=True)
        if not cpe.connection_request():
            self._reject(OFFLINE, "the CPE is not running")
            return error_response(iq, "service-unavailable", echo=True)
        self.counters.accepted += 1
        return xmlstream.toResponse(iq, "result")

    def _reject(self, reason: str, problem: str) -> None:
        self.counters.reject(reason)
        self.last_problem = f"XMPP {reason}: {problem}"


def _lost_reason(reason: Failure) -> str:
    if reason.check(SSL.Error):
        return f"TLS: {reason.getErrorMessage()}"
    return f"connection lost before login: {reason.getErrorMessage()}"
