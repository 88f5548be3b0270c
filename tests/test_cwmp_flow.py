"""The session flow table (acs.cwmp.flow) and the CPE-role session (acs.cwmp.cpe_session),
sans-IO: recorded SOAP in, bytes out, no sockets."""

from __future__ import annotations

from typing import Any

import pytest

from acs.cwmp import rpc, soap
from acs.cwmp.cpe_session import (
    AcsDone,
    AcsRequest,
    CpeSession,
    CpeSessionError,
    InformAccepted,
    RequestAnswered,
)
from acs.cwmp.flow import ACS, CPE, SENDER, TRANSITIONS, Flow, FlowError, Move, State

NS12 = soap.CWMP_NS["1.2"]


def test_every_state_but_done_has_exactly_one_side_to_move() -> None:
    for state in State:
        senders = {SENDER[m] for (s, m) in TRANSITIONS if s is state}
        assert len(senders) == (0 if state is State.DONE else 1), (state, senders)


def test_a_whole_session_moves_through_the_table_and_nothing_else() -> None:
    flow = Flow()
    path = [
        (Move.INFORM, CPE),
        (Move.INFORM_RESPONSE, ACS),
        (Move.CPE_REQUEST, CPE),
        (Move.CPE_REQUEST_ANSWER, ACS),
        (Move.EMPTY_POST, CPE),
        (Move.ACS_REQUEST, ACS),
        (Move.ACS_REQUEST_ANSWER, CPE),
        (Move.END, ACS),
    ]
    for move, sender in path:
        assert flow.turn == sender
        flow.advance(move)
    assert flow.state is State.DONE and flow.turn is None
    with pytest.raises(FlowError, match="not allowed in state done"):
        flow.advance(Move.INFORM)
    fresh = Flow()
    for illegal in (Move.EMPTY_POST, Move.ACS_REQUEST, Move.END, Move.INFORM_RESPONSE):
        assert not fresh.allows(illegal)


def reply(message: rpc.Message, cwmp_id: str = "1", ns: str = NS12, **header: Any) -> bytes:
    return soap.serialize(soap.Envelope(message, soap.Header(id=cwmp_id, **header), ns))


def inform() -> rpc.Inform:
    return rpc.Inform(
        device_id=rpc.DeviceId("Acme", "00AABB", "Box", "SN1"),
        events=(rpc.EventStruct("2 PERIODIC"),),
        current_time="2024-01-01T00:00:00Z",
        parameters=(),
    )


def started(**header: Any) -> CpeSession:
    session = CpeSession("1.3", NS12)
    body = session.inform(inform(), soap.Header(id="i1", session_timeout=30))
    assert soap.parse(body).message == inform()
    event = session.receive(200, reply(rpc.InformResponse(1), "i1", **header))
    assert isinstance(event, InformAccepted)
    assert (session.version, session.ns) == ("1.3", NS12)
    return session


def test_requests_then_the_acs_rpcs_then_the_end() -> None:
    session = started()
    transfer = rpc.TransferComplete("k")
    sent = session.next_post([transfer], "c1")
    assert sent is not None and soap.parse(sent).message == transfer
    answered = session.receive(200, reply(rpc.TransferCompleteResponse(), "c1"))
    assert answered == RequestAnswered(transfer, rpc.TransferCompleteResponse())
    assert session.next_post([], "c2") is None  # the empty POST
    asked = session.receive(200, reply(rpc.Reboot("rk"), "acs-1"))
    assert asked == AcsRequest(rpc.Reboot("rk"), "acs-1")
    answer = session.answer(rpc.RebootResponse(), "acs-1")
    assert soap.parse(answer).message == rpc.RebootResponse()
    assert session.receive(204, b"") == AcsDone(held=False)
    assert session.done


def test_held_requests_go_once_the_acs_is_done() -> None:
    session = started(hold_requests=True)
    transfer = rpc.TransferComplete("k")
    # HoldRequests: the next POST is the empty one, whatever the CPE has.
    assert session.next_post([transfer], "c1") is None
    assert session.receive(204, b"") == AcsDone(held=True)
    assert session.state is State.CPE_REQUESTS
    assert session.next_post([transfer], "c2") is not None
    session.receive(200, reply(rpc.TransferCompleteResponse(), "c2"))
    assert session.next_post([], "c3") is None
    assert session.receive(204, b"") == AcsDone(held=False)
    assert session.done


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (503, b"", "Inform answered HTTP 503"),
        (200, b"<not-xml", "unreadable envelope"),
        (200, reply(rpc.Reboot("x")), "Inform answered with Reboot"),
    ],
)
def test_a_bad_inform_answer_is_a_session_error(status: int, body: bytes, message: str) -> None:
    session = CpeSession("1.3", NS12)
    session.inform(inform(), soap.Header(id="i1"))
    with pytest.raises(CpeSessionError, match=message):
        session.receive(status, body)


def test_an_acs_answer_that_is_no_request_and_a_runaway_acs_are_errors() -> None:
    session = started()
    session.next_post([], "c1")
    with pytest.raises(CpeSessionError, match="expected an ACS request, got InformResponse"):
        session.receive(200, reply(rpc.InformResponse(1)))
    capped = CpeSession("1.3", NS12, max_exchanges=2)
    capped.inform(inform(), soap.Header(id="i1"))
    capped.receive(200, reply(rpc.InformResponse(1), "i1"))
    capped.next_post([], "c1")
    capped.receive(200, reply(rpc.GetRPCMethods(), "a1"))
    capped.answer(rpc.GetRPCMethodsResponse(("Inform",)), "a1")
    capped.receive(200, reply(rpc.GetRPCMethods(), "a2"))
    with pytest.raises(CpeSessionError, match="exceeded 2 exchanges"):
        capped.answer(rpc.GetRPCMethodsResponse(("Inform",)), "a2")


def test_a_1_4_cpe_adopts_the_version_the_acs_chose() -> None:
    session = CpeSession("1.4", NS12)
    session.inform(inform(), soap.Header(id="i1", supported_versions="1.0,1.1,1.2,1.3,1.4"))
    session.receive(200, reply(rpc.InformResponse(1), "i1", use_version="1.2"))
    assert session.version == "1.2"
