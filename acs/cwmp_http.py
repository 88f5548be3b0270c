"""The CWMP HTTP endpoint: a twisted.web resource between CPEs and the session machine.

This module owns everything HTTP about CWMP: bounded request bodies (``CwmpRequest`` refuses
an oversize body with 413 before buffering it; ``CwmpSite`` is the site that uses it), finding
the session a POST belongs to (cookie, else the TCP connection), CPE authentication (Digest
with stateless HMAC nonces, and Basic), the session inactivity timers, and turning the
sans-IO ``acs.cwmp.session.Session`` events into store/task calls and HTTP responses, and
admission control (beyond ``[cwmp] max_sessions`` live sessions, a new session's Inform gets
503 + Retry-After before it is parsed). Logging: one info line per session at the Inform and
one at its end; per-RPC lines are debug.
Protocol decisions live in ``acs.cwmp.session``; persistence in ``acs.store`` and
``acs.tasks``. Nothing here blocks: each step is a few short SQLite calls in one
transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import secrets
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from acs import httpdigest
from acs.config import CwmpConfig
from acs.cwmp import rpc, soap
from acs.cwmp.identity import bounded
from acs.cwmp.redact import redact_transcript
from acs.cwmp.session import (
    DEFAULT_MAX_RPCS,
    CpeDone,
    CpeRequest,
    Event,
    InformReceived,
    ProtocolViolation,
    RpcResult,
    Session,
)
from acs.httplimits import BoundedRequest, BoundedSite
from acs.store.health import STORAGE_FULL_RETRY_AFTER, is_storage_full
from acs.store.models import Device, InformRecord

if TYPE_CHECKING:
    from acs.store import Store
    from acs.tasks import SessionTasks, TaskEngine

log = Logger(namespace="acs.cwmp")

REALM = "acs"
# Digest nonces are "<hex timestamp>-<HMAC>": any process holding the secret can check
# them without shared state; older than this they are answered with stale=true.
NONCE_TTL = 300.0
COOKIE_NAME = "session"
# Bytes of SOAP kept per debug transcript: a session's bodies (8 MiB each) are not.
MAX_TRANSCRIPT = 1024 * 1024
XML_CONTENT_TYPE = b'text/xml; charset="utf-8"'
TEXT_CONTENT_TYPE = b"text/plain; charset=utf-8"


class RetryPacer:
    """Sizes the Retry-After of 503s at the session cap.

    A fixed short Retry-After is right for a handful of CPEs, but in a boot storm thousands of
    turned-away CPEs come back every few seconds, and answering them takes the CPU the admitted
    sessions need. So every ``window`` seconds the pacer compares the 503s it answered with the
    sessions it admitted: while turn-aways outnumber admissions more than twice, the upper
    bound grows by half (up to ``ceiling``); once they don't, it shrinks back towards
    ``initial``. Each answer is a random whole number of seconds in [upper / 2, upper], so CPEs
    turned away together don't come back together. Pure logic: the caller passes the time.
    """

    def __init__(
        self,
        *,
        initial: float = 10.0,
        ceiling: float = 300.0,
        window: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        self.initial = initial
        self.ceiling = ceiling
        self.window = window
        self.upper = initial
        self._rng = rng or random.Random()
        self._started: float | None = None
        self._refused = 0
        self._admitted = 0

    def admitted(self, now: float) -> None:
        self._roll(now)
        self._admitted += 1

    def retry_after(self, now: float) -> int:
        """Seconds for the Retry-After of one 503 (at least 1)."""
        self._roll(now)
        self._refused += 1
        high = max(1, int(self.upper))
        return self._rng.randint(max(1, high // 2), high)

    def _roll(self, now: float) -> None:
        if self._started is None:
            self._started = now
        if now - self._started < self.window:
            return
        if self._refused > 2 * max(self._admitted, 1):
            self.upper = min(self.ceiling, self.upper * 1.5)
        elif self._refused <= self._admitted:
            self.upper = max(self.initial, self.upper / 1.5)
        self._started, self._refused, self._admitted = now, 0, 0


class CwmpRequest(BoundedRequest):
    """A CWMP request: bodies above ``soap.MAX_ENVELOPE_BYTES`` get 413 before buffering."""

    what = "CWMP request"
    # CWMP bodies are SOAP, never forms: skip twisted.web's Content-Type parsing (through
    # email.headerregistry, ~5% of the ACS's CPU in a boot storm) for form arguments.
    _parsePOSTFormSubmission = False


class CwmpSite(BoundedSite):
    """The CWMP listener's site: bounded envelopes, no access log."""

    requestFactory = CwmpRequest

    def __init__(self, resource: Resource, **kwargs: Any) -> None:
        super().__init__(resource, max_body=soap.MAX_ENVELOPE_BYTES, access_log=False, **kwargs)


@dataclass(eq=False)
class _Live:
    """One live CWMP session: the protocol state plus what HTTP needs to find and time it."""

    session_id: str
    session: Session
    device_id: int
    serial: str
    tasks: SessionTasks
    channel: object | None
    timeout: float
    started: float
    timer: Any = None  # the IDelayedCall of the inactivity timeout
    # (direction, body) pairs, kept only for devices with debug on, redacted and bounded.
    transcript: list[tuple[str, str]] | None = None
    transcript_size: int = 0
    ended: bool = False

    def record(self, direction: str, body: bytes) -> None:
        if self.transcript is None:
            return
        room = MAX_TRANSCRIPT - self.transcript_size
        if room <= 0:
            return
        text = redact_transcript(body[:room].decode("utf-8", errors="replace"))
        if len(body) > room:
            text += f"\n[transcript truncated at {MAX_TRANSCRIPT} bytes]"
        self.transcript_size += min(len(body), room)
        self.transcript.append((direction, text))


@dataclass
class _Context:
    """Per-request scratch: the session in play, so a crash can tear it down."""

    live: _Live | None = None


class CwmpResource(Resource):
    """POST-only CWMP endpoint. One instance serves every CPE of the appliance."""

    isLeaf = True

    def __init__(
        self,
        *,
        store: Store,
        tasks: TaskEngine,
        config: CwmpConfig,
        reactor: IReactorTime,
        secret: bytes,
        max_rpcs_per_session: int = DEFAULT_MAX_RPCS,
    ) -> None:
        super().__init__()
        self._store = store
        self._tasks = tasks
        self._config = config
        # Any: zope interfaces don't type-check as protocols; tests pass a task.Clock.
        self._reactor: Any = reactor
        self._secret = secret
        self._max_rpcs = max_rpcs_per_session
        self._by_cookie: dict[str, _Live] = {}
        self._by_channel: dict[object, _Live] = {}
        self._by_device: dict[int, _Live] = {}
        self.pacer = RetryPacer()
        # New sessions turned away with 503 at the cap since start (for metrics and tests).
        self.busy_rejections = 0

    # --- public API ---------------------------------------------------------------------

    def in_session(self, device_id: int) -> bool:
        return device_id in self._by_device

    def active_sessions(self) -> int:
        return len(self._by_device)

    def stop(self) -> None:
        """Cancel every session timer (service shutdown). Sessions are dropped unaborted:
        their in-progress tasks are requeued by the task engine at the next Inform."""
        for live in list(self._by_device.values()):
            self._forget(live)

    # --- twisted.web entry point --------------------------------------------------------

    def render(self, request: Request) -> bytes:
        ctx = _Context()
        try:
            return self._render(request, ctx)
        except Exception as exc:
            live = ctx.live
            full = is_storage_full(exc)
            if full:
                # Nothing of this message was stored (its transaction rolled back).
                log.warn(
                    "CWMP message refused: storage full device_id={device_id} "
                    "session_id={session_id}",
                    device_id=live.device_id if live else None,
                    session_id=live.session_id if live else None,
                )
            else:
                log.failure(
                    "CWMP request failed device_id={device_id} session_id={session_id}",
                    device_id=live.device_id if live else None,
                    session_id=live.session_id if live else None,
                )
            if live is not None:
                self._end(live, abort_reason="storage full" if full else "internal error")
            # Drop anything set before the failure (a Set-Cookie would point at nothing).
            for name in (b"set-cookie", b"www-authenticate", b"allow"):
                request.responseHeaders.removeHeader(name)
            if full:
                request.setHeader(b"Retry-After", b"%d" % STORAGE_FULL_RETRY_AFTER)
                return _text(request, 503, "Storage is full, retry later")
            return _text(request, 500, "Internal server error")

    def _render(self, request: Request, ctx: _Context) -> bytes:
        if request.method != b"POST":
            request.setHeader(b"Allow", b"POST")
            return _text(request, 405, "Method not allowed: CWMP uses POST")
        declared = request.getHeader(b"content-length")
        # Refuse on the declared length without reading the body.
        if (
            declared is not None
            and declared.strip().isdigit()
            and int(declared) > soap.MAX_ENVELOPE_BYTES
        ):
            return _text(request, 413, "Request body too large")
        data = request.content.read(soap.MAX_ENVELOPE_BYTES + 1) if request.content else b""
        if len(data) > soap.MAX_ENVELOPE_BYTES:
            return _text(request, 413, "Request body too large")
        live = self._find_session(request)
        if live is None and data and self._at_capacity():
            # Before decompressing, parsing or storing anything: a turned-away CPE costs
            # little, and retrying later keeps its events (TR-069 §3.2.1.1).
            return self._busy(request)
        encoding = (request.getHeader(b"content-encoding") or b"identity").strip().lower()
        if encoding not in (b"identity", b""):
            decoded = _decompress(data, encoding)
            if decoded is None:
                return _text(request, 415, "Unsupported or corrupt Content-Encoding")
            if len(decoded) > soap.MAX_ENVELOPE_BYTES:
                return _text(request, 413, "Request body too large once decompressed")
            data = decoded

        ctx.live = live
        if not data.strip():
            if live is None:
                # An empty POST with no session (GO does the same): nothing to do.
                return _empty(request)
            return self._step(request, live, None, data)
        try:
            envelope = soap.parse(data)
        except soap.SoapError as exc:
            if live is None:
                log.info(
                    "Rejected CWMP message without session from {address}: {reason}",
                    address=_client_host(request),
                    reason=str(exc),
                )
                return _text(request, exc.http_status, f"Invalid CWMP message: {exc}")
            return self._step(request, live, exc, data)
        if isinstance(envelope.message, rpc.Inform):
            # A new Inform always starts a new session, whatever cookie came with it.
            return self._inform(request, envelope, data, ctx, previous=live)
        if live is None:
            return _text(request, 400, "No CWMP session: send an Inform first")
        return self._step(request, live, envelope, data)

    # --- admission control --------------------------------------------------------------

    def _at_capacity(self) -> bool:
        # An Inform is processed synchronously, so live sessions are all there is to count.
        return len(self._by_device) >= self._config.max_sessions

    def _busy(self, request: Request) -> bytes:
        self.busy_rejections += 1
        seconds = self.pacer.retry_after(self._reactor.seconds())
        request.setHeader(b"Retry-After", b"%d" % seconds)
        return _text(request, 503, "Too many CWMP sessions, retry later")

    # --- session lookup -----------------------------------------------------------------

    def _find_session(self, request: Request) -> _Live | None:
        for value in _cookie_values(request, COOKIE_NAME):
            live = self._by_cookie.get(value)
            if live is not None:
                return live
        # CPEs that drop cookies still keep their connection for the whole session.
        return self._by_channel.get(request.channel)

    # --- Inform -------------------------------------------------------------------------

    def _inform(
        self,
        request: Request,
        envelope: soap.Envelope,
        data: bytes,
        ctx: _Context,
        *,
        previous: _Live | None,
    ) -> bytes:
        now = self._reactor.seconds()
        ctx.live = None
        if previous is not None:
            # The session the cookie/connection pointed at is over: its client has moved on
            # to a new one. Ended first, so every Inform counts against max_sessions (one
            # keep-alive connection informing with new serials cannot pile sessions up).
            self._end(previous, abort_reason="a new Inform on its connection")
            if self._at_capacity():
                return self._busy(request)
        session = Session(max_rpcs=self._max_rpcs, id_prefix=secrets.token_hex(4))
        event = session.receive(envelope)
        if isinstance(event, ProtocolViolation):
            log.info("Refused Inform: {reason}", reason=event.reason)
            return _violation_response(request, event)
        assert isinstance(event, InformReceived)
        inform = event.inform
        serial = inform.device_id.serial_number.strip()  # checked by the session

        device = self._store.find_device_by_serial(serial)
        if device is not None and device.operational_status == "decommissioned":
            log.info(
                "Refused Inform from decommissioned device device_id={device_id}",
                device_id=device.id,
            )
            return _text(request, 403, "Device is decommissioned")
        if device is None and not self._config.auto_register:
            log.info("Refused Inform from unknown serial {serial}", serial=serial)
            return _text(request, 403, "Unknown device")
        challenge = self._authenticate(request, device, now)
        if challenge is not None:
            return challenge

        if device is not None:
            old = self._by_device.get(device.id)
            if old is not None:
                log.info(
                    "New Inform replaces live session device_id={device_id} "
                    "session_id={session_id}",
                    device_id=old.device_id,
                    session_id=old.session_id,
                )
                self._end(old, abort_reason="replaced by a new session")

        record = _inform_record(inform, _client_host(request))
        registered_in: str | None = None
        with self._store.transaction():
            if device is None:
                device, registered_in = self._register(inform, now)
            device = self._store.record_inform(device.id, record, now=now)
            self._tasks.on_inform(device, inform, now=now)
        self.pacer.admitted(now)

        # The CPE's SessionTimeout is its own inactivity timeout, but a slot held for hours
        # is a slot another CPE cannot use: clamped to [cwmp] max_session_timeout.
        asked = session.inactivity_timeout or self._config.session_timeout
        timeout = float(min(asked, self._config.max_session_timeout))
        live = _Live(
            session_id=secrets.token_hex(16),
            session=session,
            device_id=device.id,
            serial=serial,
            tasks=self._tasks.open_session(device.id),
            channel=request.channel,
            timeout=timeout,
            started=now,
            transcript=[] if device.debug else None,
        )
        ctx.live = live
        self._by_cookie[live.session_id] = live
        self._by_device[device.id] = live
        if live.channel is not None:
            self._by_channel[live.channel] = live
        self._touch(live)
        live.record("cpe", data)
        # The session's first info line (its last is "Session done"); a new device's
        # auto-registration is told here rather than on a line of its own.
        log.info(
            "Inform {serial} events={events} cwmp={version}"
            + (" auto-registered in {organization}" if registered_in is not None else "")
            + " device_id={device_id} session_id={session_id}",
            serial=serial,
            events=",".join(e.code for e in inform.events),
            version=session.version,
            organization=registered_in,
            device_id=device.id,
            session_id=live.session_id,
        )
        body = session.respond_inform()
        request.addCookie(COOKIE_NAME.encode(), live.session_id.encode(), path=b"/", httpOnly=True)
        live.record("acs", body)
        return _xml(request, body)

    def _register(self, inform: rpc.Inform, now: float) -> tuple[Device, str]:
        """Create the device of an unknown serial: (device, its organization's name)."""
        ident = inform.device_id
        org = self._store.ensure_organization(self._config.default_organization)
        type_id = self._store.find_device_type(ident.manufacturer, ident.product_class)
        serial = ident.serial_number.strip()
        device = self._store.create_device(
            serial_number=serial,
            name=serial,
            organization_id=org.id,
            now=now,
            actor="cwmp",
            type_id=type_id,
        )
        return device, org.name

    # --- authentication -----------------------------------------------------------------

    def _expected_credentials(self, device: Device | None) -> tuple[str, str] | None:
        if device is not None and device.username:
            return device.username, device.password or ""
        if self._config.username or self._config.password:
            return self._config.username, self._config.password
        return None

    def _authenticate(self, request: Request, device: Device | None, now: float) -> bytes | None:
        """None when the CPE may proceed, else the 401 response body (headers set)."""
        expected = self._expected_credentials(device)
        if expected is None:
            return None
        username, password = expected
        header = request.getHeader(b"authorization")
        creds = httpdigest.parse_authorization(header.decode("latin-1")) if header else None
        stale = False
        if creds is not None and hmac.compare_digest(
            creds.username.encode("utf-8"), username.encode("utf-8")
        ):
            ok = httpdigest.check_credentials(
                creds, method=request.method.decode("ascii"), password=password, realm=REALM
            )
            if ok and creds.scheme == "digest":
                # The response must be for this request, not one captured elsewhere.
                ok = _digest_uri_matches(creds.params.get("uri", ""), request)
            if ok and creds.scheme == "digest":
                verdict = self._check_nonce(creds.params.get("nonce", ""), now)
                if verdict == "ok":
                    return None
                stale = verdict == "stale"
            elif ok:
                return None
        log.info(
            "CPE authentication failed for {username!r} from {address}",
            username=creds.username if creds else None,
            address=_client_host(request),
        )
        request.responseHeaders.addRawHeader(
            b"WWW-Authenticate",
            httpdigest.digest_challenge(REALM, self._make_nonce(now), stale=stale).encode(),
        )
        request.responseHeaders.addRawHeader(
            b"WWW-Authenticate", httpdigest.basic_challenge(REALM).encode()
        )
        return _text(request, 401, "Authentication required")

    def _nonce_mac(self, stamp: str) -> str:
        return hmac.new(self._secret, stamp.encode("ascii"), hashlib.sha256).hexdigest()[:32]

    def _make_nonce(self, now: float) -> str:
        stamp = f"{int(now):x}"
        return f"{stamp}-{self._nonce_mac(stamp)}"

    def _check_nonce(self, nonce: str, now: float) -> str:
        """'ok', 'stale' (ours but expired) or 'bad' (forged or garbled)."""
        stamp, sep, mac = nonce.partition("-")
        if not sep or not hmac.compare_digest(mac.encode(), self._nonce_mac(stamp).encode()):
            return "bad"
        try:
            issued = int(stamp, 16)
        except ValueError:
            return "bad"
        age = now - issued
        return "ok" if -60.0 <= age <= NONCE_TTL else "stale"

    # --- session steps ------------------------------------------------------------------

    def _step(
        self,
        request: Request,
        live: _Live,
        received: soap.Envelope | soap.SoapError | None,
        data: bytes,
    ) -> bytes:
        live.record("cpe", data)
        self._touch(live)
        event: Event
        if isinstance(received, soap.SoapError):
            event = live.session.receive_error(received)
        else:
            event = live.session.receive(received)
        return self._handle(request, live, event)

    def _handle(self, request: Request, live: _Live, event: Event) -> bytes:
        now = self._reactor.seconds()
        session = live.session
        if isinstance(event, ProtocolViolation):
            log.warn(
                "CWMP protocol violation: {reason} device_id={device_id} session_id={session_id}",
                reason=event.reason,
                device_id=live.device_id,
                session_id=live.session_id,
            )
            live.record("acs", event.body)
            if event.fatal:
                self._end(live, abort_reason=f"protocol error: {event.reason}")
            return _violation_response(request, event)
        if isinstance(event, CpeRequest):
            with self._store.transaction():
                answer = live.tasks.on_cpe_request(event.message, now=now)
            log.debug(
                "CPE request {method} answered {answer} device_id={device_id} "
                "session_id={session_id}",
                method=type(event.message).__name__,
                answer=type(answer).__name__,
                device_id=live.device_id,
                session_id=live.session_id,
            )
            body = session.respond(answer)
            live.record("acs", body)
            return _xml(request, body)
        if isinstance(event, CpeDone | RpcResult):
            return self._next(request, live, event, now)
        raise AssertionError(f"unexpected session event {event!r}")

    def _next(self, request: Request, live: _Live, event: CpeDone | RpcResult, now: float) -> bytes:
        session = live.session
        if isinstance(event, RpcResult):
            # Per-RPC lines are debug (they were a measurable share of CPU in steady
            # informs); a CPE's Fault stays visible at info.
            level = log.info if isinstance(event.response, rpc.Fault) else log.debug
            level(
                "{request} -> {response} device_id={device_id} session_id={session_id}",
                request=type(event.request).__name__,
                response=_describe(event.response),
                device_id=live.device_id,
                session_id=live.session_id,
            )
        message: rpc.Message | None = None
        with self._store.transaction():
            if isinstance(event, RpcResult):
                live.tasks.on_response(event.response, now=now)
            if not session.rpc_limit_reached:
                message = live.tasks.next_request(now=now)
        if message is None:
            if session.rpc_limit_reached:
                log.warn(
                    "RPC cap of {cap} reached, ending session device_id={device_id} "
                    "session_id={session_id}",
                    cap=session.max_rpcs,
                    device_id=live.device_id,
                    session_id=live.session_id,
                )
                session.finish()
                self._end(live, abort_reason="RPC cap per session reached")
                return _empty(request)
            session.finish()
            live.record("acs", b"")
            log.info(
                # device_id first: tests/test_e2e_cli.py reads this line.
                "Session done device_id={device_id} rpcs={rpcs} duration={duration:.3f}s "
                "session_id={session_id}",
                rpcs=session.rpc_count,
                duration=now - live.started,
                device_id=live.device_id,
                session_id=live.session_id,
            )
            self._end(live, abort_reason=None)
            return _empty(request)
        body = session.send_request(message)
        live.record("acs", body)
        log.debug(
            "Sent {method} device_id={device_id} session_id={session_id}",
            method=type(message).__name__,
            device_id=live.device_id,
            session_id=live.session_id,
        )
        return _xml(request, body)

    # --- timers and teardown ------------------------------------------------------------

    def _touch(self, live: _Live) -> None:
        if live.timer is not None and live.timer.active():
            live.timer.reset(live.timeout)
        else:
            live.timer = self._reactor.callLater(live.timeout, self._expire, live)

    def _expire(self, live: _Live) -> None:
        live.timer = None
        if live.ended:
            return
        log.info(
            "Session timed out after {timeout}s idle device_id={device_id} session_id={session_id}",
            timeout=live.timeout,
            device_id=live.device_id,
            session_id=live.session_id,
        )
        # Its idle keep-alive connection goes too, unless a newer session took it over.
        idle = live.channel if self._by_channel.get(live.channel) is live else None
        self._end(live, abort_reason="timeout")
        transport = getattr(idle, "transport", None)
        if transport is not None:
            transport.loseConnection()

    def _forget(self, live: _Live) -> None:
        """Remove every handle on the session and cancel its timer."""
        live.ended = True
        if live.timer is not None and live.timer.active():
            live.timer.cancel()
        live.timer = None
        live.session.close()
        if self._by_cookie.get(live.session_id) is live:
            del self._by_cookie[live.session_id]
        if self._by_device.get(live.device_id) is live:
            del self._by_device[live.device_id]
        if live.channel is not None and self._by_channel.get(live.channel) is live:
            del self._by_channel[live.channel]

    def _end(self, live: _Live, *, abort_reason: str | None) -> None:
        """Finish a session: free its slot, abort its tasks if it died, keep its transcript."""
        if live.ended:
            return
        self._forget(live)
        now = self._reactor.seconds()
        if abort_reason is not None:
            try:
                with self._store.transaction():
                    live.tasks.abort(now=now, reason=abort_reason)
            except Exception:
                log.failure(
                    "Aborting session tasks failed device_id={device_id} session_id={session_id}",
                    device_id=live.device_id,
                    session_id=live.session_id,
                )
        if live.transcript is not None:
            self._save_transcript(live)

    def _save_transcript(self, live: _Live) -> None:
        text = "\n".join(f"--- {direction}\n{body}" for direction, body in live.transcript or [])
        try:
            self._store.add_session_transcript(live.device_id, text, started=live.started)
        except Exception:
            # The device may have been deleted meanwhile; a lost transcript is no reason to fail.
            log.failure(
                "Saving transcript failed device_id={device_id} session_id={session_id}",
                device_id=live.device_id,
                session_id=live.session_id,
            )


# --- helpers ------------------------------------------------------------------------------


def _xml(request: Request, body: bytes, status: int = 200) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", XML_CONTENT_TYPE)
    request.setHeader(b"Content-Length", str(len(body)).encode())
    return body


def _empty(request: Request) -> bytes:
    request.setResponseCode(204)
    return b""


def _text(request: Request, status: int, text: str) -> bytes:
    body = (text + "\n").encode("utf-8")
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", TEXT_CONTENT_TYPE)
    request.setHeader(b"Content-Length", str(len(body)).encode())
    return body


def _violation_response(request: Request, event: ProtocolViolation) -> bytes:
    if event.body:
        return _xml(request, event.body, event.http_status)
    return _text(request, event.http_status, event.reason)


def _decompress(data: bytes, encoding: bytes) -> bytes | None:
    """gzip/deflate request bodies (GA accepts them), bounded like plain ones."""
    if encoding in (b"gzip", b"x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == b"deflate":
        wbits = zlib.MAX_WBITS
    else:
        return None
    try:
        inflater = zlib.decompressobj(wbits)
        out = inflater.decompress(data, soap.MAX_ENVELOPE_BYTES + 1)
    except zlib.error:
        return None
    # Stops at MAX + 1 bytes so a zip bomb costs nothing; the caller answers 413.
    return out


def _cookie_values(request: Request, name: str) -> list[str]:
    """Values of cookie ``name``; CPEs separate cookies with ';' or ',' (Twisted only ';')."""
    values: list[str] = []
    for raw in request.requestHeaders.getRawHeaders(b"cookie") or []:
        text = raw.decode("latin-1")
        for part in text.replace(",", ";").split(";"):
            key, sep, value = part.partition("=")
            if sep and key.strip() == name:
                values.append(value.strip().strip('"'))
    return values


def _digest_uri_matches(given: str, request: Request) -> bool:
    actual = request.uri.decode("latin-1")
    if given == actual:
        return True
    # Some clients put the absolute URL in the digest uri.
    parts = urlsplit(given)
    if not (parts.scheme and parts.netloc):
        return False
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return path == actual


def _client_host(request: Request) -> str | None:
    address: Any = request.getClientAddress()
    host = getattr(address, "host", None)
    return host if isinstance(host, str) else None


def _data_model_root(inform: rpc.Inform) -> str | None:
    for param in inform.parameters:
        if param.name.startswith("InternetGatewayDevice."):
            return "InternetGatewayDevice."
        if param.name.startswith("Device."):
            return "Device."
    return None


def _inform_record(inform: rpc.Inform, address: str | None) -> InformRecord:
    ident = inform.device_id  # its fields were checked by the session (acs.cwmp.identity)
    # Every other string the CPE sends is stored only within its data model's bounds
    # (TR-181 string(64) versions, string(256) URL, TR-069 event codes of 64).
    return InformRecord(
        manufacturer=ident.manufacturer,
        oui=ident.oui,
        product_class=ident.product_class,
        serial_number=ident.serial_number.strip(),
        # Suffixes start with "." so "Device." and "InternetGatewayDevice." both match.
        software_version=bounded(inform.parameter(".DeviceInfo.SoftwareVersion"), 64),
        hardware_version=bounded(inform.parameter(".DeviceInfo.HardwareVersion"), 64),
        connection_request_url=bounded(
            inform.parameter(".ManagementServer.ConnectionRequestURL"), 256
        ),
        data_model_root=_data_model_root(inform),
        address=address,
        event_codes=tuple(c for c in (bounded(e.code, 64) for e in inform.events) if c),
    )


def _describe(message: rpc.Message) -> str:
    if isinstance(message, rpc.Fault):
        return f"Fault {message.code} {message.string}"
    return type(message).__name__
