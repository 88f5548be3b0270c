"""Connection requests: asking a CPE to open a CWMP session now (TR-069 §3.2.2, spec §6.1).

The ACS sends an HTTP GET to the device's stored ``ConnectionRequestURL``, answering the CPE's
401 challenge with the ``connection_request_username/password`` the ACS configured (Digest by
default; Basic only when that is all the CPE offers). The outcome is one of:

- ``"answered"``: 200/204; the CPE will open a session. The device is marked Up.
- ``"refused"``: the connection failed (refused, reset, unreachable). The device is marked Down.
- ``"timeout"``: no answer within ``timeout`` seconds. The device is marked Down.
- ``"auth_failed"``: the CPE rejected (or we could not answer) its challenge. History only.
- ``"no_url"``: the device never reported a ConnectionRequestURL. History only.
- ``"error"``: anything else (non-http URL, unexpected HTTP status such as 503 busy...).
- ``"cancelled"``: the appliance stopped while the request was waiting or in flight.
- ``"sent"``: a UDP connection request (TR-111, `acs.udpconnreq`) went out; UDP has no
  answer, so the device's status is left as it was.

A device behind NAT is reached by UDP through its STUN binding: first when it says it is
behind NAT (NATDetected, or it reported a UDPConnectionRequestAddress), else after an HTTP
attempt that did not reach it; and by XMPP (Annex K, `acs.xmpp`), first of all, when it
reported a ConnReqJabberID and the ACS has an XMPP session (``"answered"`` when the CPE
accepts). Methods are tried in turn, each bounded by ``timeout``, until one reaches the
CPE (an outcome other than refused/timeout/no_url/error, or an HTTP status); its device
type's ``connection_request_order`` overrides that order (a method the device cannot be
reached by is skipped). Each attempt is its own history entry, with ``via`` ``"http"``,
``"udp"`` or ``"xmpp"``.

Every attempt is written to the device history as a ``connection_request`` entry. ``wake``
never fails: errors become outcomes. Only the device's own URL is contacted; redirects are not
followed. At most one request per device is in flight; concurrent wakes share its outcome.

A CPE chooses its ConnectionRequestURL, so the URL is checked against a ``TargetPolicy``
before anything is sent (the ACS must not be anyone's port scanner or SSRF proxy): it must
name an IP address (no DNS lookups), that address must be the one the device last informed
from or lie in ``[cwmp] connection_request_networks``, and it must not be one of the ACS's
own listeners. A URL refused is an ``"error"`` outcome that says why; nothing is sent.
Basic credentials go over plain HTTP only when ``[cwmp] allow_basic_auth`` says so.
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast
from urllib.parse import urlsplit

import treq
from treq.client import HTTPClient
from treq.response import _Response
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    DeferredSemaphore,
    maybeDeferred,
    succeed,
)
from twisted.internet.error import (
    ConnectError,
    ConnectingCancelledError,
    ConnectionClosed,
    DNSLookupError,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.words.protocols.jabber.jid import JID

from acs import httpdigest
from acs.clock import Clock, Reactor
from acs.cwmp.paths import JABBER_ID
from acs.store import Device, NotFound, Store
from acs.store.models import DOWN, UP
from acs.udpconnreq import UdpConnectionRequests, UdpTarget
from acs.xmpp import Answer, XmppClient, device_jid

Outcome = Literal[
    "answered", "refused", "timeout", "auth_failed", "no_url", "error", "cancelled", "sent"
]
Via = Literal["http", "udp", "xmpp"]

# Outcomes after which the next method is tried, when the device has somewhere to get it:
# the request did not reach the CPE (an "error" with an HTTP status, 503 busy say, did).
_NEXT_AFTER = frozenset({"refused", "timeout", "no_url", "error"})
# Why nothing was sent when the device has nowhere to get any of its methods.
_NOWHERE: dict[Via, str] = {
    "http": "the CPE has not reported a ConnectionRequestURL",
    "udp": "no fresh STUN binding nor UDPConnectionRequestAddress",
    "xmpp": "the CPE has not reported a ConnReqJabberID (or the ACS has no [xmpp] server)",
}

# Failures that mean "the CPE is not reachable" (GA treats ECONNREFUSED/ECONNRESET as offline;
# a name that does not resolve is no different).
_UNREACHABLE = (ConnectError, ConnectionClosed, DNSLookupError)


def _cancellation(failure: Failure) -> bool:
    """Whether ``failure`` is a cancellation, bare or as twisted.web's client wraps it
    (ResponseNeverReceived / RequestTransmissionFailed carry it in ``reasons``)."""
    if failure.check(CancelledError, ConnectingCancelledError):
        return True
    reasons = getattr(failure.value, "reasons", None) or ()
    return any(isinstance(r, Failure) and _cancellation(r) for r in reasons)


@dataclass(frozen=True)
class _Result:
    outcome: Outcome
    http_status: int | None = None
    reason: str = ""
    # False when there is no device row to write history/status to.
    record: bool = True
    via: Via = "http"
    # The attempts made before this one (an HTTP request that failed before a UDP one).
    earlier: tuple[_Result, ...] = ()


class _Unreachable(Exception):
    """The TCP connection failed or was closed before an HTTP response arrived."""


def check_url(url: str) -> str | None:
    """Return why ``url`` cannot be used for a connection request, or None if it can."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a malformed port
    except ValueError as exc:
        return f"malformed connection request URL: {exc}"
    if parts.scheme.lower() != "http":
        return f"connection request URL scheme must be http, not {parts.scheme or 'missing'!r}"
    if not parts.hostname:
        return "connection request URL has no host"
    if port == 0:
        return "connection request URL has port 0"
    if any(ch.isspace() for ch in url) or not url.isascii():
        return "connection request URL contains whitespace or non-ASCII characters"
    return None


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _no_listeners() -> Collection[tuple[str, int]]:
    return ()


@dataclass(frozen=True)
class TargetPolicy:
    """Where connection requests may go (see the module docstring)."""

    # Networks allowed besides the address the device informed from ([cwmp]
    # connection_request_networks): for CPEs behind a proxy or NAT the ACS reaches directly.
    networks: tuple[IPNetwork, ...] = ()
    # The (host, port) each of the appliance's listeners is bound to, asked at request time.
    own_listeners: Callable[[], Collection[tuple[str, int]]] = field(default=_no_listeners)
    allow_basic: bool = False

    def refusal(self, url: str, informed_from: str | None) -> str | None:
        """Why a connection request may not go to ``url`` (None: it may)."""
        parts = urlsplit(url)
        try:
            target = ipaddress.ip_address(parts.hostname or "")
        except ValueError:
            return "connection request URL must name an IP address, not a host name"
        target = _unmapped(target)
        if target.is_unspecified or target.is_multicast:
            return f"connection request URL names {target}, which is no host"
        port = parts.port or 80
        for host, own_port in self.own_listeners():
            if port == own_port and (target.is_loopback or target == _parse_address(host)):
                return "connection request URL points at one of the ACS's own listeners"
        source = _parse_address(informed_from)
        if source is not None and target == source:
            return None
        if any(target in network for network in self.networks):
            return None
        return (
            f"connection request URL host {target} is not the address the device informed from "
            f"({informed_from or 'unknown'}) nor in [cwmp] connection_request_networks"
        )


def _unmapped(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Any:
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


def _parse_address(text: str | None) -> Any:
    try:
        return _unmapped(ipaddress.ip_address(text or ""))
    except ValueError:
        return None


def _request_uri(url: str) -> str:
    parts = urlsplit(url)
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path


def _discard(_data: bytes) -> None:
    """Body collector that keeps nothing (CPEs answer with an empty body anyway)."""


# Connection requests in flight at once, across all devices (see ConnectionRequester).
MAX_CONCURRENT = 64


class ConnectionRequester:
    """Sends connection requests and records their outcome (see the module docstring)."""

    log = Logger()

    def __init__(
        self,
        reactor: Reactor,
        store: Store,
        *,
        timeout: float,
        pool: HTTPConnectionPool | None = None,
        clock: Clock | None = None,
        max_concurrent: int = MAX_CONCURRENT,
        policy: TargetPolicy | None = None,
        observe: Callable[[str, str], None] | None = None,
        udp: UdpConnectionRequests | None = None,
        xmpp: XmppClient | None = None,
        relay: UdpRelay | None = None,
    ) -> None:
        """``reactor`` makes the TCP connections; ``clock`` (default: ``reactor``) bounds them
        and timestamps history, so tests can use a real reactor for HTTP and a task.Clock for
        the timeout. ``observe(outcome, via)`` hears the outcome of every attempt (metrics).
        ``udp``: UDP connection requests (TR-111) for devices behind NAT; ``xmpp``: the
        ACS's XMPP session (Annex K); None: not that way. ``relay``: how a binding kept
        by another node's STUN socket is reached (None: from this one's)."""
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        self._reactor = reactor
        self._clock: Clock = clock if clock is not None else reactor
        self._store = store
        self.timeout = timeout
        self.policy = policy if policy is not None else TargetPolicy()
        self._observe = observe
        self._udp = udp
        self._xmpp = xmpp
        self._relay = relay
        # Connection requests are one-shot GETs to many different hosts: a persistent pool would
        # only hold idle sockets, and some CPEs close the connection after the 401 anyway.
        self._pool = pool if pool is not None else HTTPConnectionPool(reactor, persistent=False)
        agent: Any = Agent(reactor, pool=self._pool)  # Any: Agent provides IAgent (zope)
        self._http = HTTPClient(agent)
        self._inflight: dict[int, Deferred[Outcome]] = {}
        self._stopped = False
        # Waking a thousand devices at once must not open a thousand sockets and then take a
        # thousand sessions at once: requests beyond this wait their turn, and each one's
        # timeout starts when it is actually sent.
        self._slots = DeferredSemaphore(max_concurrent)

    # -- public API ---------------------------------------------------------------------------

    def wake(self, device_id: int) -> Deferred[str]:
        """Ask the CPE to open a session; fires with the outcome (never errbacks);
        ``"cancelled"`` at once, unrecorded, once `stop` was called."""
        if self._stopped:
            return succeed("cancelled")
        shared = self._inflight.get(device_id)
        if shared is None:
            shared = self._start(device_id)
        # Each caller gets its own Deferred so one caller's callbacks cannot change the result
        # another caller sees; cancelling it only detaches that caller.
        mine: Deferred[str] = Deferred(lambda _d: None)

        def deliver(outcome: Outcome) -> Outcome:
            if not mine.called:
                mine.callback(outcome)
            return outcome

        shared.addCallback(deliver)
        return mine

    def in_flight(self, device_id: int) -> bool:
        return device_id in self._inflight

    def stop(self) -> Deferred[None]:
        """Abandon in-flight requests (service shutdown) and close pooled connections;
        fires once the abandoned requests' outcomes are recorded (before the store
        closes). Later wakes are ``"cancelled"``."""
        self._stopped = True
        inflight = list(self._inflight.values())
        for d in inflight:
            d.cancel()
        if self._udp is not None:
            self._udp.stop()
        ended = DeferredList([*inflight, self._pool.closeCachedConnections()], consumeErrors=True)
        return ended.addCallback(lambda _: None)

    # -- one request --------------------------------------------------------------------------

    def _start(self, device_id: int) -> Deferred[Outcome]:
        """The shared request for `device_id`, registered as in flight until it finishes."""
        finished = False

        def cancelled(failure: Failure) -> _Result:
            failure.trap(CancelledError)  # stopped while waiting for a slot
            return _Result("cancelled", reason="the appliance stopped")

        def finish(result: _Result) -> Deferred[Outcome]:
            nonlocal finished
            finished = True
            self._inflight.pop(device_id, None)
            if self._observe is not None:
                for attempt in (*result.earlier, result):
                    if attempt.outcome != "cancelled":
                        self._observe(attempt.outcome, attempt.via)
            return self._record(device_id, result).addCallback(lambda _: result.outcome)

        sent: Deferred[_Result] = self._slots.run(
            lambda: Deferred.fromCoroutine(self._attempts(device_id))
        )
        shared: Deferred[Outcome] = sent.addErrback(cancelled).addCallback(finish)
        # `called` is no guide: a Deferred chained to one still running counts as called.
        if not finished:
            self._inflight[device_id] = shared
        return shared

    async def _attempts(self, device_id: int) -> _Result:
        """The device's methods in turn, until one reaches the CPE (never raises)."""
        try:
            found = await self._store.read(self._look_up, device_id)
        except CancelledError:
            return _Result("cancelled", reason="the appliance stopped")
        except Exception as exc:
            self.log.failure("cannot look up device {device_id}", Failure(), device_id=device_id)
            return _Result("error", reason=str(exc) or type(exc).__name__)
        if found.device is None:
            return _Result("error", reason="unknown device", record=False)
        methods = found.methods()
        made: list[_Result] = []
        for via in methods:
            attempt = self._attempt(via, found)
            if attempt is None:
                continue  # the device cannot be reached that way
            result = await self._bounded(attempt)
            made.append(replace(result, via=via))
            if result.outcome not in _NEXT_AFTER or result.http_status is not None:
                break
        if not made:
            return _Result("no_url", reason=_NOWHERE[methods[0]], via=methods[0])
        return replace(made[-1], earlier=tuple(made[:-1]))

    def _attempt(self, via: Via, found: Reach) -> Callable[[], Deferred[_Result]] | None:
        """How to try ``via``, None when the device has nowhere to get it."""
        device = found.device
        assert device is not None
        if via == "udp":
            target = found.udp
            if target is None:
                return None
            relay, node = self._relay, target.node
            if relay is not None and node is not None and node != relay.own():
                return lambda: relay.forward(node, device.id).addCallback(_relayed, node)
            return lambda: succeed(self._send_udp(device, target))
        if via == "xmpp":
            to = found.jid
            if to is None:
                return None
            return lambda: self._send_xmpp(device, to)
        return lambda: Deferred.fromCoroutine(self._request(device))

    def _bounded(self, attempt: Callable[[], Deferred[_Result]]) -> Deferred[_Result]:
        """One attempt, bounded by ``timeout`` from now; never errbacks."""
        timed_out = False
        work: Deferred[_Result] = maybeDeferred(attempt)

        def expire() -> None:
            nonlocal timed_out
            timed_out = True
            work.cancel()

        timer = self._clock.callLater(self.timeout, expire)

        def settle(result: _Result | Failure) -> _Result:
            if timer.active():
                timer.cancel()
            # Whatever error the cancellation surfaced as, a request cut short by the timer is
            # a timeout.
            if timed_out:
                return _Result("timeout", reason=f"no answer within {self.timeout:g} s")
            if isinstance(result, Failure):
                if _cancellation(result):
                    return _Result("cancelled", reason="the appliance stopped")
                self.log.failure("connection request failed unexpectedly", result)
                return _Result("error", reason=result.getErrorMessage() or repr(result.value))
            return result

        return work.addBoth(settle)

    async def _request(self, device: Device) -> _Result:
        """The HTTP request to the device's ConnectionRequestURL."""
        url = device.connection_request_url
        if not url:
            return _Result("no_url", reason="the CPE has not reported a ConnectionRequestURL")
        problem = check_url(url) or self.policy.refusal(url, device.address)
        if problem is not None:
            return _Result("error", reason=problem)

        try:
            response = await self._get(url, None)
        except _Unreachable as exc:
            return _Result("refused", reason=str(exc))
        if response.code != 401:
            return self._classify(response.code)

        authorization = self._answer_challenge(
            response,
            url,
            device.connection_request_username,
            device.connection_request_password,
        )
        if isinstance(authorization, _Result):
            return authorization
        try:
            response = await self._get(url, authorization)
        except _Unreachable:
            # Some CPEs close the connection right after the challenge: retry once (spec §6.1).
            retry = self._answer_challenge(
                response,
                url,
                device.connection_request_username,
                device.connection_request_password,
                nc=2,
            )
            assert not isinstance(retry, _Result)  # same challenge, same outcome as above
            try:
                response = await self._get(url, retry)
            except _Unreachable as exc:
                return _Result("refused", reason=str(exc))
        if response.code == 401:
            return _Result(
                "auth_failed", 401, "the CPE rejected the connection request credentials"
            )
        return self._classify(response.code)

    async def _get(self, url: str, authorization: str | None) -> _Response:
        headers: dict[bytes | str, bytes | str] = {"User-Agent": "acs-appliance"}
        if authorization is not None:
            headers["Authorization"] = authorization
        try:
            # No redirects: only the device's own URL is ever contacted. Unbuffered: the body
            # is drained below without keeping it.
            response: _Response = await self._http.get(
                url, headers=headers, allow_redirects=False, unbuffered=True
            )
        except _UNREACHABLE as exc:
            raise _Unreachable(_describe(exc)) from exc
        except Exception as exc:
            # ResponseNeverReceived / ResponseFailed wrap the underlying connection failure.
            reasons = getattr(exc, "reasons", None)
            if reasons and not _cancellation(Failure(exc)):
                raise _Unreachable(_describe(exc)) from exc
            raise
        # A truncated body does not change what the status line said.
        with contextlib.suppress(Exception):
            await treq.collect(response, _discard)
        return response

    def _answer_challenge(
        self,
        response: _Response,
        url: str,
        username: str | None,
        password: str | None,
        *,
        nc: int = 1,
    ) -> str | _Result:
        # Several WWW-Authenticate lines mean the same as one comma-joined value.
        values = response.headers.getRawHeaders(b"WWW-Authenticate", [])
        challenge = httpdigest.parse_challenge(b", ".join(values))  # Digest preferred
        if challenge.scheme not in ("digest", "basic"):
            return _Result("auth_failed", 401, "the CPE's 401 offers no usable Digest or Basic")
        if challenge.scheme == "basic" and not self.policy.allow_basic:
            return _Result(
                "auth_failed",
                401,
                "the CPE offers only Basic, which would send its password in clear "
                "([cwmp] allow_basic_auth)",
            )
        if not username or password is None:
            return _Result("auth_failed", 401, "no connection request credentials for this device")
        return httpdigest.authorization_for(
            challenge,
            method="GET",
            uri=_request_uri(url),
            username=username,
            password=password,
            cnonce=secrets.token_hex(8),
            nc=nc,
        )

    # -- UDP (TR-111) and XMPP (Annex K) --------------------------------------------------

    def _look_up(self, device_id: int) -> Reach:
        """`reach` of the device (a unit of work)."""
        device = self._store.get_device(device_id)
        return self.reach(device) if device is not None else Reach(None)

    def reach(self, device: Device) -> Reach:
        """Where ``device``'s connection requests would go now, and in which order (reads
        the store: call it in a unit of work)."""
        kind = self._store.get_device_type(device.type_id) if device.type_id else None
        order = kind.connection_request_order if kind is not None else None
        now = self._clock.seconds()
        udp = self._udp.target(self._store, device, now=now) if self._udp is not None else None
        to = None
        if self._xmpp is not None:
            root = device.data_model_root or "InternetGatewayDevice."
            reported = self._store.get_parameter(device.id, root + JABBER_ID)
            to = device_jid(reported.value if reported is not None else None)
            if to is not None and to.host != self._xmpp.jid.host:
                to = None  # a CPE names its own JID: never one of another domain's

        return Reach(device, udp, to, order)

    def _send_udp(self, device: Device, target: UdpTarget) -> _Result:
        assert self._udp is not None
        where = f"{target.host}:{target.port} ({target.source.replace('_', ' ')})"
        username = device.connection_request_username
        password = device.connection_request_password
        if not username or password is None:
            return _Result(
                "auth_failed", reason="no connection request credentials for this device",
                via="udp",
            )  # fmt: skip
        if not self._udp.send(target, username, password):
            return _Result("error", reason=f"the STUN listener cannot send to {where}", via="udp")
        return _Result("sent", reason=f"to {where}", via="udp")

    def send_udp_here(self, device_id: int) -> Deferred[tuple[bool, str]]:
        """Another node's wake for a binding this node's STUN socket keeps (the peer
        listener's ``/udp-wake``): (sent, why); never errbacks, never relays again."""

        def send(found: Reach) -> tuple[bool, str]:
            target = found.udp
            if found.device is None or target is None:
                return False, "no fresh STUN binding here"
            if self._relay is not None and target.node not in (None, self._relay.own()):
                return False, f"the binding is now node {target.node}'s"
            result = self._send_udp(found.device, target)
            return result.outcome == "sent", result.reason

        def failed(failure: Failure) -> tuple[bool, str]:
            return False, failure.getErrorMessage() or repr(failure.value)

        return self._store.read(self._look_up, device_id).addCallbacks(send, failed)

    def _send_xmpp(self, device: Device, to: JID) -> Deferred[_Result]:
        assert self._xmpp is not None
        username = device.connection_request_username
        password = device.connection_request_password
        if not username or password is None:
            return succeed(
                _Result("auth_failed", reason="no connection request credentials for this device")
            )

        def result(answer: Answer) -> _Result:
            outcome: Outcome = answer.outcome  # type: ignore[assignment]  # Answer's are Outcomes
            return _Result(outcome, reason=answer.reason or f"to {to.full()}", via="xmpp")

        return self._xmpp.request(to, username, password).addCallback(result)

    @staticmethod
    def _classify(code: int) -> _Result:
        if code in (200, 204):
            return _Result("answered", code)
        if code == 503:
            return _Result("error", code, "the CPE is busy (503)")
        return _Result("error", code, f"unexpected HTTP status {code}")

    # -- effects ------------------------------------------------------------------------------

    def _record(self, device_id: int, result: _Result) -> Deferred[None]:
        """The attempts in the device's history (and its status), as a unit of work."""
        if not result.record:
            return succeed(None)
        details = []
        for attempt in (*result.earlier, result):
            detail: dict[str, Any] = {
                "outcome": attempt.outcome,
                "via": attempt.via,
                "http_status": attempt.http_status,
            }
            if attempt.reason:
                detail["reason"] = attempt.reason
            details.append(detail)
            self.log.info(
                "connection request to device {device_id} ({via}): {outcome} {reason}",
                device_id=device_id,
                via=attempt.via,
                outcome=attempt.outcome,
                reason=attempt.reason,
            )
        recorded = self._store.run(self._recorded, device_id, details, self._clock.seconds())

        def failed(failure: Failure) -> None:
            if not failure.check(NotFound):  # deleted while we were waiting: nothing to record
                self.log.failure(
                    "cannot record connection request for device {device_id}",
                    failure,
                    device_id=device_id,
                )

        return recorded.addErrback(failed)

    def _recorded(self, device_id: int, details: list[dict[str, Any]], now: float) -> None:
        for detail in details:
            self._store.add_history(device_id, "connection_request", detail, now=now)
        outcome = details[-1]["outcome"]  # a UDP request sent: no word on reachability
        if outcome == "answered":
            self._store.set_status(device_id, UP, now=now, reason="connection request")
        elif outcome == "refused":
            self._store.set_status(device_id, DOWN, now=now, reason="connection request refused")
        elif outcome == "timeout":
            self._store.set_status(device_id, DOWN, now=now, reason="connection request timed out")


@dataclass(frozen=True)
class UdpRelay:
    """UDP connection requests for a binding another node's STUN socket keeps go from
    there (only datagrams from where the binding points get through the NAT): ``own()``
    is this node's id, ``forward(node, device_id)`` asks that node to send it and fires
    with (sent, why)."""

    own: Callable[[], int | None]
    forward: Callable[[int, int], Deferred[tuple[bool, str]]]


def _relayed(answer: tuple[bool, str], node: int) -> _Result:
    sent, why = answer
    return _Result("sent" if sent else "error", reason=f"through node {node}: {why}", via="udp")


@dataclass(frozen=True)
class Reach:
    """A device, where it can get connection requests, and its type's order of methods."""

    device: Device | None
    udp: UdpTarget | None = None
    jid: JID | None = None
    order: tuple[str, ...] | None = None

    def methods(self) -> tuple[Via, ...]:
        """The methods to try, in order: the device type's, else XMPP first for a device
        that reported a JID (the one method with a confirmed answer through a NAT), then
        UDP first for a device that says it is behind NAT, else HTTP then UDP."""
        if self.order is not None:
            return tuple(cast(Via, m) for m in self.order)  # checked when stored
        udp_first = self.udp is not None and self.udp.first
        default: tuple[Via, ...] = ("udp", "http") if udp_first else ("http", "udp")
        return ("xmpp", *default) if self.jid is not None else default

    def targets(self) -> list[tuple[Via, str]]:
        """Each method in order with where it would go; those it has nowhere for left out
        (HTTP: its ConnectionRequestURL, whether the target policy allows it or not)."""
        device = self.device
        assert device is not None
        where: dict[Via, str | None] = {
            "http": device.connection_request_url or None,
            "udp": f"{self.udp.host}:{self.udp.port}" if self.udp is not None else None,
            "xmpp": self.jid.full() if self.jid is not None else None,
        }
        return [(via, target) for via in self.methods() if (target := where[via]) is not None]


def _describe(exc: BaseException) -> str:
    reasons = getattr(exc, "reasons", None)
    if reasons:
        return "; ".join(f.getErrorMessage() or f.type.__name__ for f in reasons)
    return str(exc) or type(exc).__name__
