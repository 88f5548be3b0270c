"""The ACS side of one CWMP session as an explicit, sans-IO state machine.

The style is h11's: the caller feeds what arrived (a parsed ``Envelope``, raw bytes, or
nothing for an empty POST) and gets back one *event*; it then tells the session what to
answer (``respond_inform``, ``respond``, ``send_request``, ``finish``) and gets the bytes
to put in the HTTP response. No Twisted, no sockets, no clock, no SQL here.

The states and the moves between them are the table of ``acs.cwmp.flow``, which the CPE
side (``acs.cwmp.cpe_session``) shares; in short::

    AWAITING_INFORM --Inform--> CPE_REQUESTS --empty POST--> ACS_REQUESTS --finish()--> DONE

* CPE_REQUESTS: the CPE may send its own requests (TransferComplete, GetRPCMethods...),
  answered one per HTTP response; an empty POST says it has no more.
* ACS_REQUESTS: the ACS sends one RPC per HTTP response and waits for its response or a
  Fault; ``finish()`` means "HTTP 204, the session is over".

Between a CPE message and the answer the caller owes, the session is in the table's
``*_SENT`` states (INFORM_SENT, CPE_REQUEST_SENT); while the CPE owes the answer to our
request, in ACS_REQUEST_SENT.

Every message the CPE should not have sent becomes a ``ProtocolViolation`` that carries the
HTTP status and body to answer with. ``fatal`` violations end the session (state DONE);
non-fatal ones (an unknown CPE method -> Fault 8000) are answered and the session goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from acs.cwmp import identity, rpc, soap
from acs.cwmp.flow import ACS, Flow, Move, State
from acs.cwmp.versions import VERSIONS, defines, namespace_versions, negotiate_version

__all__ = [
    "DEFAULT_MAX_RPCS",
    "CpeDone",
    "CpeRequest",
    "Event",
    "InformReceived",
    "LocalProtocolError",
    "ProtocolViolation",
    "RpcResult",
    "Session",
    "State",
    "defines",
    "negotiate_version",
]

DEFAULT_MAX_RPCS = 500


class LocalProtocolError(Exception):
    """The *caller* misused the session (answered twice, sent past the RPC cap...).

    A bug on our side, never the CPE's: the CPE's mistakes are ``ProtocolViolation`` events.
    """


# --- events -----------------------------------------------------------------------------


@dataclass(frozen=True)
class InformReceived:
    """The session's first message. Answer with ``respond_inform()``."""

    inform: rpc.Inform
    header: soap.Header


@dataclass(frozen=True)
class CpeRequest:
    """A CPE-initiated request other than Inform. Answer with ``respond(response)``."""

    message: rpc.Message
    cwmp_id: str


@dataclass(frozen=True)
class CpeDone:
    """The CPE's empty POST: it has no more requests. Answer ``send_request`` or ``finish``."""


@dataclass(frozen=True)
class RpcResult:
    """The CPE's answer (a ``*Response`` or ``rpc.Fault``) to our outstanding request.

    Answer with ``send_request`` or ``finish``.
    """

    request: rpc.Message
    response: rpc.Message


@dataclass(frozen=True)
class ProtocolViolation:
    """The CPE broke the protocol. Answer with ``http_status`` and ``body`` as they are.

    ``body`` is a serialized SOAP Fault when ``fault`` is set (the CPE sent a request we
    refuse), else empty (a plain HTTP error; the HTTP layer writes a short text).
    """

    reason: str
    http_status: int = 400
    fault: rpc.Fault | None = None
    body: bytes = b""
    fatal: bool = True


Event = InformReceived | CpeRequest | CpeDone | RpcResult | ProtocolViolation


class Session:
    """One CWMP session on the ACS side. Feed it messages; it says what happened."""

    def __init__(self, *, max_rpcs: int = DEFAULT_MAX_RPCS, id_prefix: str = "acs") -> None:
        self._flow = Flow()
        self.max_rpcs = max_rpcs
        # The exact namespace URI of the CPE's Inform; every answer uses it.
        self.ns: str | None = None
        # The protocol version in force: negotiated (1.4 CPEs) or implied by the namespace.
        self.version: str | None = None
        # Sent back as UseCWMPVersion when the CPE offered SupportedCWMPVersions.
        self.use_version: str | None = None
        # The CPE's SessionTimeout (seconds): the inactivity timeout it applies, so ours too.
        self.session_timeout: int | None = None
        self.hold_requests = False
        # The request we sent and are waiting an answer to, and the ID we sent it with.
        self.outstanding: rpc.Message | None = None
        self._outstanding_id = ""
        # Messages exchanged (CPE requests + our requests); capped to stop runaway sessions.
        self.rpc_count = 0
        self._id_prefix = id_prefix
        self._next_id = 0
        self._cpe_request: rpc.Message | None = None
        self._cpe_id = ""

    # --- properties ---------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._flow.state

    @property
    def rpc_limit_reached(self) -> bool:
        return self.rpc_count >= self.max_rpcs

    @property
    def inactivity_timeout(self) -> int | None:
        """The CPE's SessionTimeout from the Inform, if it sent one."""
        return self.session_timeout

    # --- input --------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> Event:
        """Parse an HTTP request body and feed it; whitespace-only counts as an empty POST."""
        if not data.strip():
            return self.receive(None)
        try:
            envelope = soap.parse(data)
        except soap.SoapError as exc:
            return self.receive_error(exc)
        return self.receive(envelope)

    def receive(self, envelope: soap.Envelope | None) -> Event:
        """Feed one parsed POST body (``None`` for an empty POST)."""
        self._expect_cpe_turn()
        if self.state is State.DONE:
            return self._violation("Session already finished")
        if envelope is None:
            return self._receive_empty()
        message = envelope.message
        if self.state is State.AWAITING_INFORM:
            if not isinstance(message, rpc.Inform):
                return self._violation("Bad session state: expected Inform")
            return self._receive_inform(envelope, message)
        # A Fault's namespace is inferred by the codec (its detail may be unqualified), so
        # only real CWMP methods are held to the session's namespace.
        if envelope.ns != self.ns and not isinstance(message, rpc.Fault):
            return self._violation(
                f"CWMP namespace changed within the session: {envelope.ns} (was {self.ns})"
            )
        if self.state is State.CPE_REQUESTS:
            return self._receive_in_cpe_requests(envelope, message)
        return self._receive_in_acs_requests(envelope, message)

    def receive_error(self, error: soap.SoapError) -> ProtocolViolation:
        """Feed a body the codec refused; says how to answer it."""
        self._expect_cpe_turn()
        reason = str(error) or "Invalid SOAP message"
        if error.http_status == 413:
            return self._violation(reason, http_status=413)
        if self.state is State.CPE_REQUESTS:
            # The CPE may only send requests here: refuse this one with a Fault and carry on.
            if self.rpc_limit_reached:
                return self._rpc_cap_violation(error.cwmp_id or "")
            self.rpc_count += 1
            if error.fault_code == 8000:
                fault = rpc.Fault(8000, "Method not supported", faultcode="Server")
            else:
                fault = rpc.Fault(error.fault_code, reason[:256], faultcode="Client")
            return self._fault_violation(reason, fault, error.cwmp_id or "", fatal=False)
        return self._violation(reason)

    # --- output -------------------------------------------------------------------------

    def respond_inform(self, *, hold_requests: bool = False) -> bytes:
        """The InformResponse. With ``hold_requests`` the CPE must not send requests."""
        self._expect(Move.INFORM_RESPONSE)
        self.hold_requests = hold_requests
        # From the codec's cached template (every session sends one). HoldRequests is only
        # sent when set: "false" is the default and some CPEs choke on extras.
        return soap.inform_response(
            self.ns or soap.CWMP_NS["1.0"],
            self._cpe_id,
            hold_requests=hold_requests,
            use_version=self.use_version,
        )

    def respond(self, message: rpc.Message) -> bytes:
        """Answer the CPE request of the last ``CpeRequest`` event (its response or a Fault)."""
        if not self._flow.allows(Move.CPE_REQUEST_ANSWER):
            raise LocalProtocolError(f"no CPE request to answer (state {self.state.value})")
        request = self._cpe_request
        expected = rpc.CPE_REQUESTS.get(type(request))
        if not isinstance(message, rpc.Fault) and type(message) is not expected:
            raise LocalProtocolError(
                f"{type(message).__name__} does not answer {type(request).__name__}"
            )
        self._flow.advance(Move.CPE_REQUEST_ANSWER)
        self._cpe_request = None
        return self._serialize(message, soap.Header(id=self._cpe_id))

    def send_request(self, message: rpc.Message) -> bytes:
        """Send one ACS request; the CPE's next POST must answer it."""
        if not self._flow.allows(Move.ACS_REQUEST):
            raise LocalProtocolError("send_request() is only allowed after CpeDone or RpcResult")
        if type(message) not in rpc.ACS_REQUESTS:
            raise LocalProtocolError(f"{type(message).__name__} is not an ACS request")
        if not defines(self.version, type(message)):
            raise LocalProtocolError(f"CWMP {self.version} has no {type(message).__name__}")
        if self.rpc_limit_reached:
            raise LocalProtocolError(f"RPC cap of {self.max_rpcs} per session reached")
        self._flow.advance(Move.ACS_REQUEST)
        self._next_id += 1
        self.rpc_count += 1
        self.outstanding = message
        self._outstanding_id = f"{self._id_prefix}-{self._next_id}"
        return self._serialize(message, soap.Header(id=self._outstanding_id))

    def finish(self) -> bytes:
        """Nothing more to send: the session ends (answer HTTP 204 with no body)."""
        if not self._flow.allows(Move.END):
            raise LocalProtocolError("finish() is only allowed after CpeDone or RpcResult")
        self._flow.advance(Move.END)
        return b""

    def close(self) -> None:
        """Drop the session without answering (timeout, teardown)."""
        self.outstanding = None
        self._flow.close()

    # --- internals ----------------------------------------------------------------------

    def _receive_inform(self, envelope: soap.Envelope, inform: rpc.Inform) -> Event:
        header = envelope.header
        self.ns = envelope.ns or soap.CWMP_NS["1.0"]
        if soap.version_of(self.ns) not in VERSIONS:
            # cwmp-9-9 and the like: no schema, nothing to answer in (1.3 and 1.4 CPEs use
            # cwmp-1-2, or the cwmp-1-3/1-4 aliases some stacks send).
            return self._violation(f"unsupported CWMP namespace {self.ns[:60]!r}")
        possible = namespace_versions(self.ns)
        # Without an offer: the namespace's version, or 1.3 when the CPE sent the 1.3
        # SessionTimeout header in the 1.2 namespace (spec/cwmp.md §1.4).
        self.version = soap.version_of(self.ns)
        if header.session_timeout is not None and self.version == "1.2":
            self.version = "1.3"
        self._cpe_id = header.id or ""
        # SupportedCWMPVersions is a 1.4 header: a 1.0/1.1 namespace leaves no choice.
        if header.supported_versions and len(possible) > 1:
            chosen = negotiate_version(header.supported_versions, possible)
            if chosen is None:
                fault = rpc.Fault(8006, "ACS version incompatible with CPE", faultcode="Client")
                return self._fault_violation(
                    f"no common CWMP version in {header.supported_versions!r}",
                    fault,
                    self._cpe_id,
                    fatal=True,
                    http_status=200,
                )
            self.version = self.use_version = chosen
        ident = inform.device_id
        problem = identity.device_id_problem(
            replace(ident, serial_number=ident.serial_number.strip())
        )
        if problem is not None:
            fault = rpc.Fault(8003, f"Invalid arguments: DeviceId {problem}", faultcode="Client")
            return self._fault_violation(
                f"DeviceId refused: {problem}", fault, self._cpe_id, fatal=True
            )
        self.session_timeout = header.session_timeout
        self._flow.advance(Move.INFORM)
        return InformReceived(inform, header)

    def _receive_empty(self) -> Event:
        if self.state is State.AWAITING_INFORM:
            return self._violation("Bad session state: empty POST before Inform")
        if self.outstanding is not None:
            return self._violation(
                f"empty POST while awaiting the answer to {type(self.outstanding).__name__}"
            )
        self._flow.advance(Move.EMPTY_POST)
        return CpeDone()

    def _receive_in_cpe_requests(self, envelope: soap.Envelope, message: rpc.Message) -> Event:
        cwmp_id = envelope.header.id or ""
        if isinstance(message, rpc.Inform):
            return self._violation("Bad session state: Inform within a session")
        known = type(message) in rpc.CPE_REQUESTS and defines(self.version, type(message))
        if isinstance(message, rpc.Fault) or not known:
            if type(message) in rpc.ACS_REQUESTS or type(message) in rpc.CPE_REQUESTS:
                # A request only the ACS may send (Reboot...), or one the session's version
                # does not have: unknown method on our side.
                if self.rpc_limit_reached:
                    return self._rpc_cap_violation(cwmp_id)
                self.rpc_count += 1
                fault = rpc.Fault(8000, "Method not supported", faultcode="Server")
                return self._fault_violation(
                    f"CPE sent {type(message).__name__}, not a CPE method of CWMP {self.version}",
                    fault,
                    cwmp_id,
                    fatal=False,
                )
            return self._violation(
                f"{type(message).__name__} answers nothing: no request was sent to the CPE"
            )
        if self.hold_requests:
            fault = rpc.Fault(8003, "HoldRequests is set: no CPE requests", faultcode="Client")
            return self._fault_violation(
                f"CPE sent {type(message).__name__} while HoldRequests was set",
                fault,
                cwmp_id,
                fatal=False,
            )
        if self.rpc_limit_reached:
            return self._rpc_cap_violation(cwmp_id)
        self.rpc_count += 1
        self._cpe_request = message
        self._cpe_id = cwmp_id
        self._flow.advance(Move.CPE_REQUEST)
        return CpeRequest(message, cwmp_id)

    def _receive_in_acs_requests(self, envelope: soap.Envelope, message: rpc.Message) -> Event:
        request = self.outstanding
        assert request is not None  # ACS_REQUEST_SENT: the CPE's turn is to answer it
        expected = rpc.ACS_REQUESTS[type(request)]
        if not isinstance(message, rpc.Fault) and type(message) is not expected:
            return self._violation(
                f"got {type(message).__name__} while awaiting {expected.__name__}"
            )
        cwmp_id = envelope.header.id
        # An absent/empty ID is tolerated (MikroTik-style empty headers); a different one isn't.
        if cwmp_id and cwmp_id != self._outstanding_id:
            return self._violation(
                f"response ID {cwmp_id!r} does not match request ID {self._outstanding_id!r}"
            )
        self.outstanding = None
        self._outstanding_id = ""
        self._flow.advance(Move.ACS_REQUEST_ANSWER)
        return RpcResult(request, message)

    def _rpc_cap_violation(self, cwmp_id: str) -> ProtocolViolation:
        fault = rpc.Fault(8004, "Resources exceeded: too many RPCs in one session")
        return self._fault_violation(
            f"RPC cap of {self.max_rpcs} per session reached", fault, cwmp_id, fatal=True
        )

    def _violation(self, reason: str, *, http_status: int = 400) -> ProtocolViolation:
        self.close()
        return ProtocolViolation(reason, http_status=http_status)

    def _fault_violation(
        self,
        reason: str,
        fault: rpc.Fault,
        cwmp_id: str,
        *,
        fatal: bool,
        http_status: int = 200,
    ) -> ProtocolViolation:
        # A Fault is CWMP content, hence HTTP 200 (TR-069 §3.4.1); it echoes the request's ID.
        body = self._serialize(fault, soap.Header(id=cwmp_id))
        if fatal:
            self.close()
        return ProtocolViolation(
            reason, http_status=http_status, fault=fault, body=body, fatal=fatal
        )

    def _serialize(self, message: rpc.Message, header: soap.Header) -> bytes:
        ns = self.ns or soap.CWMP_NS["1.0"]
        return soap.serialize(soap.Envelope(message=message, header=header, ns=ns))

    def _expect(self, move: Move) -> None:
        if not self._flow.allows(move):
            raise LocalProtocolError(f"{move.value} not allowed in state {self.state.value}")
        self._flow.advance(move)

    def _expect_cpe_turn(self) -> None:
        """A CPE message may only be fed in once the caller answered the previous one."""
        if self._flow.turn == ACS:
            raise LocalProtocolError(f"an answer is still owed (state {self.state.value})")
