"""A lean HTTP/1.1 client for load generation: one Twisted ``Protocol``, no Agent, no treq.

``Agent``/treq cost more per request than the ACS's own HTTP handling, so a fleet driven
through them would measure the client. Here a request is one ``transport.write`` of bytes
built by concatenation, and a response is split on ``\\r\\n\\r\\n`` and delivered whole
(``Content-Length`` or chunked bodies) to the owner, which drives the next step.

:class:`CwmpAttempt` is one CWMP session attempt on its own TCP connection (Inform, empty
POST, answers to ``SetParameterValues`` until 204), reporting success or a failure kind to
its owner; :class:`KeepAliveGetter` sends GETs one after the other on a persistent
connection (the API scenario).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet import error
from twisted.internet.protocol import ClientFactory
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.python.failure import Failure

from acs.clock import Reactor
from acs.cwmp.flow import Flow, Move, State
from bench.envelopes import Messages

_CRLF2 = b"\r\n\r\n"


class ResponseHandler(Protocol):
    """What an :class:`HttpConnection` reports to."""

    def connected(self, conn: HttpConnection) -> None: ...

    def response(self, status: int, headers: dict[bytes, bytes], body: bytes) -> None: ...

    def lost(self, reason: Failure) -> None: ...

    def connect_failed(self, reason: Failure) -> None: ...


class HttpConnection(TwistedProtocol):
    """Parses responses off one connection and hands each, whole, to its handler."""

    def __init__(self, handler: ResponseHandler) -> None:
        self.handler = handler
        self._buf = b""
        self._status: int | None = None
        self._headers: dict[bytes, bytes] = {}
        self._length = 0
        self._chunks: list[bytes] | None = None

    def connectionMade(self) -> None:
        self.handler.connected(self)

    def send(self, data: bytes) -> None:
        transport: Any = self.transport
        transport.write(data)

    def close(self) -> None:
        transport: Any = self.transport
        if transport is not None:
            transport.loseConnection()

    def abort(self) -> None:
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    def connectionLost(self, reason: Failure = error.ConnectionDone) -> None:  # type: ignore[assignment]
        self.handler.lost(reason)

    def dataReceived(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        while buf:
            if self._status is None:
                end = buf.find(_CRLF2)
                if end < 0:
                    break
                self._head(buf[:end])
                buf = buf[end + 4 :]
            if self._chunks is not None:
                body, buf = self._dechunk(buf)
                if body is None:
                    break
            else:
                if len(buf) < self._length:
                    break
                body, buf = buf[: self._length], buf[self._length :]
            status, headers = self._status, self._headers
            self._status, self._headers, self._chunks = None, {}, None
            assert status is not None
            self.handler.response(status, headers, body)
        self._buf = buf

    def _head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        self._status, self._headers = status, headers
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            self._chunks = []
            self._length = 0
        elif status == 204 or status == 304 or 100 <= status < 200:
            self._length = 0
        else:
            raw = headers.get(b"content-length", b"0")
            self._length = int(raw) if raw.isdigit() else 0

    def _dechunk(self, buf: bytes) -> tuple[bytes | None, bytes]:
        """(whole body, rest) once the last chunk is in, else (None, buf)."""
        chunks = self._chunks
        assert chunks is not None
        while True:
            eol = buf.find(b"\r\n")
            if eol < 0:
                return None, buf
            size = int(buf[:eol].split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                # No trailers from the servers we drive: "0\r\n\r\n" ends the body.
                if len(buf) < eol + 4:
                    return None, buf
                return b"".join(chunks), buf[eol + 4 :]
            if len(buf) < eol + 2 + size + 2:
                return None, buf
            chunks.append(buf[eol + 2 : eol + 2 + size])
            buf = buf[eol + 2 + size + 2 :]


class _Factory(ClientFactory):
    noisy = False

    def __init__(self, handler: ResponseHandler) -> None:
        self.handler = handler

    def buildProtocol(self, addr: Any) -> HttpConnection:
        return HttpConnection(self.handler)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.handler.connect_failed(reason)


def connect(
    reactor: Reactor, host: str, port: int, handler: ResponseHandler, timeout: float
) -> None:
    reactor.connectTCP(host, port, _Factory(handler), timeout=timeout)


def failure_kind(reason: Failure) -> str:
    """A short, stable name for a connection-level failure (the error table's key)."""
    value = reason.value
    if isinstance(value, error.ConnectionRefusedError):
        return "connect_refused"
    if isinstance(value, error.TimeoutError | error.UserError):
        return "connect_timeout"
    if isinstance(value, error.ConnectBindError | error.ConnectError):
        return f"connect_error:{getattr(value, 'osError', None) or type(value).__name__}"
    if isinstance(value, error.ConnectionDone):
        return "closed_by_server"
    if isinstance(value, error.ConnectionLost):
        return "reset_by_server"
    return type(value).__name__


class AttemptOwner(Protocol):
    """Told once how a :class:`CwmpAttempt` ended."""

    def attempt_done(self, attempt: CwmpAttempt) -> None: ...

    def attempt_failed(
        self, attempt: CwmpAttempt, kind: str, retry_after: float | None
    ) -> None: ...


# Session steps.
# An attempt's life around its session: connecting, in session (its protocol state is its
# ``flow``, the table every CWMP role shares: acs.cwmp.flow), or over.
_CONNECTING, _IN_SESSION, _DONE, _RECONNECTING = range(4)


class CwmpAttempt:
    """One CWMP session attempt: Inform, InformResponse, empty POST, RPCs, 204. With
    ``reconnect``, every request after the Inform goes on a new connection (the cookie
    carries the session), as behind a load balancer that spreads connections over nodes."""

    __slots__ = (
        "_conn",
        "_connect_timeout",
        "_cookie",
        "_flow",
        "_host",
        "_host_header",
        "_inform",
        "_pending",
        "_port",
        "_timer",
        "cpe",
        "informed",
        "messages",
        "owner",
        "reactor",
        "reconnect",
        "request_timeout",
        "rpcs",
        "started",
        "step",
    )

    def __init__(
        self,
        reactor: Reactor,
        owner: AttemptOwner,
        messages: Messages,
        cpe: int,
        host_header: bytes,
        request_timeout: float,
        *,
        reconnect: bool = False,
    ) -> None:
        self.reactor = reactor
        self.reconnect = reconnect
        self._host, self._port, self._connect_timeout = "", 0, 0.0
        self._pending = b""
        self.owner = owner
        self.messages = messages
        self.cpe = cpe  # index of the CPE in the generator's serial list
        self._host_header = host_header
        self.request_timeout = request_timeout
        self.step = _CONNECTING
        self._flow = Flow()
        self.started = 0.0
        self.rpcs = 0  # ACS requests answered (provisioning)
        self.informed = False  # the ACS answered the Inform: a session exists on its side
        self._conn: HttpConnection | None = None
        self._cookie = b""
        self._inform = b""
        self._timer: Any = None

    def start(self, host: str, port: int, serial: str, connect_timeout: float) -> None:
        self.started = time.monotonic()
        self.step = _CONNECTING
        self._flow = Flow()
        self.rpcs = 0
        self.informed = False
        self._cookie = b""
        self._inform = self.messages.inform(serial)
        self._host, self._port, self._connect_timeout = host, port, connect_timeout
        connect(self.reactor, host, port, self, connect_timeout)

    # --- ResponseHandler ---

    def connected(self, conn: HttpConnection) -> None:
        if self.step not in (_CONNECTING, _RECONNECTING):  # cancelled while connecting
            conn.handler = IGNORE
            conn.abort()
            return
        self._conn = conn
        if self.step == _RECONNECTING:
            self.step = _IN_SESSION
            self._post(self._pending)
            return
        self.step = _IN_SESSION
        self._flow.advance(Move.INFORM)
        self._post(self._inform)

    def connect_failed(self, reason: Failure) -> None:
        self._fail(failure_kind(reason), None)

    def lost(self, reason: Failure) -> None:
        self._conn = None
        if self.step != _DONE:
            self._fail(failure_kind(reason), None)

    def response(self, status: int, headers: dict[bytes, bytes], body: bytes) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        flow = self._flow
        if self.step != _IN_SESSION:
            return
        if flow.state is State.INFORM_SENT:
            if status == 200 and body:
                cookie = headers.get(b"set-cookie")
                if cookie:
                    self._cookie = b"Cookie: " + cookie.split(b";", 1)[0] + b"\r\n"
                flow.advance(Move.INFORM_RESPONSE)
                self.informed = True
                flow.advance(Move.EMPTY_POST)  # the generator's CPEs have no requests
                self._next_post(b"")
                return
        elif flow.state is State.ACS_REQUESTS:
            if status == 204 or (status == 200 and not body.strip()):
                flow.advance(Move.END)
                self._succeed()
                return
            if status == 200 and b"SetParameterValues>" in body:
                flow.advance(Move.ACS_REQUEST)
                self.rpcs += 1
                flow.advance(Move.ACS_REQUEST_ANSWER)
                self._next_post(self.messages.spv_response(body))
                return
            if status == 200:
                self._fail("unexpected_acs_request", None)
                return
        if status == 503 and flow.state is State.INFORM_SENT:
            # Back-pressure: the ACS asks us to come back later. Not an error.
            raw = headers.get(b"retry-after", b"")
            self._fail("backpressure_503", float(raw) if raw.strip().isdigit() else 0.0)
            return
        step = "inform" if flow.state is State.INFORM_SENT else "session"
        self._fail(f"http_{status}_{step}", None)

    # --- internals ---

    def _next_post(self, body: bytes) -> None:
        """The session's next request: on this connection, or with ``reconnect`` on a new
        one (this one closed first)."""
        if not self.reconnect:
            self._post(body)
            return
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.handler = IGNORE
            conn.close()
        self._pending = body
        self.step = _RECONNECTING
        connect(self.reactor, self._host, self._port, self, self._connect_timeout)

    def _post(self, body: bytes) -> None:
        conn = self._conn
        if conn is None:
            return
        head = b"POST / HTTP/1.1\r\n" + self._host_header + self._cookie
        if body:
            head += b'Content-Type: text/xml; charset="utf-8"\r\nSOAPAction: ""\r\n'
        conn.send(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self._timer = self.reactor.callLater(self.request_timeout, self._timed_out)

    def _timed_out(self) -> None:
        self._timer = None
        self._fail("timeout", None)

    def _succeed(self) -> None:
        self.step = _DONE
        self._drop(abort=False)
        self.owner.attempt_done(self)

    def _drop(self, *, abort: bool) -> None:
        """Let go of the connection; its late callbacks must not reach a reused attempt."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.handler = IGNORE
            if abort:
                conn.abort()
            else:
                conn.close()

    def _fail(self, kind: str, retry_after: float | None) -> None:
        if self.step == _DONE:
            return
        self.step = _DONE
        self._drop(abort=True)
        self.owner.attempt_failed(self, kind, retry_after)

    def cancel(self) -> bool:
        """Abandon the attempt (run deadline), no callback to the owner. True if a session
        was open on the ACS's side (it is lost)."""
        open_session = self.step not in (_CONNECTING, _DONE) and self.informed
        self.step = _DONE
        self._drop(abort=True)
        return open_session


class KeepAliveGetter:
    """GETs sent one at a time on one persistent connection, reconnecting if it drops."""

    def __init__(
        self,
        reactor: Reactor,
        host: str,
        port: int,
        headers: bytes,
        on_response: Callable[[int, bytes, float], None],
        on_error: Callable[[str], None],
        timeout: float,
    ) -> None:
        self.reactor = reactor
        self.host, self.port = host, port
        self._headers = headers
        self._on_response = on_response
        self._on_error = on_error
        self._timeout = timeout
        self._conn: HttpConnection | None = None
        self._pending: bytes | None = None
        self._sent = 0.0
        self._timer: Any = None

    def get(self, path: str) -> None:
        self._pending = b"GET " + path.encode("ascii") + b" HTTP/1.1\r\n" + self._headers + b"\r\n"
        if self._conn is None:
            connect(self.reactor, self.host, self.port, self, self._timeout)
        else:
            self._send()

    def _send(self) -> None:
        assert self._conn is not None and self._pending is not None
        self._sent = time.monotonic()
        self._conn.send(self._pending)
        self._timer = self.reactor.callLater(self._timeout, self._timed_out)

    def _timed_out(self) -> None:
        self._timer = None
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.handler = IGNORE
            conn.abort()
        self._on_error("timeout")

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.handler = IGNORE
            conn.close()

    def connected(self, conn: HttpConnection) -> None:
        self._conn = conn
        self._send()

    def connect_failed(self, reason: Failure) -> None:
        self._on_error(failure_kind(reason))

    def lost(self, reason: Failure) -> None:
        was_waiting = self._timer is not None
        self._conn = None
        if was_waiting:
            self._timer.cancel()
            self._timer = None
            self._on_error(failure_kind(reason))

    def response(self, status: int, headers: dict[bytes, bytes], body: bytes) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        elapsed = time.monotonic() - self._sent
        if headers.get(b"connection", b"").lower() == b"close":
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.handler = IGNORE
                conn.close()
        self._on_response(status, body, elapsed)


class _Ignore:
    """Handler for a connection we have given up on."""

    def connected(self, conn: HttpConnection) -> None:
        conn.abort()

    def response(self, status: int, headers: dict[bytes, bytes], body: bytes) -> None:
        pass

    def lost(self, reason: Failure) -> None:
        pass

    def connect_failed(self, reason: Failure) -> None:
        pass


IGNORE = _Ignore()
