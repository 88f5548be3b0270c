"""The CPE side of one CWMP session, sans-IO: the mirror of ``acs.cwmp.session``.

It moves through the same table (``acs.cwmp.flow``). The caller (the simulator) does the
HTTP: it POSTs what ``inform()``, ``next_post()`` and ``answer()`` return and feeds each
response to ``receive()``, which checks it and says what came (an event) or raises
``CpeSessionError``. Versions follow ``acs.cwmp.versions``: the session adopts the version
and namespace the InformResponse settles on. HoldRequests (TR-069 §3.7.1.4) applies to the
CPE's next POST only: requests held back go once the ACS has sent its last request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from acs.cwmp import rpc, soap
from acs.cwmp.flow import Flow, Move, State
from acs.cwmp.versions import adopt_version, session_namespace

MAX_EXCHANGES = 1000  # a runaway ACS can't keep a session going forever


class CpeSessionError(Exception):
    """The ACS broke the session (an HTTP error, an unexpected or unreadable answer)."""


@dataclass(frozen=True)
class InformAccepted:
    envelope: soap.Envelope


@dataclass(frozen=True)
class RequestAnswered:
    """The ACS's answer (its response or a Fault) to the CPE request just sent."""

    request: rpc.Message
    answer: rpc.Message


@dataclass(frozen=True)
class AcsRequest:
    """An ACS request: the next POST must be ``answer(...)``'s."""

    message: rpc.Message
    cwmp_id: str | None


@dataclass(frozen=True)
class AcsDone:
    """The ACS has nothing more; ``held`` when CPE requests held back may go now."""

    held: bool


CpeEvent = InformAccepted | RequestAnswered | AcsRequest | AcsDone


def describe(message: rpc.Message) -> str:
    if isinstance(message, rpc.Fault):
        return f"Fault {message.code} {message.string}".strip()
    return type(message).__name__


class CpeSession:
    """One session of a CPE speaking CWMP ``version`` (its Inform in namespace ``ns``)."""

    def __init__(self, version: str, ns: str, *, max_exchanges: int = MAX_EXCHANGES) -> None:
        self._flow = Flow()
        self.own_version = version
        self._own_ns = ns
        # What the InformResponse settled on (None before it).
        self.version: str | None = None
        self.ns: str | None = None
        self.max_exchanges = max_exchanges
        self.exchanges = 0
        self._hold = False  # the ACS's last message set HoldRequests
        self._held = False  # the empty POST was sent with CPE requests held back
        self._sent: rpc.Message | None = None

    @property
    def state(self) -> State:
        return self._flow.state

    @property
    def done(self) -> bool:
        return self._flow.state is State.DONE

    # --- what to POST ----------------------------------------------------------------------

    def inform(self, inform: rpc.Inform, header: soap.Header) -> bytes:
        self._flow.advance(Move.INFORM)
        self._sent = inform
        return soap.serialize(soap.Envelope(inform, header, self._own_ns))

    def next_post(self, pending: Sequence[rpc.Message], cwmp_id: str) -> bytes | None:
        """The CPE's next request (the first of ``pending``) or, when there is none or the
        ACS holds requests, the empty POST (None: no body)."""
        self._count()
        if pending and not self._hold:
            self._flow.advance(Move.CPE_REQUEST)
            self._sent = pending[0]
            return self._serialize(pending[0], cwmp_id)
        self._flow.advance(Move.EMPTY_POST)
        self._held = bool(pending)
        return None

    def answer(self, message: rpc.Message, cwmp_id: str | None) -> bytes:
        """The answer to the ACS request of the last ``AcsRequest`` event."""
        self._count()
        self._flow.advance(Move.ACS_REQUEST_ANSWER)
        return self._serialize(message, cwmp_id)

    # --- what came back ----------------------------------------------------------------

    def receive(self, status: int, body: bytes) -> CpeEvent:
        state = self._flow.state
        if state is State.INFORM_SENT:
            envelope = self._envelope(status, body, self._sent)
            if not isinstance(envelope.message, rpc.InformResponse):
                raise CpeSessionError(f"Inform answered with {describe(envelope.message)}")
            self.version = adopt_version(self.own_version, envelope.ns, envelope.header.use_version)
            self.ns = session_namespace(self.own_version, self.version, envelope.ns)
            self._hold = envelope.header.hold_requests is True
            self._flow.advance(Move.INFORM_RESPONSE)
            return InformAccepted(envelope)
        if state is State.CPE_REQUEST_SENT:
            request = self._sent
            assert request is not None
            envelope = self._envelope(status, body, request)
            self._hold = envelope.header.hold_requests is True
            self._flow.advance(Move.CPE_REQUEST_ANSWER)
            return RequestAnswered(request, envelope.message)
        if state is State.ACS_REQUESTS:
            if status == 204 or (status == 200 and not body.strip()):
                # A response without an envelope carries no HoldRequests.
                held, self._held, self._hold = self._held, False, False
                self._flow.advance(Move.END_HELD if held else Move.END)
                return AcsDone(held)
            envelope = self._envelope(status, body, None)
            if type(envelope.message) not in rpc.ACS_REQUESTS:
                raise CpeSessionError(f"expected an ACS request, got {describe(envelope.message)}")
            self._flow.advance(Move.ACS_REQUEST)
            return AcsRequest(envelope.message, envelope.header.id)
        raise CpeSessionError(f"no response expected in state {state.value}")

    # --- internals ---------------------------------------------------------------------

    def _count(self) -> None:
        self.exchanges += 1
        if self.exchanges > self.max_exchanges:
            raise CpeSessionError(f"session exceeded {self.max_exchanges} exchanges")

    def _envelope(self, status: int, body: bytes, request: rpc.Message | None) -> soap.Envelope:
        if status != 200:
            what = type(request).__name__ if request is not None else "ACS"
            raise CpeSessionError(f"{what} answered HTTP {status}")
        try:
            return soap.parse(body)
        except soap.SoapError as e:
            raise CpeSessionError(f"ACS sent an unreadable envelope: {e.message}") from None

    def _serialize(self, message: rpc.Message, cwmp_id: str | None) -> bytes:
        ns = self.ns or self._own_ns
        return soap.serialize(soap.Envelope(message, soap.Header(id=cwmp_id), ns))
