"""Refusing oversize request bodies before Twisted buffers them, for every listener.

Twisted reads a whole request body (into a temporary file above 100 kB) before ``render``
runs, so a size check in a resource comes after the damage. :class:`BoundedRequest` refuses
a declared ``Content-Length`` above its limit as soon as the headers are in, without reading
the body (and without the ``100 Continue`` that would invite it), and counts a chunked body as
it arrives, refusing it once past the limit. Either way the client gets a 413 and the request
never reaches the resource. Each listener subclasses it for its limit and its 413 body.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.base import DelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

log = Logger(namespace="acs.http")

# After a 413 the server stops writing but keeps reading (and dropping) what the client still
# sends, for at most this long or this many bytes, rather than closing the connection outright:
# closing a socket with unread input makes the kernel send a RST, which can destroy the 413
# before the client reads it.
LINGER_SECONDS = 5.0
LINGER_BYTES = 8 * 1024 * 1024

TEXT_CONTENT_TYPE = b"text/plain; charset=utf-8"


class BoundedRequest(Request):
    """A request whose body may not exceed :meth:`body_limit` bytes (the site's ``max_body``)."""

    refusal_type = TEXT_CONTENT_TYPE
    refusal_body = b"Request body too large\n"
    what = "request"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Twisted would parse a form body (multipart included) into request.args, in memory
        # and on the reactor, and answer a body it cannot parse with a bare 400; no listener
        # here wants that (bodies are SOAP, JSON or files read as streams). Set after
        # Request.__init__, which sets its own default on the instance.
        self._parsePOSTFormSubmission = False
        self.max_body = 0
        self._body_bytes = 0
        self._refused = False
        self._drained = 0
        self._linger: DelayedCall | None = None

    def body_limit(self) -> int:
        """The limit for this request, decided once its request line and headers are in."""
        site = getattr(self.channel, "site", None)
        return int(getattr(site, "max_body", 0))

    def request_line_path(self) -> bytes:
        """The path of the request line (headers are in, ``self.path`` is not set yet)."""
        raw = getattr(self.channel, "_path", b"") or b""
        return bytes(raw).split(b"?", 1)[0]

    def request_line_method(self) -> bytes:
        return bytes(getattr(self.channel, "_command", b"") or b"")

    def gotLength(self, length: int | None) -> None:
        self.max_body = self.body_limit()
        if length is not None and length > self.max_body:
            # The channel answers "Expect: 100-continue" right after this call; that would
            # ask the client for the very body we refuse.
            self.requestHeaders.removeHeader(b"expect")
            self._refuse(f"declared Content-Length {length}")
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            self._drain(data)
            return
        self._body_bytes += len(data)
        if self._body_bytes > self.max_body:
            self._refuse(f"body past {self.max_body} bytes")
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._refused:
            return  # already answered 413; nothing reaches the resource
        super().requestReceived(command, path, version)

    def connectionLost(self, reason: Failure) -> None:
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._linger = None
        super().connectionLost(reason)

    def _refuse(self, what: str) -> None:
        self._refused = True
        if self.content is not None:
            self.content.close()  # a temporary file for big chunked bodies: free it now
            self.content = None
        channel: Any = self.channel
        transport: Any = channel.transport if channel is not None else None
        if transport is None:
            return
        log.info(
            "Refused oversize {kind} ({what}) from {address}",
            kind=self.what,
            what=what,
            address=getattr(transport.getPeer(), "host", "?"),
        )
        body = self.refusal_body
        transport.write(
            b"HTTP/1.1 413 Request Entity Too Large\r\n"
            b"Content-Type: " + self.refusal_type + b"\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n"
            b"Connection: close\r\n\r\n" + body
        )
        # Whatever else arrives on this connection is dropped unparsed (Twisted's own idiom
        # for connections it is done with, see HTTPChannel.lineReceived).
        channel.dataReceived = channel.rawDataReceived = self._drain
        # Half-close (a lingering close, see LINGER_SECONDS); the client's own close ends the
        # connection and the timer bounds one that never closes. TLS can't half-close.
        lose_write = getattr(transport, "loseWriteConnection", None)
        if lose_write is not None:
            lose_write()
            self._linger = channel.callLater(LINGER_SECONDS, self._abort)
        else:
            transport.loseConnection()

    def _drain(self, data: bytes) -> None:
        self._drained += len(data)
        if self._drained > LINGER_BYTES:
            self._abort()

    def _abort(self) -> None:
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._linger = None
        channel: Any = self.channel
        if channel is not None and channel.transport is not None:
            channel.transport.abortConnection()


class BoundedSite(Site):
    """A site of :class:`BoundedRequest` requests limited to ``max_body`` bytes.

    ``access_log=False`` drops per-request access lines: with thousands of CPEs they would
    drown the log, and the CWMP and file services log what they do with device and task ids.
    """

    requestFactory = BoundedRequest
    noisy = False

    def __init__(
        self, resource: Resource, *, max_body: int, access_log: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(resource, **kwargs)  # e.g. reactor=, as Site takes
        self.max_body = max_body
        self.access_log = access_log

    def log(self, request: Any) -> None:
        if self.access_log:
            super().log(request)
