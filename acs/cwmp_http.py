"""The CWMP HTTP endpoint: a twisted.web resource between CPEs and the session machine.

This module owns the HTTP side of CWMP sessions (the listener's site, bounded bodies and
small HTTP readers/writers are :mod:`acs.cwmp_site`): finding the session a POST belongs to
(cookie, else the TCP connection), CPE authentication (Digest with HMAC nonces, each
(nonce, nc) accepted once; Basic only over TLS unless configured; failures backed off per
address), the session inactivity timers, turning the sans-IO ``acs.cwmp.session.Session``
events into store/task calls and HTTP responses, and admission control (beyond ``[cwmp]
max_sessions`` live sessions, a new session's Inform gets 503 + Retry-After, paced by
``RetryPacer``, before it is parsed). Logging: one info line per session at the Inform and
one at its end; per-RPC lines are debug.
Protocol decisions live in ``acs.cwmp.session``; persistence in ``acs.store`` and
``acs.tasks``. Nothing here blocks: each step's store work is one unit of work
(``Store.run``: at once on SQLite, in the engine's threads on PostgreSQL, in order per
device), answered once it ran; bodies of ``OFF_THREAD_BYTES`` and more are parsed in a
worker thread.
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, DeferredLock, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from acs import httpdigest
from acs.authguard import AuthThrottle, NonceLedger
from acs.clock import Clock
from acs.config import CwmpConfig
from acs.cwmp import rpc, soap
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
from acs.cwmp_site import (
    RetryPacer,
    cookie_values,
    decompress,
    digest_uri_matches,
    empty_response,
    nonce_count,
    text_response,
    xml_response,
)
from acs.metrics import CwmpCollector, Metrics
from acs.onboarding import NO_CREDENTIALS, Admitted, Credential, Onboarding, Refusal
from acs.peers import UNREACHABLE_RETRY_AFTER, PeerForwarder, cpe_host, cpe_secure, forwarded
from acs.periodic import node_gone, node_name
from acs.session_leases import LeaseReleases
from acs.store.errors import Conflict
from acs.store.health import (
    STORAGE_FULL_RETRY_AFTER,
    STORAGE_UNAVAILABLE_RETRY_AFTER,
    is_storage_full,
    is_storage_unavailable,
)
from acs.store.models import Device
from acs.store.nodes import SessionHolder

if TYPE_CHECKING:
    from acs.store import Store
    from acs.tasks import SessionTasks, TaskEngine

log = Logger(namespace="acs.cwmp")

REALM = "acs"
# Digest nonces are "<hex timestamp>-<HMAC>": any process holding the secret can check
# them without shared state; older than this they are answered with stale=true.
NONCE_TTL = 300.0
COOKIE_NAME = "session"
# Bodies at least this big are parsed in a worker thread (about 50 ms of parsing and up).
OFF_THREAD_BYTES = 256 * 1024
# A device's session lease lasts this many of the session's inactivity timeouts, renewed
# once half of it is gone: a live node's session ends (times out) before its lease does.
LEASE_TIMEOUTS = 2
# Bytes of SOAP kept per debug transcript: a session's bodies (8 MiB each) are not.
MAX_TRANSCRIPT = 1024 * 1024


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
    lease_until: float  # when its device's session lease runs out unless renewed
    started: float
    # The Inform found no task and queued none: its end looks at the queue before it writes.
    quiet: bool = False
    active: float = 0.0  # when the CPE last sent a request in this session
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


class _HeldElsewhere(Exception):
    """Another node runs a session with the device (rolls the Inform's transaction back)."""

    def __init__(self, device_id: int, holder: SessionHolder) -> None:
        super().__init__(device_id, holder)
        self.device_id = device_id
        self.holder = holder


@dataclass
class _Context:
    """Per-request scratch: the session in play, so a crash can tear it down."""

    live: _Live | None = None


@dataclass
class _Opening:
    """An Inform on its way to a session, between its units of work."""

    session: Session
    inform: rpc.Inform
    serial: str
    data: bytes
    random: str  # the cookie's and the cwmp:IDs' randomness
    now: float
    timeout: float = 0.0
    lease_until: float = 0.0
    known: bool = False


class CwmpResource(Resource):
    """POST-only CWMP endpoint. One instance serves every CPE of the appliance."""

    isLeaf = True

    def __init__(
        self,
        *,
        store: Store,
        tasks: TaskEngine,
        config: CwmpConfig,
        reactor: Clock,
        secret: bytes,
        max_rpcs_per_session: int = DEFAULT_MAX_RPCS,
        threads: Callable[..., Deferred[Any]] | None = None,
        metrics: Metrics | None = None,
        node: str | None = None,
        forwarder: PeerForwarder | None = None,
    ) -> None:
        super().__init__()
        # This process as a node of the database: its id prefixes the session cookies and
        # holds the session leases of the devices it runs sessions for.
        self.node_id = store.register_node(node or node_name(), None, now=reactor.seconds())
        # The leases of ended sessions that ran no task, given up together a moment later.
        self._releases = LeaseReleases(store, reactor, self.node_id)
        # Sends requests of sessions running on another node there (None: answers 503).
        self._forwarder = forwarder
        self.metrics = metrics if metrics is not None else Metrics()
        self._store = store
        self._tasks = tasks
        self._onboarding = Onboarding(store, tasks, config)
        self._config = config
        self._reactor = reactor
        # Each node's nonces name it: only the node that made one can tell whether it was
        # used, so another node's nonce is answered there (forwarded) or challenged again.
        self._nonce_signer = httpdigest.NonceSigner(secret, NONCE_TTL, issuer=self.node_id)
        self._max_rpcs = max_rpcs_per_session
        # Runs big-body parsing off the reactor thread; None parses every body inline.
        self._threads = threads
        self._by_cookie: dict[str, _Live] = {}
        self._by_channel: dict[object, _Live] = {}
        self._by_device: dict[int, _Live] = {}
        # Each device's units of work run one after another (a session's steps, its abort,
        # its transcript), when the store runs them off the reactor thread.
        self._device_units: dict[int, DeferredLock] = {}
        self._under_way: set[Deferred[Any]] = set()  # units not run yet (not inline)
        # Informs whose units are under way: they count against max_sessions too.
        self._informing = 0
        self.pacer = RetryPacer()
        self.auth_throttle = AuthThrottle("CWMP", log.info)
        self._nonces = NonceLedger()
        self._nonces_swept = 0.0
        # New sessions turned away with 503 at the cap since start (for metrics and tests).
        self.busy_rejections = 0
        # Live sessions, least recently active first (the eviction order at the cap).
        self._by_activity: OrderedDict[_Live, None] = OrderedDict()
        # Sessions ended at the cap because they idled past [cwmp] idle_grace.
        self.idle_evictions = 0
        self.metrics.registry.register(CwmpCollector(self))

    # --- public API ---------------------------------------------------------------------

    def in_session(self, device_id: int) -> bool:
        """Whether a CWMP session with ``device_id`` runs, here or on another node."""
        if device_id in self._by_device:
            return True
        if device_id in self._releases:  # ended here; its lease is given up shortly
            return False
        return self._store.device_session_node(device_id, now=self._reactor.seconds()) is not None

    def active_sessions(self) -> int:
        return len(self._by_device)

    def stop(self) -> None:
        """Cancel every session timer (service shutdown). Sessions are dropped unaborted:
        their in-progress tasks are requeued by the task engine at the next Inform."""
        for live in list(self._by_device.values()):
            self._forget(live)
        self._releases.flush()  # the leases of sessions that ended just now

    # --- twisted.web entry point --------------------------------------------------------

    def render(self, request: Request) -> bytes | int:
        ctx = _Context()
        return self._guarded(request, ctx, self._render, request, ctx)

    def _guarded(
        self, request: Request, ctx: _Context, step: Callable[..., Any], *args: Any
    ) -> Any:
        """``step(*args)``, or a 500 that ends the session in play if it raised (503 with
        Retry-After when storage was full or the database server cannot be reached)."""
        try:
            return step(*args)
        except Exception as exc:
            live = ctx.live
            full = is_storage_full(exc)
            unavailable = not full and is_storage_unavailable(exc)
            if full or unavailable:
                # Nothing of this message was stored (its transaction rolled back).
                log.warn(
                    "CWMP message refused: {why} device_id={device_id} session_id={session_id}",
                    why="storage full" if full else "database unavailable",
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
                reason = (
                    "storage full"
                    if full
                    else "database unavailable"
                    if unavailable
                    else "internal error"
                )
                self._end(live, abort_reason=reason)
            # Drop anything set before the failure (a Set-Cookie would point at nothing).
            for name in (b"set-cookie", b"www-authenticate", b"allow"):
                request.responseHeaders.removeHeader(name)
            if full:
                request.setHeader(b"Retry-After", b"%d" % STORAGE_FULL_RETRY_AFTER)
                return text_response(request, 503, "Storage is full, retry later")
            if unavailable:
                request.setHeader(b"Retry-After", b"%d" % STORAGE_UNAVAILABLE_RETRY_AFTER)
                return text_response(request, 503, "Database unavailable, retry later")
            return text_response(request, 500, "Internal server error")

    def _render(self, request: Request, ctx: _Context) -> bytes | int:
        if request.method != b"POST":
            request.setHeader(b"Allow", b"POST")
            return text_response(request, 405, "Method not allowed: CWMP uses POST")
        declared = request.getHeader(b"content-length")
        # Refuse on the declared length without reading the body.
        if (
            declared is not None
            and declared.strip().isdigit()
            and int(declared) > soap.MAX_ENVELOPE_BYTES
        ):
            return text_response(request, 413, "Request body too large")
        data = request.content.read(soap.MAX_ENVELOPE_BYTES + 1) if request.content else b""
        if len(data) > soap.MAX_ENVELOPE_BYTES:
            return text_response(request, 413, "Request body too large")
        cookies = cookie_values(request, COOKIE_NAME)
        live = self._find_session(request, cookies)
        named = self._named_node(request, cookies) if live is None else None
        if named is None:
            return self._arrived(request, ctx, live, None, data)
        # Its cookie or Digest nonce names another node: that node's address, in a unit.
        node_id, by = named
        gone = _watch(request)
        self._store.read(self._store.node_peer, node_id).addCallbacks(
            lambda peer: self._answer(
                request, ctx, gone, self._arrived, request, ctx, None, _owner(peer, by), data
            ),
            lambda failure: self._answer(request, ctx, gone, failure.raiseException),
        )
        return NOT_DONE_YET

    def _arrived(
        self,
        request: Request,
        ctx: _Context,
        live: _Live | None,
        owner: tuple[str, str] | None,
        data: bytes,
    ) -> bytes | int:
        """A request of session ``live`` (None: none here), or of another node's (``owner``:
        its peer URL and what named it), whose body is ``data``."""
        if live is None and owner is None and data and self._at_capacity():
            # Before decompressing, parsing or storing anything: a turned-away CPE costs
            # little, and retrying later keeps its events (TR-069 §3.2.1.1).
            return self._busy(request)
        encoding = (request.getHeader(b"content-encoding") or b"identity").strip().lower()
        if encoding not in (b"identity", b""):
            decoded = decompress(data, encoding)
            if decoded is None:
                return text_response(request, 415, "Unsupported or corrupt Content-Encoding")
            if len(decoded) > soap.MAX_ENVELOPE_BYTES:
                return text_response(request, 413, "Request body too large once decompressed")
            data = decoded
        if owner is not None:
            # Its session runs on another node (the CPE's new connection landed here).
            return self._forward(request, owner, data)

        ctx.live = live
        if not data.strip():
            if live is None:
                # An empty POST with no session (GO does the same): nothing to do.
                return empty_response(request)
            return self._step(request, ctx, live, None, data)
        if len(data) < OFF_THREAD_BYTES or self._threads is None:
            return self._dispatch(request, ctx, live, data, _parse(data))
        # A big body (a whole tree in a GetParameterNamesResponse) takes seconds to parse:
        # in a worker thread, so other sessions and the API are answered meanwhile.
        if live is not None:
            self._touch(live)
        gone = _watch(request)

        def parsed(result: soap.Envelope | soap.SoapError) -> None:
            # The session may have ended (timed out, evicted) while the worker parsed.
            ctx.live = live if live is not None and not live.ended else None
            self._answer(request, ctx, gone, self._dispatch, request, ctx, ctx.live, data, result)

        def failed(failure: Any) -> None:
            # The parse itself broke (MemoryError, say): a 500 like any failure, never a hang.
            ctx.live = live if live is not None and not live.ended else None
            self._answer(request, ctx, gone, failure.raiseException)

        self._threads(_parse, data).addCallbacks(parsed, failed)
        return NOT_DONE_YET

    def _answer(
        self,
        request: Request,
        ctx: _Context,
        gone: list[bool],
        step: Callable[..., bytes | int],
        *args: Any,
    ) -> None:
        """Write what ``step(*args)`` answers to a request left NOT_DONE_YET (unless its
        connection has gone meanwhile, or the step left it NOT_DONE_YET in its turn)."""
        body: bytes | int = self._guarded(request, ctx, step, *args)
        if body is NOT_DONE_YET:
            return  # waits for another unit, or forwarded to another node, which answers
        assert isinstance(body, bytes)
        if not gone:
            request.write(body)
            request.finish()

    # --- units of work ------------------------------------------------------------------

    def _unit(self, device_id: int | None, unit: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """``Store.run`` of a session's unit, after every earlier unit of ``device_id``
        (None: a device not registered yet, which has none). Never run again after a
        serialization failure: units change the session's state in memory too."""
        store = self._store
        if store.runs_inline or device_id is None:
            return store.run(unit, *args, rerun=False)
        lock = self._device_units.get(device_id)
        if lock is None:
            lock = self._device_units[device_id] = DeferredLock()

        def ran(outcome: Any) -> Any:
            self._under_way.discard(done)
            if not lock.locked and self._device_units.get(device_id) is lock:
                del self._device_units[device_id]
            return outcome

        done: Deferred[Any] = lock.run(store.run, unit, *args, rerun=False)
        self._under_way.add(done)
        return done.addBoth(ran)

    def settled(self) -> Deferred[None]:
        """Fires once every unit under way has run (a session's abort and transcript
        included, which nobody waits for) and the leases of ended sessions are given up:
        before the store closes."""

        async def settle() -> None:
            while self._under_way:
                ran: Deferred[None] = Deferred()
                next(iter(self._under_way)).addBoth(_passing, ran)
                await ran
            await self._releases.settled()

        return ensureDeferred(settle())

    def _then(
        self,
        request: Request,
        ctx: _Context,
        ran: Deferred[Any],
        after: Callable[..., bytes | int],
        *args: Any,
    ) -> bytes | int:
        """``after(outcome, *args)`` once the unit behind ``ran`` has run (``outcome``: what
        it returned, or the Failure of what it raised): now if it has (SQLite), else
        NOT_DONE_YET and the answer written then. Meanwhile an Inform's unit counts against
        max_sessions."""
        outcome: list[Any] = []
        ran.addBoth(outcome.append)
        if outcome:
            return after(outcome[0], *args)
        gone = _watch(request)
        opening = ctx.live is None
        self._informing += opening
        self._under_way.add(ran)

        def done(_: None) -> None:
            self._under_way.discard(ran)
            self._informing -= opening
            self._answer(request, ctx, gone, after, outcome[0], *args)

        ran.addCallback(done)
        return NOT_DONE_YET

    def _dispatch(
        self,
        request: Request,
        ctx: _Context,
        live: _Live | None,
        data: bytes,
        parsed: soap.Envelope | soap.SoapError,
    ) -> bytes | int:
        if isinstance(parsed, soap.SoapError):
            if live is None:
                log.info(
                    "Rejected CWMP message without session from {address}: {reason}",
                    address=cpe_host(request),
                    reason=str(parsed),
                )
                return text_response(request, parsed.http_status, f"Invalid CWMP message: {parsed}")
            return self._step(request, ctx, live, parsed, data)
        if isinstance(parsed.message, rpc.Inform):
            # A new Inform always starts a new session, whatever cookie came with it.
            return self._inform(request, parsed, data, ctx, previous=live)
        if live is None:
            return text_response(request, 400, "No CWMP session: send an Inform first")
        return self._step(request, ctx, live, parsed, data)

    # --- admission control --------------------------------------------------------------

    def _at_capacity(self) -> bool:
        """True when no slot is free, even after evicting a session idle past its grace."""
        # Live sessions, and Informs whose units run (on PostgreSQL) before they are.
        if len(self._by_device) + self._informing < self._config.max_sessions:
            return False
        # The least recently active session first: if it has been idle longer than the grace
        # period, its slot goes to the CPE knocking now (an idle slot is worth less than a
        # busy one; unless the cap is reached, idle sessions keep theirs to SessionTimeout).
        for idlest in self._by_activity:
            if self._reactor.seconds() - idlest.active < self._config.idle_grace:
                return True
            log.info(
                "Evicting session idle for {idle:.0f}s at the session cap "
                "device_id={device_id} session_id={session_id}",
                idle=self._reactor.seconds() - idlest.active,
                device_id=idlest.device_id,
                session_id=idlest.session_id,
            )
            self.idle_evictions += 1
            self._close(idlest, abort_reason="evicted: idle at the session cap")
            return len(self._by_device) + self._informing >= self._config.max_sessions
        return True

    def _busy(self, request: Request) -> bytes:
        self.busy_rejections += 1
        seconds = self.pacer.retry_after(self._reactor.seconds())
        request.setHeader(b"Retry-After", b"%d" % seconds)
        return text_response(request, 503, "Too many CWMP sessions, retry later")

    # --- session lookup -----------------------------------------------------------------

    def _find_session(self, request: Request, cookies: list[str]) -> _Live | None:
        for value in cookies:
            live = self._by_cookie.get(value)
            if live is not None:
                return live
        if forwarded(request) is not None:
            return None  # the peer's connection carries many CPEs' requests
        # CPEs that drop cookies still keep their connection for the whole session.
        return self._by_channel.get(request.channel)

    def _named_node(self, request: Request, cookies: list[str]) -> tuple[int, str] | None:
        """(the id of another node, "cookie" or "nonce") when the request's session cookie,
        or the Digest nonce it answers, names that node: it is forwarded there if the node
        has a peer address. A node that has stopped (no row, no peer) is named in vain: the
        request is this node's (a new Inform starts a session; another node's nonce is
        challenged again)."""
        if self._forwarder is None or forwarded(request) is not None:
            return None
        for value in cookies:
            prefix, dot, _ = value.partition(".")
            if dot and prefix.isascii() and prefix.isdigit() and len(prefix) < 10:
                node_id = int(prefix)
                if node_id != self.node_id:
                    return node_id, "cookie"
        nonce = httpdigest.digest_nonce(request.getHeader(b"authorization"))
        if nonce is not None:
            issuer = self._nonce_signer.issuer(nonce)
            if issuer is not None and issuer != self.node_id:
                return issuer, "nonce"
        return None

    def _forward(self, request: Request, owner: tuple[str, str], data: bytes) -> int:
        """Hand the request to the node its cookie or nonce names (``acs.peers``)."""
        assert self._forwarder is not None  # _named_node names no node without it
        peer, by = owner
        self.metrics.forwarded.labels(by).inc()
        return self._forwarder.forward(request, peer, data)

    # --- Inform -------------------------------------------------------------------------

    def _inform(
        self,
        request: Request,
        envelope: soap.Envelope,
        data: bytes,
        ctx: _Context,
        *,
        previous: _Live | None,
    ) -> bytes | int:
        now = self._reactor.seconds()
        ctx.live = None
        if previous is not None:
            # The session the cookie/connection pointed at is over: its client has moved on
            # to a new one. Ended first, so every Inform counts against max_sessions (one
            # keep-alive connection informing with new serials cannot pile sessions up).
            self._end(previous, abort_reason="a new Inform on its connection")
            if self._at_capacity():
                return self._busy(request)
        # One read of the system's randomness for both (it was a measurable share of an
        # Inform): the cookie's 128 bits, and the prefix of the cwmp:IDs the ACS sends.
        random = secrets.token_hex(20)
        session = Session(max_rpcs=self._max_rpcs, id_prefix=random[32:])
        event = session.receive(envelope)
        if isinstance(event, ProtocolViolation):
            log.info("Refused Inform: {reason}", reason=event.reason)
            return _violation_response(request, event)
        assert isinstance(event, InformReceived)
        opening = _Opening(
            session=session,
            inform=event.inform,
            serial=event.inform.device_id.serial_number.strip(),  # checked by the session
            data=data,
            random=random,
            now=now,
        )
        admission = self._store.read(self._onboarding.admission, opening.serial)
        return self._then(request, ctx, admission, self._admitted, request, ctx, opening)

    def _admitted(
        self,
        outcome: Device | Refusal | Failure | None,
        request: Request,
        ctx: _Context,
        o: _Opening,
    ) -> bytes | int:
        """The Inform's device looked up (None: a new one): authenticate, then its unit."""
        device = _value(outcome)
        if isinstance(device, Refusal):
            log.info("Refused Inform from {what}", what=device.log)
            return text_response(request, 403, device.reason)
        refusal, first_contact = self._authenticate(request, device, o.now)
        if refusal is not None:
            return refusal
        if device is not None:
            self._replace(device.id)
            self._releases.discard(device.id)  # the new session takes its lease over

        # The CPE's SessionTimeout is its own inactivity timeout, but a slot held for hours
        # is a slot another CPE cannot use: clamped to [cwmp] max_session_timeout.
        asked = o.session.inactivity_timeout or self._config.session_timeout
        o.timeout = float(min(asked, self._config.max_session_timeout))
        o.lease_until = o.now + LEASE_TIMEOUTS * o.timeout
        o.known = device is not None
        opened = self._unit(
            device.id if device else None, self._open, o, device, cpe_host(request), first_contact
        )
        return self._then(request, ctx, opened, self._opened, request, ctx, o)

    def _replace(self, device_id: int) -> None:
        """End this node's live session with the device, if any: a new Inform replaces it."""
        old = self._by_device.get(device_id)
        if old is not None:
            log.info(
                "New Inform replaces live session device_id={device_id} session_id={session_id}",
                device_id=old.device_id,
                session_id=old.session_id,
            )
            self._end(old, abort_reason="replaced by a new session")

    def _open(
        self, o: _Opening, device: Device | None, address: str | None, first_contact: bool
    ) -> Admitted:
        """The Inform's unit: the device registered (if new), its Inform recorded and its
        session lease taken (with the record, for nearly every Inform). A lease another
        node holds raises _HeldElsewhere, which rolls the whole unit back."""
        admitted = self._onboarding.admit(
            device,
            o.inform,
            address=address,
            first_contact=first_contact,
            now=o.now,
            lease=(self.node_id, o.lease_until),
        )
        if not admitted.leased:
            self._take_session(admitted.device.id, o.now, o.lease_until)
        return admitted

    def _opened(
        self,
        outcome: Admitted | Failure,
        request: Request,
        ctx: _Context,
        o: _Opening,
    ) -> bytes | int:
        """The Inform's unit ran: the session starts (InformResponse), unless its device's
        session runs elsewhere or it was just registered by another process."""
        if isinstance(outcome, Failure):
            held = outcome.check(_HeldElsewhere) and outcome.value
            if isinstance(held, _HeldElsewhere):
                return self._held_elsewhere(request, held.device_id, held.holder, o.data, o.now)
            if outcome.check(Conflict) and not o.known:
                # Another process registered this serial since the lookup (a CPE that
                # retried while its first Inform was still being answered elsewhere).
                request.setHeader(b"Retry-After", b"1")
                return text_response(request, 503, "This device was just registered, retry")
            outcome.raiseException()
        assert not isinstance(outcome, Failure)
        device, registered_in = outcome.device, outcome.registered_in
        self.pacer.admitted(o.now)
        session = o.session
        live = _Live(
            # The node's id first: another node forwards the session's requests here.
            session_id=f"{self.node_id}.{o.random[:32]}",
            session=session,
            device_id=device.id,
            serial=o.serial,
            tasks=self._tasks.open_session(device.id, session.version),
            # A peer's connection carries many CPEs' requests: no session is found by it.
            channel=request.channel if forwarded(request) is None else None,
            timeout=o.timeout,
            lease_until=o.lease_until,
            started=o.now,
            quiet=not outcome.may_run,
            transcript=[] if device.debug else None,
        )
        ctx.live = live
        # Another Inform of the device may have become a session while this one's unit ran:
        # this one, the newer, takes its place (registered first, so that one's end does
        # not give up the device's lease).
        older = self._by_device.get(device.id)
        self._by_cookie[live.session_id] = live
        self._by_device[device.id] = live
        if live.channel is not None:
            self._by_channel[live.channel] = live
        if older is not None:
            self._end(older, abort_reason="replaced by a new session")
        self._touch(live)
        live.record("cpe", o.data)
        # The session's first info line (its last is "Session done"); a new device's
        # auto-registration is told here rather than on a line of its own.
        log.info(
            "Inform {serial} events={events} cwmp={version}"
            + (" auto-registered in {organization}" if registered_in is not None else "")
            + " device_id={device_id} session_id={session_id}",
            serial=o.serial,
            events=",".join(e.code for e in o.inform.events),
            version=session.version,
            organization=registered_in,
            device_id=device.id,
            session_id=live.session_id,
        )
        self.metrics.cpe_request("Inform")
        body = session.respond_inform()
        request.addCookie(COOKIE_NAME.encode(), live.session_id.encode(), path=b"/", httpOnly=True)
        live.record("acs", body)
        return xml_response(request, body)

    def _take_session(self, device_id: int, now: float, until: float) -> None:
        """Take the device's session lease (inside the Inform's transaction); _HeldElsewhere
        when another node's still runs. A dead process of this host holds nothing."""
        holder = self._store.take_device_session(device_id, self.node_id, now=now, until=until)
        if holder is not None and node_gone(holder.name):
            holder = self._store.take_device_session(
                device_id, self.node_id, now=now, until=until, replaces=holder.node_id
            )
        if holder is not None:
            raise _HeldElsewhere(device_id, holder)

    def _held_elsewhere(
        self, request: Request, device_id: int, holder: SessionHolder, data: bytes, now: float
    ) -> bytes | int:
        """An Inform for a device whose session runs on another node: that node takes it
        (and ends or replaces its session), or the CPE retries once the lease is over."""
        if self._forwarder is not None and holder.peer and forwarded(request) is None:
            log.info(
                "Inform for device_id={device_id} sent on to node {node}, which runs its session",
                device_id=device_id,
                node=holder.name,
            )
            self.metrics.forwarded.labels("lease").inc()
            return self._forwarder.forward(request, holder.peer, data)
        wait = max(1, min(int(holder.until - now) + 1, UNREACHABLE_RETRY_AFTER))
        request.setHeader(b"Retry-After", b"%d" % wait)
        return text_response(request, 503, "A session with this device runs elsewhere, retry later")

    # --- authentication -----------------------------------------------------------------

    def _authenticate(
        self, request: Request, device: Device | None, now: float
    ) -> tuple[bytes | None, bool]:
        """(None, first_contact) when the CPE may proceed, else (the 401/503 body, False).

        ``first_contact`` is True when the CPE got in with first-contact credentials (or
        none), so that its own are (re)assigned at provisioning."""
        accepted = self._onboarding.accepted_credentials(device)
        if NO_CREDENTIALS in accepted and len(accepted) == 1:
            return None, True
        source = cpe_host(request)
        wait = self.auth_throttle.retry_after(source, now)
        if wait is not None:
            request.setHeader(b"Retry-After", b"%d" % wait)
            refusal = text_response(request, 503, "Too many failed authentications, retry later")
            return refusal, False
        basic_ok = self._config.allow_basic_auth or cpe_secure(request)
        header = request.getHeader(b"authorization")
        creds = httpdigest.parse_authorization(header.decode("latin-1")) if header else None
        stale = False

        def candidates() -> Iterator[Credential]:
            yield from accepted
            readmit = self._onboarding.readmission_credential(device)
            if readmit is not None:
                yield readmit

        for candidate in candidates():
            if candidate is NO_CREDENTIALS:
                if creds is None:
                    return None, True
                continue
            if creds is None or not hmac.compare_digest(
                creds.username.encode("utf-8"), candidate.username.encode("utf-8")
            ):
                continue
            verdict = self._verify(creds, candidate.password, request, now, basic_ok)
            if verdict == "ok":
                self.auth_throttle.succeeded(source)
                return None, candidate.first_contact
            stale = stale or verdict == "stale"
        if header and not stale:
            self.auth_throttle.failed(
                source,
                now,
                f"CPE {creds.username if creds else None!r} from {source}"
                + (" (Basic refused over plain HTTP)" if creds and creds.scheme == "basic" else ""),
            )
        request.responseHeaders.addRawHeader(
            b"WWW-Authenticate",
            httpdigest.digest_challenge(REALM, self._nonce_signer.make(now), stale=stale).encode(),
        )
        if basic_ok:
            request.responseHeaders.addRawHeader(
                b"WWW-Authenticate", httpdigest.basic_challenge(REALM).encode()
            )
        return text_response(request, 401, "Authentication required"), False

    def _verify(
        self,
        creds: httpdigest.Credentials,
        password: str,
        request: Request,
        now: float,
        basic_ok: bool,
    ) -> str:
        """'ok', 'stale' (right password, expired or unknown nonce: challenge again) or 'bad'."""
        if creds.scheme == "basic":
            ok = basic_ok and httpdigest.check_credentials(
                creds, method="POST", password=password, realm=REALM
            )
            return "ok" if ok else "bad"
        params = creds.params
        nc = nonce_count(params.get("nc"))
        # qop="auth" only: the RFC 2069 form has no nc, so nothing would stop a replay.
        if params.get("qop", "").lower() != "auth" or nc is None:
            return "bad"
        if not httpdigest.check_credentials(
            creds, method=request.method.decode("ascii"), password=password, realm=REALM
        ):
            return "bad"
        # The response must be for this request, not one captured elsewhere.
        if not digest_uri_matches(params.get("uri", ""), request):
            return "bad"
        checked = self._nonce_signer.check(params.get("nonce", ""))
        if checked is None:
            return "bad"
        issued, issuer = checked
        if not self._nonce_signer.fresh(issued, now):
            return "stale"
        if issuer != self.node_id:
            # Another node's (one that stopped, or when none forwards): only it knows
            # whether it was used. A challenge of this node's own instead.
            return "stale"
        if len(self._nonces) > 1024 and now - self._nonces_swept > 60.0:
            self._nonces.expire(now - NONCE_TTL - 60.0)
            self._nonces_swept = now
        # Each (nonce, nc) once: a captured header is worth nothing.
        return "ok" if self._nonces.accept(params["nonce"], issued, nc) else "stale"

    # --- session steps ------------------------------------------------------------------

    def _step(
        self,
        request: Request,
        ctx: _Context,
        live: _Live,
        received: soap.Envelope | soap.SoapError | None,
        data: bytes,
    ) -> bytes | int:
        live.record("cpe", data)
        self._touch(live)
        event: Event
        if isinstance(received, soap.SoapError):
            event = live.session.receive_error(received)
        else:
            event = live.session.receive(received)
        return self._handle(request, ctx, live, event)

    def _handle(self, request: Request, ctx: _Context, live: _Live, event: Event) -> bytes | int:
        now = self._reactor.seconds()
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
            self.metrics.cpe_request(type(event.message).__name__)
            ran = self._unit(live.device_id, self._on_cpe_request, live, event.message, now)
            return self._then(request, ctx, ran, self._answered, request, live, event)
        if isinstance(event, CpeDone | RpcResult):
            return self._next(request, ctx, live, event, now)
        raise AssertionError(f"unexpected session event {event!r}")

    def _on_cpe_request(self, live: _Live, message: rpc.Message, now: float) -> rpc.Message:
        """The unit of a CPE's own request: its answer."""
        answer = live.tasks.on_cpe_request(message, now=now)
        self._renew(live, now)
        return answer

    def _answered(
        self, outcome: rpc.Message | Failure, request: Request, live: _Live, event: CpeRequest
    ) -> bytes:
        answer = _value(outcome)
        if live.ended:  # timed out or replaced while its unit ran
            return empty_response(request)
        log.debug(
            "CPE request {method} answered {answer} device_id={device_id} session_id={session_id}",
            method=type(event.message).__name__,
            answer=type(answer).__name__,
            device_id=live.device_id,
            session_id=live.session_id,
        )
        body = live.session.respond(answer)
        live.record("acs", body)
        return xml_response(request, body)

    def _next(
        self,
        request: Request,
        ctx: _Context,
        live: _Live,
        event: CpeDone | RpcResult,
        now: float,
    ) -> bytes | int:
        if isinstance(event, RpcResult):
            fault = event.response.code if isinstance(event.response, rpc.Fault) else None
            self.metrics.rpc_answered(type(event.request).__name__, fault)
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
        if isinstance(event, CpeDone) and live.quiet and live.tasks.idle:
            # The CPE is done and no task is under way, the end of nearly every session:
            # a look at the queue (a read) says whether anything needs a write.
            peek = self._store.read(self._waiting_task, live, now)
            return self._then(request, ctx, peek, self._peeked, request, ctx, live, event, now)
        ran = self._unit(live.device_id, self._advance, live, event, now)
        return self._then(request, ctx, ran, self._advanced, request, live, now)

    def _waiting_task(self, live: _Live, now: float) -> bool:
        return self._store.next_task(live.device_id, now=now) is not None

    def _peeked(
        self,
        outcome: bool | Failure,
        request: Request,
        ctx: _Context,
        live: _Live,
        event: CpeDone,
        now: float,
    ) -> bytes | int:
        """The queue looked at: a waiting task starts in the session's unit; with none, the
        session ends and its lease is given up with others' a moment later."""
        if _value(outcome) and not live.ended:
            ran = self._unit(live.device_id, self._advance, live, event, now)
            return self._then(request, ctx, ran, self._advanced, request, live, now)
        if not live.ended:
            self._releases.add(live.device_id, live.lease_until)
        return self._advanced(None, request, live, now)

    def _advance(self, live: _Live, event: CpeDone | RpcResult, now: float) -> rpc.Message | None:
        """The unit of an answer or of the CPE being done: the ACS's next request, if any."""
        if isinstance(event, RpcResult):
            live.tasks.on_response(event.response, now=now)
        message = None
        if not live.session.rpc_limit_reached:
            message = live.tasks.next_request(now=now)
        if message is None:
            # The session's last request: its device is free for any node from now on.
            self._store.end_device_session(live.device_id, self.node_id)
        else:
            self._renew(live, now)
        return message

    def _advanced(
        self, outcome: rpc.Message | Failure | None, request: Request, live: _Live, now: float
    ) -> bytes:
        message = _value(outcome)
        if live.ended:  # timed out or replaced while its unit ran
            return empty_response(request)
        session = live.session
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
                return empty_response(request)
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
            return empty_response(request)
        body = session.send_request(message)
        live.record("acs", body)
        log.debug(
            "Sent {method} device_id={device_id} session_id={session_id}",
            method=type(message).__name__,
            device_id=live.device_id,
            session_id=live.session_id,
        )
        return xml_response(request, body)

    def _renew(self, live: _Live, now: float) -> None:
        """Renew the device's session lease once half of it is gone (inside a transaction of
        the session). Every request comes within a timeout of the last, so the lease has
        not run out and nobody else can have taken it."""
        if now + live.timeout > live.lease_until:
            live.lease_until = now + LEASE_TIMEOUTS * live.timeout
            self._store.take_device_session(
                live.device_id, self.node_id, now=now, until=live.lease_until
            )

    # --- timers and teardown ------------------------------------------------------------

    def _touch(self, live: _Live) -> None:
        live.active = self._reactor.seconds()
        self._by_activity[live] = None
        self._by_activity.move_to_end(live)
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
        self._close(live, abort_reason="timeout")

    def _close(self, live: _Live, *, abort_reason: str) -> None:
        """End an idle session and its keep-alive connection, unless a newer session took
        that connection over."""
        idle = live.channel if self._by_channel.get(live.channel) is live else None
        self._end(live, abort_reason=abort_reason)
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
        self._by_activity.pop(live, None)
        if live.channel is not None and self._by_channel.get(live.channel) is live:
            del self._by_channel[live.channel]

    def _end(self, live: _Live, *, abort_reason: str | None) -> None:
        """Finish a session: free its slot, abort its tasks if it died, keep its transcript."""
        if live.ended:
            return
        self._forget(live)
        now = self._reactor.seconds()
        self.metrics.session_ended(abort_reason, now - live.started)
        if abort_reason is not None:
            # A newer session of the device on this node (one that replaced it) keeps the
            # device's lease.
            release = live.device_id not in self._by_device
            aborted = self._unit(live.device_id, self._abort, live, abort_reason, release, now)
            aborted.addErrback(self._unit_failed, "Aborting session tasks", live)
        if live.transcript is not None:
            text = "\n".join(f"--- {way}\n{body}" for way, body in live.transcript)
            saved = self._unit(live.device_id, self._save_transcript, live, text)
            # The device may have been deleted meanwhile; a lost transcript is no reason to fail.
            saved.addErrback(self._unit_failed, "Saving transcript", live)

    def _abort(self, live: _Live, reason: str, release: bool, now: float) -> None:
        live.tasks.abort(now=now, reason=reason)
        if release:
            self._store.end_device_session(live.device_id, self.node_id)

    def _save_transcript(self, live: _Live, text: str) -> None:
        self._store.add_session_transcript(live.device_id, text, started=live.started)

    def _unit_failed(self, failure: Failure, what: str, live: _Live) -> None:
        log.failure(
            what + " failed device_id={device_id} session_id={session_id}",
            failure=failure,
            device_id=live.device_id,
            session_id=live.session_id,
        )


# --- helpers ------------------------------------------------------------------------------


def _owner(peer: str | None, by: str) -> tuple[str, str] | None:
    """The node a request goes to: its peer URL (None: a node that has stopped, named in
    vain) and what named it."""
    return None if peer is None else (peer, by)


def _watch(request: Request) -> list[bool]:
    """A list that gets an item once the request's connection is gone (its answer would
    go nowhere), for a request left NOT_DONE_YET."""
    gone: list[bool] = []
    request.notifyFinish().addErrback(lambda _: gone.append(True))
    return gone


def _passing(outcome: Any, told: Deferred[None]) -> Any:
    """Tell ``told`` that a Deferred fired, and pass its ``outcome`` on unchanged."""
    told.callback(None)
    return outcome


def _value(outcome: Any) -> Any:
    """What a unit returned, or what it raised raised again (`CwmpResource._then`)."""
    if isinstance(outcome, Failure):
        outcome.raiseException()
    return outcome


def _violation_response(request: Request, event: ProtocolViolation) -> bytes:
    if event.body:
        return xml_response(request, event.body, event.http_status)
    return text_response(request, event.http_status, event.reason)


def _parse(data: bytes) -> soap.Envelope | soap.SoapError:
    """The envelope, or the SoapError saying why there is none (safe in any thread)."""
    try:
        return soap.parse(data)
    except soap.SoapError as exc:
        return exc


def _describe(message: rpc.Message) -> str:
    if isinstance(message, rpc.Fault):
        return f"Fault {message.code} {message.string}"
    return type(message).__name__
