"""The ACS-side CWMP session state machine, fed with serialized SOAP like a CPE sends it."""

from __future__ import annotations

from typing import Any

import pytest

from acs.cwmp import rpc, soap
from acs.cwmp.session import (
    CpeDone,
    CpeRequest,
    InformReceived,
    LocalProtocolError,
    ProtocolViolation,
    RpcResult,
    Session,
    State,
    negotiate_version,
)

NS = "urn:dslforum-org:cwmp-1-0"
ALL_URIS = [f"urn:dslforum-org:cwmp-1-{minor}" for minor in range(5)]


def make_inform(serial: str = "SN1") -> rpc.Inform:
    return rpc.Inform(
        device_id=rpc.DeviceId("Acme", "00AABB", "Router", serial),
        events=(rpc.EventStruct("1 BOOT"),),
        current_time="2024-01-01T00:00:00Z",
        parameters=(rpc.ParameterValue("Device.DeviceInfo.SoftwareVersion", "1.0"),),
    )


def wire(
    message: rpc.Message, *, cwmp_id: str | None = "cpe-1", ns: str = NS, **header: Any
) -> bytes:
    return soap.serialize(soap.Envelope(message, soap.Header(id=cwmp_id, **header), ns))


def started(ns: str = NS, **kwargs: Any) -> Session:
    """A session past its InformResponse (state CPE_REQUESTS)."""
    s = Session(**kwargs)
    assert isinstance(s.receive_data(wire(make_inform(), ns=ns)), InformReceived)
    s.respond_inform()
    return s


def acs_phase(**kwargs: Any) -> Session:
    s = started(**kwargs)
    assert isinstance(s.receive_data(b""), CpeDone)
    return s


# --- Inform ---------------------------------------------------------------------------


def test_inform_yields_event_and_response_echoes_its_id() -> None:
    s = Session()
    event = s.receive_data(wire(make_inform(), cwmp_id="SAGEM_ID_7589"))
    assert isinstance(event, InformReceived)
    assert event.inform.device_id.serial_number == "SN1"
    assert event.header.id == "SAGEM_ID_7589"
    out = soap.parse(s.respond_inform())
    assert out.message == rpc.InformResponse(max_envelopes=1)
    assert out.header.id == "SAGEM_ID_7589"
    assert out.header.hold_requests is None
    assert s.state is State.CPE_REQUESTS


@pytest.mark.parametrize("uri", ALL_URIS)
def test_answers_in_the_exact_namespace_the_cpe_spoke(uri: str) -> None:
    s = Session()
    s.receive_data(wire(make_inform(), ns=uri))
    assert soap.parse(s.respond_inform()).ns == uri
    assert s.ns == uri
    s.receive_data(b"")
    assert soap.parse(s.send_request(rpc.GetParameterValues(("Device.",)))).ns == uri
    assert s.version == soap.version_of(uri)


@pytest.mark.parametrize("ns", ["urn:dslforum-org:cwmp-9-9", "urn:dslforum-org:cwmp-2-0"])
def test_an_inform_in_an_unknown_cwmp_version_is_refused(ns: str) -> None:
    s = Session()
    event = s.receive_data(wire(make_inform(), ns=ns))
    assert isinstance(event, ProtocolViolation)
    assert event.http_status == 400 and "unsupported CWMP namespace" in event.reason
    assert s.state is State.DONE


def test_inform_without_id_gets_an_empty_id_echo() -> None:
    s = Session()
    s.receive_data(wire(make_inform(), cwmp_id=None))
    assert soap.parse(s.respond_inform()).header.id == ""


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        ("1.0,1.1,1.2,1.3,1.4", "1.4"),
        ("1.2, 1.3", "1.3"),
        ("1.4,1.5,2.0", "1.4"),
        ("1.0,1.2", "1.2"),
    ],
)
def test_supported_versions_pick_highest_common_and_use_cwmp_version(
    offered: str, chosen: str
) -> None:
    s = Session()
    s.receive_data(wire(make_inform(), ns=soap.CWMP_NS["1.4"], supported_versions=offered))
    out = soap.parse(s.respond_inform())
    assert out.header.use_version == chosen
    assert out.ns == "urn:dslforum-org:cwmp-1-2"
    assert s.version == chosen


def test_no_use_cwmp_version_without_supported_versions() -> None:
    s = Session()
    s.receive_data(wire(make_inform(), ns=soap.CWMP_NS["1.2"]))
    assert soap.parse(s.respond_inform()).header.use_version is None
    assert s.version == "1.2"


def test_session_timeout_in_the_1_2_namespace_means_cwmp_1_3() -> None:
    s = Session()
    s.receive_data(wire(make_inform(), ns=soap.CWMP_NS["1.2"], session_timeout=30))
    assert s.version == "1.3"
    assert soap.parse(s.respond_inform()).header.use_version is None


@pytest.mark.parametrize("offered", ["2.0,3.1", "1.0,1.1"])
def test_no_common_version_is_refused_with_fault_8006(offered: str) -> None:
    # 1.0 and 1.1 have namespaces of their own: a CPE informing in cwmp-1-2 is not one.
    s = Session()
    event = s.receive_data(wire(make_inform(), ns=soap.CWMP_NS["1.2"], supported_versions=offered))
    assert isinstance(event, ProtocolViolation)
    assert event.fatal and event.fault is not None and event.fault.code == 8006
    assert isinstance(soap.parse(event.body).message, rpc.Fault)
    assert s.state is State.DONE


@pytest.mark.parametrize("ns", [soap.CWMP_NS["1.0"], soap.CWMP_NS["1.1"]])
def test_an_offer_in_a_1_0_or_1_1_namespace_is_ignored(ns: str) -> None:
    # SupportedCWMPVersions (and fault 8006) exist only from 1.4: the namespace decides.
    s = Session()
    event = s.receive_data(wire(make_inform(), ns=ns, supported_versions="2.0,3.1"))
    assert isinstance(event, InformReceived)
    assert s.version == soap.version_of(ns)
    out = soap.parse(s.respond_inform())
    assert out.ns == ns and out.header.use_version is None


def test_a_method_newer_than_the_session_version_is_method_not_supported() -> None:
    s = Session()
    s.receive_data(wire(make_inform(), ns=soap.CWMP_NS["1.0"]))
    s.respond_inform()
    atc = rpc.AutonomousTransferComplete("", "http://127.0.0.1/f", True, "1 Firmware", 1)
    event = s.receive_data(wire(atc, ns=soap.CWMP_NS["1.0"]))
    assert isinstance(event, ProtocolViolation) and not event.fatal
    assert event.fault is not None and event.fault.code == 8000
    later = Session()
    later.receive_data(wire(make_inform(), ns=soap.CWMP_NS["1.1"]))
    later.respond_inform()
    assert isinstance(later.receive_data(wire(atc, ns=soap.CWMP_NS["1.1"])), CpeRequest)


def test_negotiate_version_ignores_garbage_entries() -> None:
    assert negotiate_version("x,1.2,,1.a") == "1.2"
    assert negotiate_version("") is None


def test_session_timeout_from_inform_is_the_inactivity_timeout() -> None:
    s = Session()
    s.receive_data(wire(make_inform(), ns=soap.CWMP_NS["1.3"], session_timeout=45))
    assert s.inactivity_timeout == 45
    other = Session()
    other.receive_data(wire(make_inform()))
    assert other.inactivity_timeout is None


def test_hold_requests_is_sent_when_set() -> None:
    s = Session()
    s.receive_data(wire(make_inform()))
    assert soap.parse(s.respond_inform(hold_requests=True)).header.hold_requests is True


# --- CPE requests ---------------------------------------------------------------------


def test_cpe_request_is_answered_with_its_id_echoed() -> None:
    s = started()
    tc = rpc.TransferComplete("key-1", rpc.FaultStruct(0, ""))
    event = s.receive_data(wire(tc, cwmp_id="tc-42"))
    assert event == CpeRequest(tc, "tc-42")
    out = soap.parse(s.respond(rpc.TransferCompleteResponse()))
    assert out.message == rpc.TransferCompleteResponse()
    assert out.header.id == "tc-42"
    assert s.state is State.CPE_REQUESTS


def test_cpe_request_may_be_answered_with_a_fault() -> None:
    s = started()
    s.receive_data(wire(rpc.RequestDownload("1 Firmware Upgrade Image"), cwmp_id="rd"))
    out = soap.parse(s.respond(rpc.Fault(8001, "Request denied")))
    assert isinstance(out.message, rpc.Fault) and out.message.code == 8001
    assert out.header.id == "rd"


def test_answering_a_cpe_request_with_the_wrong_type_is_a_local_error() -> None:
    s = started()
    s.receive_data(wire(rpc.GetRPCMethods()))
    with pytest.raises(LocalProtocolError):
        s.respond(rpc.KickedResponse("x"))
    # The owed answer is still owed: the right one goes through.
    soap.parse(s.respond(rpc.GetRPCMethodsResponse(("Inform",))))


def test_unknown_cpe_method_gets_fault_8000_and_session_continues() -> None:
    s = started()
    body = wire(rpc.GetRPCMethods(), cwmp_id="u1").replace(b"GetRPCMethods", b"X_Frobnicate")
    event = s.receive_data(body)
    assert isinstance(event, ProtocolViolation)
    assert not event.fatal and event.http_status == 200
    out = soap.parse(event.body)
    assert isinstance(out.message, rpc.Fault) and out.message.code == 8000
    assert out.header.id == "u1"
    assert isinstance(s.receive_data(b""), CpeDone)


def test_acs_only_method_sent_by_cpe_gets_fault_8000() -> None:
    s = started()
    event = s.receive_data(wire(rpc.Reboot("k")))
    assert isinstance(event, ProtocolViolation)
    assert not event.fatal and event.fault is not None and event.fault.code == 8000
    assert s.state is State.CPE_REQUESTS


def test_invalid_cpe_request_gets_fault_8003_and_session_continues() -> None:
    s = started()
    # AutonomousTransferComplete requires IsDownload: a broken request -> 8003.
    body = wire(
        rpc.AutonomousTransferComplete("", "", True, "1 Firmware Upgrade Image", 0), cwmp_id="a"
    ).replace(b"<IsDownload>true</IsDownload>", b"")
    event = s.receive_data(body)
    assert isinstance(event, ProtocolViolation)
    assert event.fault is not None and event.fault.code == 8003 and not event.fatal
    assert soap.parse(event.body).header.id == "a"
    assert isinstance(s.receive_data(b""), CpeDone)


def test_cpe_request_while_hold_requests_is_set_gets_fault_8003() -> None:
    s = Session()
    s.receive_data(wire(make_inform()))
    s.respond_inform(hold_requests=True)
    event = s.receive_data(wire(rpc.TransferComplete("k")))
    assert isinstance(event, ProtocolViolation)
    assert event.fault is not None and event.fault.code == 8003
    assert "HoldRequests" in event.reason


def test_whitespace_only_body_is_an_empty_post() -> None:
    s = started()
    assert isinstance(s.receive_data(b"  \r\n\t "), CpeDone)
    assert s.state is State.ACS_REQUESTS


# --- ACS requests ---------------------------------------------------------------------


def test_acs_requests_get_fresh_ids_and_results_pair_with_requests() -> None:
    s = acs_phase()
    gpv = rpc.GetParameterValues(("Device.DeviceInfo.",))
    first = soap.parse(s.send_request(gpv))
    response = rpc.GetParameterValuesResponse((rpc.ParameterValue("Device.DeviceInfo.X", "1"),))
    event = s.receive_data(wire(response, cwmp_id=first.header.id))
    assert event == RpcResult(gpv, response)
    second = soap.parse(s.send_request(rpc.Reboot("r1")))
    assert second.header.id and second.header.id != first.header.id
    assert isinstance(
        s.receive_data(wire(rpc.RebootResponse(), cwmp_id=second.header.id)), RpcResult
    )
    assert s.finish() == b""
    assert s.state is State.DONE


def test_fault_answering_our_request_is_recorded_as_its_result() -> None:
    s = acs_phase()
    req = rpc.SetParameterValues((rpc.ParameterValue("Device.X", "1"),), "k")
    sent = soap.parse(s.send_request(req))
    fault = rpc.Fault(
        9003, "Invalid arguments", "Client", (rpc.SetParameterValuesFault("Device.X", 9008, ""),)
    )
    event = s.receive_data(wire(fault, cwmp_id=sent.header.id))
    assert isinstance(event, RpcResult)
    assert event.request == req
    assert isinstance(event.response, rpc.Fault) and event.response.code == 9003


def test_response_without_id_is_tolerated() -> None:
    s = acs_phase()
    s.send_request(rpc.Reboot())
    assert isinstance(s.receive_data(wire(rpc.RebootResponse(), cwmp_id=None)), RpcResult)


def test_response_with_wrong_id_is_a_fatal_violation() -> None:
    s = acs_phase()
    s.send_request(rpc.Reboot())
    event = s.receive_data(wire(rpc.RebootResponse(), cwmp_id="not-ours"))
    assert isinstance(event, ProtocolViolation)
    assert event.http_status == 400 and event.fatal and event.body == b""
    assert "not-ours" in event.reason
    assert s.state is State.DONE


def test_response_of_the_wrong_type_is_a_fatal_violation() -> None:
    s = acs_phase()
    sent = soap.parse(s.send_request(rpc.Reboot()))
    event = s.receive_data(wire(rpc.FactoryResetResponse(), cwmp_id=sent.header.id))
    assert isinstance(event, ProtocolViolation) and event.http_status == 400
    assert "RebootResponse" in event.reason


def test_response_when_we_sent_nothing_is_a_violation() -> None:
    s = started()
    event = s.receive_data(wire(rpc.RebootResponse()))
    assert isinstance(event, ProtocolViolation) and event.http_status == 400 and event.fatal


def test_fault_when_we_sent_nothing_is_a_violation() -> None:
    s = started()
    event = s.receive_data(wire(rpc.Fault(9002, "Internal error")))
    assert isinstance(event, ProtocolViolation) and event.fatal


def test_cpe_request_after_its_empty_post_is_bad_session_state() -> None:
    s = acs_phase()
    s.send_request(rpc.Reboot())
    event = s.receive_data(wire(rpc.TransferComplete("k")))
    assert isinstance(event, ProtocolViolation)
    assert event.http_status == 400 and "RebootResponse" in event.reason


def test_empty_post_while_awaiting_a_response_is_a_violation() -> None:
    s = acs_phase()
    s.send_request(rpc.Reboot())
    event = s.receive_data(b"")
    assert isinstance(event, ProtocolViolation) and event.fatal


def test_unparseable_response_is_a_400() -> None:
    s = acs_phase()
    s.send_request(rpc.Reboot())
    event = s.receive_data(b"<soap-env:Envelope truncated")
    assert isinstance(event, ProtocolViolation)
    assert event.http_status == 400 and event.fault is None and event.fatal


def test_fault_with_unqualified_detail_is_accepted_from_a_1_2_cpe() -> None:
    s = Session()
    s.receive_data(wire(make_inform(), ns=soap.CWMP_NS["1.2"]))
    s.respond_inform()
    s.receive_data(b"")
    s.send_request(rpc.Reboot())
    body = wire(rpc.Fault(9001, "denied"), cwmp_id=None, ns=soap.CWMP_NS["1.2"])
    # No header, and the detail's Fault element unqualified: the codec can't see a version.
    body = body.replace(b"<cwmp:Fault>", b"<Fault>").replace(b"</cwmp:Fault>", b"</Fault>")
    event = s.receive_data(body)
    assert isinstance(event, RpcResult)
    assert isinstance(event.response, rpc.Fault) and event.response.code == 9001


def test_namespace_change_within_session_is_a_violation() -> None:
    s = acs_phase()
    sent = soap.parse(s.send_request(rpc.Reboot()))
    event = s.receive_data(
        wire(rpc.RebootResponse(), cwmp_id=sent.header.id, ns=soap.CWMP_NS["1.1"])
    )
    assert isinstance(event, ProtocolViolation) and "namespace" in event.reason


# --- state errors and caps ------------------------------------------------------------


def test_first_message_must_be_an_inform() -> None:
    s = Session()
    event = s.receive_data(wire(rpc.TransferComplete("k")))
    assert isinstance(event, ProtocolViolation)
    assert event.reason.startswith("Bad session state") and event.http_status == 400


def test_empty_post_before_inform_is_a_violation() -> None:
    assert isinstance(Session().receive_data(b""), ProtocolViolation)


def test_inform_within_a_session_is_bad_session_state() -> None:
    s = started()
    event = s.receive_data(wire(make_inform()))
    assert isinstance(event, ProtocolViolation) and event.reason.startswith("Bad session state")


def test_messages_after_finish_are_violations() -> None:
    s = acs_phase()
    s.finish()
    assert isinstance(s.receive_data(b""), ProtocolViolation)


def test_oversize_error_maps_to_413() -> None:
    s = started()
    event = s.receive_error(soap.SoapError("too big", fault_code=8004, http_status=413))
    assert event.http_status == 413 and event.fatal


def test_rpc_cap_stops_acs_requests() -> None:
    s = acs_phase(max_rpcs=2)
    for _ in range(2):
        sent = soap.parse(s.send_request(rpc.Reboot()))
        s.receive_data(wire(rpc.RebootResponse(), cwmp_id=sent.header.id))
    assert s.rpc_limit_reached
    with pytest.raises(LocalProtocolError):
        s.send_request(rpc.Reboot())


def test_rpc_cap_refuses_endless_cpe_requests_with_8004() -> None:
    s = started(max_rpcs=2)
    for _ in range(2):
        assert isinstance(s.receive_data(wire(rpc.GetRPCMethods())), CpeRequest)
        s.respond(rpc.GetRPCMethodsResponse(("Inform",)))
    event = s.receive_data(wire(rpc.GetRPCMethods()))
    assert isinstance(event, ProtocolViolation)
    assert event.fault is not None and event.fault.code == 8004 and event.fatal


def test_feeding_before_answering_is_a_local_error() -> None:
    s = Session()
    s.receive_data(wire(make_inform()))
    with pytest.raises(LocalProtocolError):
        s.receive_data(b"")


def test_send_request_refuses_non_acs_messages() -> None:
    s = acs_phase()
    with pytest.raises(LocalProtocolError):
        s.send_request(rpc.InformResponse())
