"""Requests of one node's CWMP sessions that reach another node, and how they get home.

A CWMP session lives in the memory of the node that took its Inform: the protocol state
and the running task's RPC sequence (a generator, which no other process could resume).
So a request that lands elsewhere (a CPE whose next connection the load balancer or the
kernel gave to another worker) is forwarded to the node running its session, which the
session cookie names, and the answer is relayed back: the CPE does not notice. An answer
to a Digest challenge goes to the node whose nonce it answers, the one that knows whether
that nonce was used. An Inform for a device whose session runs on another node goes there
too, so that node ends or replaces it: one session per device at a time across all nodes.

Each node takes forwarded requests on its peer listener (``[cluster] peer_listen``),
which serves :class:`PeerResource`: a request must carry the cluster's peer token (an
HMAC of a secret kept in the shared database), and says whom it forwards for
(``X-Acs-Client``) and whether the CPE came over TLS (``X-Acs-Secure``). A forwarded
request is never forwarded again.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import treq
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from acs.clock import Reactor
from acs.cwmp import soap
from acs.cwmp_site import client_host, text_response

log = Logger(namespace="acs.cwmp")

SECRET_NAME = "cluster-peer"
TOKEN_HEADER = b"X-Acs-Peer"
CLIENT_HEADER = b"X-Acs-Client"
SECURE_HEADER = b"X-Acs-Secure"
# The CPE's headers the session needs; the rest (hop-by-hop, Content-Length) are not sent.
FORWARDED_REQUEST_HEADERS = (b"content-type", b"cookie", b"authorization", b"soapaction")
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"date", b"server"}
)
# A node answers within this or the CPE gets a 503: a big body's parse takes seconds.
FORWARD_TIMEOUT = 120.0
# How long a CPE whose session's node does not answer waits before it tries again.
UNREACHABLE_RETRY_AFTER = 10
# An answer bigger than any envelope the ACS sends is a broken peer.
MAX_ANSWER = soap.MAX_ENVELOPE_BYTES
# A UDP connection request for a binding another node's STUN socket keeps: that node sends
# it (POST, the device id as the body); seconds it may take to say it did.
UDP_WAKE_PATH = b"/udp-wake"
UDP_WAKE_TIMEOUT = 5.0
MAX_UDP_ANSWER = 1024


def peer_token(secret: bytes) -> bytes:
    """The token every node sends and checks: the same on all nodes of one database."""
    return hmac.new(secret, b"acs peer forwarding", hashlib.sha256).hexdigest().encode()


@dataclass(frozen=True)
class Forwarded:
    """What a peer said of the CPE behind a forwarded request."""

    client: str | None
    secure: bool


def forwarded(request: Request) -> Forwarded | None:
    """The forwarding node's word on the CPE, when ``request`` came from a peer."""
    value = getattr(request, "acs_forwarded", None)
    return value if isinstance(value, Forwarded) else None


def cpe_host(request: Request) -> str | None:
    """The CPE's address: the forwarding peer's word for it, else the connection's."""
    via = forwarded(request)
    return via.client if via is not None else client_host(request)


def cpe_secure(request: Request) -> bool:
    """Whether the CPE came over TLS (to whichever node it reached)."""
    via = forwarded(request)
    return via.secure if via is not None else bool(request.isSecure())


class PeerResource(Resource):
    """The peer listener: the node's CWMP resource, for requests other nodes forward."""

    isLeaf = True

    def __init__(
        self,
        cwmp: Resource,
        token: bytes,
        *,
        udp_wake: Callable[[int], Deferred[tuple[bool, str]]] | None = None,
    ) -> None:
        """``udp_wake(device_id)``: send the device's UDP connection request from this
        node's STUN socket; fires with (sent, why)."""
        super().__init__()
        self._cwmp = cwmp
        self._token = token
        self._udp_wake = udp_wake

    def render(self, request: Request) -> bytes | int:
        given = request.getHeader(TOKEN_HEADER) or b""
        if not hmac.compare_digest(given, self._token):
            return text_response(request, 403, "Not a peer of this cluster")
        if request.path == UDP_WAKE_PATH:
            return self._wake(request)
        client = (request.getHeader(CLIENT_HEADER) or b"").decode("ascii", "replace")
        try:
            host: str | None = str(ipaddress.ip_address(client))
        except ValueError:
            host = None
        secure = request.getHeader(SECURE_HEADER) == b"1"
        request.acs_forwarded = Forwarded(client=host, secure=secure)  # type: ignore[attr-defined]
        result: bytes | int = self._cwmp.render(request)
        return result

    def _wake(self, request: Request) -> bytes | int:
        body = request.content.read(32) if request.content is not None else b""
        well_formed = body.isdigit() and len(body) <= 18  # a device id, within BIGINT
        if request.method != b"POST" or not well_formed or self._udp_wake is None:
            return text_response(request, 400, "POST the device id")
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def answer(result: tuple[bool, str]) -> None:
            if not gone:
                sent, why = result
                request.write(text_response(request, 200 if sent else 409, why))
                request.finish()

        self._udp_wake(int(body)).addCallback(answer)
        return NOT_DONE_YET


class _TooBig(Exception):
    pass


class PeerForwarder:
    """Sends a CPE's request to the node running its session and relays the answer."""

    def __init__(self, reactor: Reactor, token: bytes) -> None:
        self._reactor = reactor
        self._token = token
        # Persistent connections between nodes: forwarding is per request of a session.
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = 16
        self._pool.retryAutomatically = False  # a CWMP POST must not be sent twice

    def forward(self, request: Request, peer: str, body: bytes) -> int:
        """Forward ``request`` (its ``body`` already decoded) to ``peer``; NOT_DONE_YET:
        the answer is written when the peer gives it (503 if it does not)."""
        headers = Headers()
        for name in FORWARDED_REQUEST_HEADERS:
            for value in request.requestHeaders.getRawHeaders(name, []):
                headers.addRawHeader(name, value)
        headers.setRawHeaders(TOKEN_HEADER, [self._token])
        headers.setRawHeaders(CLIENT_HEADER, [(cpe_host(request) or "").encode()])
        headers.setRawHeaders(SECURE_HEADER, [b"1" if cpe_secure(request) else b"0"])
        url = peer.rstrip("/") + request.uri.decode("ascii", "replace")
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        d: Deferred[Any] = treq.request(
            "POST",
            url,
            headers=headers,
            data=body,
            pool=self._pool,
            timeout=FORWARD_TIMEOUT,
            reactor=self._reactor,
        )
        d.addCallback(self._relay, request, gone)
        d.addErrback(self._unreachable, request, peer, gone)
        return NOT_DONE_YET

    def _relay(self, response: Any, request: Request, gone: list[bool]) -> Deferred[None]:
        chunks: list[bytes] = []
        size = [0]

        def collect(data: bytes) -> None:
            size[0] += len(data)
            if size[0] > MAX_ANSWER:
                raise _TooBig()
            chunks.append(data)

        def done(_: object) -> None:
            if gone:
                return
            request.setResponseCode(response.code)
            for name, values in response.headers.getAllRawHeaders():
                if name.lower() not in HOP_BY_HOP:
                    request.responseHeaders.setRawHeaders(name, values)
            body = b"".join(chunks)
            request.setHeader(b"Content-Length", b"%d" % len(body))
            request.write(body)
            request.finish()

        collected: Deferred[None] = treq.collect(response, collect)
        return collected.addCallback(done)

    def _unreachable(self, failure: Any, request: Request, peer: str, gone: list[bool]) -> None:
        log.warn(
            "Cannot forward a CWMP request to peer {peer}: {error}",
            peer=peer,
            error=failure.getErrorMessage() or failure.type.__name__,
        )
        if gone:
            return
        request.setHeader(b"Retry-After", b"%d" % UNREACHABLE_RETRY_AFTER)
        request.write(text_response(request, 503, "The CWMP session's node did not answer"))
        request.finish()

    def udp_wake(self, peer: str, device_id: int) -> Deferred[tuple[bool, str]]:
        """Ask ``peer`` to send the device's UDP connection request from its STUN socket:
        (sent, why); never errbacks."""
        d: Deferred[Any] = treq.request(
            "POST",
            peer.rstrip("/") + UDP_WAKE_PATH.decode(),
            headers=Headers({TOKEN_HEADER: [self._token]}),
            data=str(device_id).encode(),
            pool=self._pool,
            timeout=UDP_WAKE_TIMEOUT,
            reactor=self._reactor,
        )

        def read(response: Any) -> Deferred[tuple[bool, str]]:
            body: Deferred[bytes] = treq.content(response)
            return body.addCallback(
                lambda text: (
                    response.code == 200,
                    text[:MAX_UDP_ANSWER].decode("utf-8", "replace").strip()
                    or f"HTTP {response.code}",
                )
            )

        def unreachable(failure: Failure) -> tuple[bool, str]:
            return False, f"the binding's node did not answer: {failure.getErrorMessage()}"

        return d.addCallback(read).addErrback(unreachable)

    def close(self) -> Deferred[None]:
        closed: Deferred[None] = self._pool.closeCachedConnections()
        return closed
