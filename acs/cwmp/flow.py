"""The CWMP session flow as one explicit table, for both roles (h11's ``_state.py`` style).

A session is a strict alternation of HTTP POSTs (CPE) and responses (ACS); what may come
next depends only on where the session is::

    AWAITING_INFORM --INFORM--> INFORM_SENT --INFORM_RESPONSE--> CPE_REQUESTS
    CPE_REQUESTS --CPE_REQUEST--> CPE_REQUEST_SENT --CPE_REQUEST_ANSWER--> CPE_REQUESTS
    CPE_REQUESTS --EMPTY_POST--> ACS_REQUESTS
    ACS_REQUESTS --ACS_REQUEST--> ACS_REQUEST_SENT --ACS_REQUEST_ANSWER--> ACS_REQUESTS
    ACS_REQUESTS --END--> DONE                  (HTTP 204: the ACS has nothing more)
    ACS_REQUESTS --END_HELD--> CPE_REQUESTS     (the CPE still holds requests HoldRequests
                                                 kept back: TR-069 §3.7.1.4)

The ACS (``acs.cwmp.session.Session``), the simulator's CPE (``acs.cwmp.cpe_session``) and
the benchmark's load generator all move through this one table with ``Flow.advance``; a move
it does not list is refused. Which side sends each move is in ``SENDER``, so a role can tell
its own mistake (a bug: ``LocalProtocolError``) from its peer's (a protocol violation).
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    AWAITING_INFORM = "awaiting_inform"  # the CPE sends its Inform
    INFORM_SENT = "inform_sent"  # the ACS owes the InformResponse
    CPE_REQUESTS = "cpe_requests"  # the CPE sends a request or its empty POST
    CPE_REQUEST_SENT = "cpe_request_sent"  # the ACS owes the answer to the CPE's request
    ACS_REQUESTS = "acs_requests"  # the ACS sends a request or ends the session
    ACS_REQUEST_SENT = "acs_request_sent"  # the CPE owes the answer to the ACS's request
    DONE = "done"


class Move(enum.Enum):
    INFORM = "Inform"
    INFORM_RESPONSE = "InformResponse"
    CPE_REQUEST = "CPE request"
    CPE_REQUEST_ANSWER = "answer to the CPE request"
    EMPTY_POST = "empty POST"
    ACS_REQUEST = "ACS request"
    ACS_REQUEST_ANSWER = "answer to the ACS request"
    END = "end of session"
    END_HELD = "end of the ACS's requests, CPE requests held"


CPE, ACS = "cpe", "acs"

SENDER: dict[Move, str] = {
    Move.INFORM: CPE,
    Move.CPE_REQUEST: CPE,
    Move.EMPTY_POST: CPE,
    Move.ACS_REQUEST_ANSWER: CPE,
    Move.INFORM_RESPONSE: ACS,
    Move.CPE_REQUEST_ANSWER: ACS,
    Move.ACS_REQUEST: ACS,
    Move.END: ACS,
    Move.END_HELD: ACS,
}

TRANSITIONS: dict[tuple[State, Move], State] = {
    (State.AWAITING_INFORM, Move.INFORM): State.INFORM_SENT,
    (State.INFORM_SENT, Move.INFORM_RESPONSE): State.CPE_REQUESTS,
    (State.CPE_REQUESTS, Move.CPE_REQUEST): State.CPE_REQUEST_SENT,
    (State.CPE_REQUEST_SENT, Move.CPE_REQUEST_ANSWER): State.CPE_REQUESTS,
    (State.CPE_REQUESTS, Move.EMPTY_POST): State.ACS_REQUESTS,
    (State.ACS_REQUESTS, Move.ACS_REQUEST): State.ACS_REQUEST_SENT,
    (State.ACS_REQUEST_SENT, Move.ACS_REQUEST_ANSWER): State.ACS_REQUESTS,
    (State.ACS_REQUESTS, Move.END): State.DONE,
    (State.ACS_REQUESTS, Move.END_HELD): State.CPE_REQUESTS,
}

# Whose turn it is in each state (None: nobody's, the session is over).
TURN: dict[State, str | None] = {
    state: next((SENDER[m] for (s, m) in TRANSITIONS if s is state), None) for state in State
}


class FlowError(Exception):
    """A move the table does not allow from the current state."""

    def __init__(self, state: State, move: Move) -> None:
        super().__init__(f"{move.value} not allowed in state {state.value}")
        self.state = state
        self.move = move


class Flow:
    """Where one session is in the table. ``advance`` makes a move or raises FlowError."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = State.AWAITING_INFORM

    def advance(self, move: Move) -> State:
        nxt = TRANSITIONS.get((self.state, move))
        if nxt is None:
            raise FlowError(self.state, move)
        self.state = nxt
        return nxt

    def allows(self, move: Move) -> bool:
        return (self.state, move) in TRANSITIONS

    @property
    def turn(self) -> str | None:
        """Who sends next: ``CPE``, ``ACS`` or None once DONE."""
        return TURN[self.state]

    def close(self) -> None:
        """Abandon the session (timeout, teardown, a fatal violation)."""
        self.state = State.DONE
